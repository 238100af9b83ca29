//! Dashboard sessions.

use super::*;

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_session(&self, s: &Session) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, source_ip) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(s.token_hash.as_str())
        .bind(s.user_id.as_str())
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.source_ip.as_deref())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_insert(e, "a session with this token"))?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        sqlx::query("SELECT * FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(|r| {
                Ok(Session {
                    token_hash: r.try_get("token_hash")?,
                    user_id: parse_id(r, "user_id", UserId::parse)?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    source_ip: r.try_get("source_ip")?,
                })
            })
            .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    async fn delete_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
