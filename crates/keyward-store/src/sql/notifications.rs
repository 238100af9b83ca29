//! Notifications to account owners.

use super::*;

pub(super) async fn insert_notification_in(
    tx: &mut Transaction<'_, Any>,
    n: &Notification,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, key_id, project_id, message, details, created_at, read_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(n.id.as_str())
    .bind(n.user_id.as_str())
    .bind(n.kind.as_str())
    .bind(n.key_id.as_ref().map(|k| k.as_str()))
    .bind(n.project_id.as_ref().map(|p| p.as_str()))
    .bind(n.message.as_str())
    .bind(n.details.to_string())
    .bind(n.created_at)
    .bind(n.read_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn insert_notification(&self, n: &Notification) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_notification_in(&mut tx, n).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn notifications(&self, user: &UserId, page: &Page) -> Result<Listed<Notification>> {
        let sql = "SELECT seq FROM notifications WHERE user_id = $1 AND id = $2";
        let before = self
            .page_start(page.after.as_deref(), sql, &[user.as_str()])
            .await?;
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(user.as_str())
        .bind(before)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(Notification {
                    id: r.try_get("id")?,
                    user_id: parse_id(r, "user_id", UserId::parse)?,
                    kind: r.try_get("kind")?,
                    key_id: parse_opt_id(r, "key_id", KeyId::parse)?,
                    project_id: parse_opt_id(r, "project_id", ProjectId::parse)?,
                    message: r.try_get("message")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| corrupt(format!("notification details: {e}")))?,
                    created_at: r.try_get("created_at")?,
                    read_at: r.try_get("read_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(listed(items, page.limit))
    }
}
