//! The audit log and its change feed.

use super::*;

pub(super) const AUDIT_COLUMNS: &str = "id, actor_type, actor_id, action, target_type, target_id, \
     project_id, owner_id, details, source_ip, created_at";

pub(super) async fn insert_audit(tx: &mut Transaction<'_, Any>, e: &AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, \
         project_id, owner_id, details, source_ip, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.id.as_str())
    .bind(e.actor.kind())
    .bind(e.actor.id())
    .bind(e.action.as_str())
    .bind(e.target_type.as_str())
    .bind(e.target_id.as_str())
    .bind(e.project_id.as_ref().map(|p| p.as_str()))
    .bind(e.owner_id.as_ref().map(|u| u.as_str()))
    .bind(e.details.to_string())
    .bind(e.source_ip.as_deref())
    .bind(e.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) fn audit_from_row(row: &AnyRow) -> Result<AuditEntry> {
    let actor_type: String = row.try_get("actor_type")?;
    let actor_id: Option<String> = row.try_get("actor_id")?;
    let actor = Actor::parse(&actor_type, actor_id.as_deref()).map_err(corrupt)?;
    let action: String = row.try_get("action")?;
    let action =
        AuditAction::parse(&action).ok_or_else(|| corrupt(format!("audit action {action}")))?;
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        id: parse_id(row, "id", AuditId::parse)?,
        actor,
        action,
        target_type: action.target(),
        target_id: row.try_get("target_id")?,
        project_id: parse_opt_id(row, "project_id", ProjectId::parse)?,
        owner_id: parse_opt_id(row, "owner_id", UserId::parse)?,
        details: serde_json::from_str(&details)
            .map_err(|e| corrupt(format!("audit details: {e}")))?,
        source_ip: row.try_get("source_ip")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A row of `SELECT seq, target_type, target_id`.
pub(super) fn audit_change_from_row(row: &AnyRow) -> Result<AuditChange> {
    let target_type: String = row.try_get(1)?;
    Ok(AuditChange {
        seq: row.try_get(0)?,
        target_type: AuditTarget::parse(&target_type),
        target_id: row.try_get(2)?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit_seq_now(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM audit_log")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    async fn audit_targets_since(&self, after: i64, limit: u32) -> Result<Vec<AuditChange>> {
        let rows = sqlx::query(
            "SELECT seq, target_type, target_id FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_change_from_row).collect()
    }

    async fn audit_targets_at(&self, seqs: &[i64]) -> Result<Vec<AuditChange>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let sql = format!(
            "SELECT seq, target_type, target_id FROM audit_log WHERE seq IN ({}) ORDER BY seq",
            params.ints(seqs.iter().copied())
        );
        let query = params.bind_to(sqlx::query(&sql));
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_change_from_row)
            .collect()
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> Result<Listed<AuditEntry>> {
        let mut params = Params::default();
        let mut scope: Vec<String> = Vec::new();
        if !filter.project_ids.is_empty() {
            let list = params.texts(filter.project_ids.iter().map(|p| p.as_str()));
            scope.push(format!("project_id IN ({list})"));
        }
        if let Some(owner) = &filter.owner_id {
            scope.push(format!(
                "(project_id IS NULL AND owner_id = {})",
                params.text(owner.as_str())
            ));
        }
        if scope.is_empty() {
            return Ok(Listed {
                items: vec![],
                has_more: false,
            });
        }
        let mut conditions = vec![format!("({})", scope.join(" OR "))];
        if !filter.actions.is_empty() {
            let list = params.texts(filter.actions.iter().map(String::as_str));
            conditions.push(format!("action IN ({list})"));
        }
        let condition = conditions.join(" AND ");
        let sql = format!(
            "SELECT seq FROM audit_log WHERE {condition} AND id = {}",
            params.next_mark()
        );
        let before = self
            .page_start_with(page.after.as_deref(), &sql, &params)
            .await?;
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {condition} AND seq < {} ORDER BY seq DESC LIMIT {}",
            params.int(before),
            params.int(i64::from(page.limit) + 1)
        );
        self.fetch_listed(&sql, &params, page.limit, audit_from_row)
            .await
    }
}
