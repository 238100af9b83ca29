//! Keys and their secrets' hashes.

use super::*;

pub(super) const KEY_COLUMNS: &str =
    "id, kind, project_id, owner_id, created_by, name, redacted_value, \
     permissions, allowed_models, allowed_ips, rpm_limit, tpm_limit, max_concurrent, \
     monthly_budget_micros, created_at, last_used_at, expires_at, revoked_at, revoked_by, \
     revoke_reason, revoke_note, parent_key_id";

/// Marks a key revoked; `false` if it was revoked already.
pub(super) async fn revoke_in(
    tx: &mut Transaction<'_, Any>,
    id: &KeyId,
    revocation: &Revocation,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1, revoked_by = $2, revoke_reason = $3, revoke_note = $4 \
         WHERE id = $5 AND revoked_at IS NULL",
    )
    .bind(revocation.at)
    .bind(revocation.by.as_str())
    .bind(revocation.reason.as_str())
    .bind(revocation.note.as_deref())
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) fn key_from_row(row: &AnyRow) -> Result<KeyRecord> {
    let kind: String = row.try_get("kind")?;
    let permissions: String = row.try_get("permissions")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let revoked = match revoked_at {
        None => None,
        Some(at) => {
            let reason: String = row.try_get("revoke_reason")?;
            Some(Revocation {
                at,
                by: row
                    .try_get::<Option<String>, _>("revoked_by")?
                    .unwrap_or_default(),
                reason: RevokeReason::parse(&reason)
                    .ok_or_else(|| corrupt(format!("revoke reason {reason}")))?,
                note: row.try_get("revoke_note")?,
            })
        }
    };
    Ok(KeyRecord {
        id: parse_id(row, "id", KeyId::parse)?,
        kind: KeyKind::from_db(&kind).ok_or_else(|| corrupt(format!("key kind {kind}")))?,
        project_id: parse_opt_id(row, "project_id", ProjectId::parse)?,
        owner_id: parse_id(row, "owner_id", UserId::parse)?,
        created_by: row.try_get("created_by")?,
        parent_id: parse_opt_id(row, "parent_key_id", KeyId::parse)?,
        name: row.try_get("name")?,
        redacted_value: row.try_get("redacted_value")?,
        permissions: serde_json::from_str::<Permissions>(&permissions)
            .map_err(|e| corrupt(format!("permissions: {e}")))?,
        allowed_models: json_list(row, "allowed_models")?,
        allowed_ips: json_list(row, "allowed_ips")?,
        rate_limits: rate_limits_from_row(row)?,
        monthly_budget: budget_from_row(row)?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked,
    })
}

