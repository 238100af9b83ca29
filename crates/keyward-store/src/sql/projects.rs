//! Projects and their members.

use super::*;

pub(super) fn project_from_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: parse_id(row, "id", ProjectId::parse)?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        archived_at: row.try_get("archived_at")?,
        rate_limits: rate_limits_from_row(row)?,
        monthly_budget: budget_from_row(row)?,
    })
}

pub(super) fn member_role(row: &AnyRow) -> Result<MemberRole> {
    let role: String = row.try_get("role")?;
    MemberRole::parse(&role).ok_or_else(|| corrupt(format!("member role {role}")))
}

#[async_trait]
impl ProjectStore for SqlStore {
    async fn insert_project(
        &self,
        project: &Project,
        owner: &UserId,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projects (id, name, created_at, archived_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(project.id.as_str())
        .bind(project.name.as_str())
        .bind(project.created_at)
        .bind(project.archived_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_insert(e, "a project with this id"))?;
        sqlx::query("INSERT INTO project_members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(project.id.as_str())
            .bind(owner.as_str())
            .bind(MemberRole::Owner.as_str())
            .bind(project.created_at)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, id: &ProjectId) -> Result<Option<Project>> {
        sqlx::query("SELECT * FROM projects WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(project_from_row)
            .transpose()
    }

    async fn projects_of(
        &self,
        user: &UserId,
        include_archived: bool,
        page: &Page,
    ) -> Result<Listed<(Project, MemberRole)>> {
        let sql = "SELECT p.seq FROM projects p JOIN project_members m ON m.project_id = p.id \
                   WHERE m.user_id = $1 AND p.id = $2";
        let before = self
            .page_start(page.after.as_deref(), sql, &[user.as_str()])
            .await?;
        let rows = sqlx::query(
            "SELECT p.*, m.role FROM projects p JOIN project_members m ON m.project_id = p.id \
             WHERE m.user_id = $1 AND p.seq < $2 AND ($3 = 1 OR p.archived_at IS NULL) \
             ORDER BY p.seq DESC LIMIT $4",
        )
        .bind(user.as_str())
        .bind(before)
        .bind(i64::from(include_archived))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| Ok((project_from_row(r)?, member_role(r)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(listed(items, page.limit))
    }

    async fn all_projects(&self) -> Result<Vec<Project>> {
        sqlx::query("SELECT * FROM projects ORDER BY seq")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(project_from_row)
            .collect()
    }

    async fn membership(&self, project: &ProjectId, user: &UserId) -> Result<Option<MemberRole>> {
        sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(member_role)
            .transpose()
    }

    async fn members(&self, project: &ProjectId) -> Result<Vec<(UserId, MemberRole)>> {
        let rows = sqlx::query(
            "SELECT user_id, role FROM project_members WHERE project_id = $1 ORDER BY created_at",
        )
        .bind(project.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut members = rows
            .iter()
            .map(|r| Ok((parse_id(r, "user_id", UserId::parse)?, member_role(r)?)))
            .collect::<Result<Vec<_>>>()?;
        members.sort_by_key(|m| std::cmp::Reverse(m.1));
        Ok(members)
    }

    async fn update_project(&self, project: &Project, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE projects SET name = $1, rpm_limit = $2, tpm_limit = $3, max_concurrent = $4, \
             monthly_budget_micros = $5 WHERE id = $6",
        )
        .bind(project.name.as_str())
        .bind(project.rate_limits.requests_per_minute)
        .bind(project.rate_limits.tokens_per_minute)
        .bind(project.rate_limits.max_concurrent_requests)
        .bind(project.monthly_budget.map(|m| m.0))
        .bind(project.id.as_str())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn archive_project(&self, id: &ProjectId, at: i64, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE projects SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL",
        )
        .bind(at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_member(
        &self,
        project: &ProjectId,
        user: &UserId,
        role: MemberRole,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3",
        )
        .bind(role.as_str())
        .bind(project.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(project.as_str())
            .bind(user.as_str())
            .bind(role.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "this project member"))?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(
        &self,
        project: &ProjectId,
        user: &UserId,
        audit: &AuditEntry,
        revocation: &Revocation,
        key_audit: &(dyn for<'k> Fn(&'k KeyRecord) -> AuditEntry + Send + Sync),
    ) -> Result<Option<Vec<KeyId>>> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                .bind(project.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await?;
        let keys = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = $1 AND owner_id = $2 \
             AND revoked_at IS NULL"
        ))
        .bind(project.as_str())
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(key_from_row)
        .collect::<Result<Vec<_>>>()?;
        let mut revoked = Vec::with_capacity(keys.len());
        for key in keys {
            if revoke_in(&mut tx, &key.id, revocation).await? {
                insert_audit(&mut tx, &key_audit(&key)).await?;
                revoked.push(key.id);
            }
        }
        tx.commit().await?;
        Ok(Some(revoked))
    }
}