/// Binds a key's editable settings, in the order both the insert and the
/// update name their columns: name, permissions, allowed models and IPs,
/// the three rate limits, the monthly budget.
fn bind_settings<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    key: &'q KeyRecord,
) -> Result<sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>> {
    Ok(query
        .bind(key.name.as_str())
        .bind(serde_json::to_string(&key.permissions).map_err(corrupt)?)
        .bind(to_json_list(&key.allowed_models))
        .bind(to_json_list(&key.allowed_ips))
        .bind(key.rate_limits.requests_per_minute)
        .bind(key.rate_limits.tokens_per_minute)
        .bind(key.rate_limits.max_concurrent_requests)
        .bind(key.monthly_budget.map(|m| m.0)))
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(
        &self,
        key: &KeyRecord,
        hash: &KeyHash,
        active_cap: Option<i64>,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let (Some(project), Some(cap)) = (&key.project_id, active_cap) {
            // A no-op write first: SQLite takes its write lock, PostgreSQL
            // locks the project row, so concurrent creates count in turn.
            sqlx::query("UPDATE projects SET name = name WHERE id = $1")
                .bind(project.as_str())
                .execute(&mut *tx)
                .await?;
            let active: i64 = sqlx::query(
                "SELECT COUNT(*) FROM api_keys WHERE project_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(project.as_str())
            .bind(key.created_at)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if active >= cap {
                return Err(StoreError::KeyCapReached(cap));
            }
        }
        let insert = sqlx::query(
            "INSERT INTO api_keys (id, kind, project_id, owner_id, created_by, redacted_value, \
             name, permissions, allowed_models, allowed_ips, rpm_limit, tpm_limit, max_concurrent, \
             monthly_budget_micros, created_at, last_used_at, expires_at, parent_key_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(key.id.as_str())
        .bind(key.kind.as_str())
        .bind(key.project_id.as_ref().map(|p| p.as_str()))
        .bind(key.owner_id.as_str())
        .bind(key.created_by.as_str())
        .bind(key.redacted_value.as_str());
        bind_settings(insert, key)?
            .bind(key.created_at)
            .bind(key.last_used_at)
            .bind(key.expires_at)
            .bind(key.parent_id.as_ref().map(|p| p.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "a key with this id"))?;
        sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, NULL)")
            .bind(hash.as_bytes().to_vec())
            .bind(key.id.as_str())
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "a key with this secret"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key(&self, id: &KeyId) -> Result<Option<KeyRecord>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<SecretMatch>> {
        let sql = format!(
            "SELECT {}, s.expires_at AS secret_expires_at FROM api_key_secrets s \
             JOIN api_keys k ON k.id = s.key_id WHERE s.hash = $1",
            KEY_COLUMNS
                .split(", ")
                .map(|c| format!("k.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some(row) = sqlx::query(&sql)
            .bind(hash.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(SecretMatch {
            key: key_from_row(&row)?,
            secret_expires_at: row.try_get("secret_expires_at")?,
        }))
    }

    async fn list_keys(
        &self,
        scope: &KeyScope,
        include_revoked: bool,
        page: &Page,
    ) -> Result<Listed<KeyRecord>> {
        let (filter, owner) = match scope {
            KeyScope::Project(p) => ("kind = 'project' AND project_id = $1", p.as_str()),
            KeyScope::AdminKeysOf(u) => ("kind = 'admin' AND owner_id = $1", u.as_str()),
        };
        let sql = format!("SELECT seq FROM api_keys WHERE {filter} AND id = $2");
        let before = self
            .page_start(page.after.as_deref(), &sql, &[owner])
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE {filter} AND seq < $2 AND {revoked} \
             ORDER BY seq DESC LIMIT $3",
            revoked = if include_revoked {
                "1 = 1"
            } else {
                "revoked_at IS NULL"
            }
        ))
        .bind(owner)
        .bind(before)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?;
        Ok(listed(items, page.limit))
    }

    async fn update_key(&self, key: &KeyRecord, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let update = sqlx::query(
            "UPDATE api_keys SET name = $1, permissions = $2, allowed_models = $3, allowed_ips = $4, \
             rpm_limit = $5, tpm_limit = $6, max_concurrent = $7, monthly_budget_micros = $8, \
             expires_at = $9 WHERE id = $10",
        );
        bind_settings(update, key)?
            .bind(key.expires_at)
            .bind(key.id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_key(
        &self,
        id: &KeyId,
        revocation: &Revocation,
        audit: &AuditEntry,
        notice: Option<&Notification>,
        outbox: &[OutboxMessage],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !revoke_in(&mut tx, id, revocation).await? {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        if let Some(n) = notice {
            insert_notification_in(&mut tx, n).await?;
        }
        outbox::enqueue_in(&mut tx, outbox, revocation.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_key(
        &self,
        id: &KeyId,
        new_hash: &KeyHash,
        new_redacted: &str,
        now: i64,
        old_secrets_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE api_keys SET redacted_value = $1 WHERE id = $2")
            .bind(new_redacted)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE api_key_secrets SET expires_at = $1 \
             WHERE key_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(old_secrets_expire_at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1 AND expires_at <= $2")
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, NULL)")
            .bind(new_hash.as_bytes().to_vec())
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "a key with this secret"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_keys(&self, uses: &[(KeyId, i64)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(*at)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn keys_expired_by(&self, now: i64, limit: u32) -> Result<Vec<KeyRecord>> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
             AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn purge_expired_secrets(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM api_key_secrets WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
