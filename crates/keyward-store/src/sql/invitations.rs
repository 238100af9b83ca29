//! Invitations to projects.

use super::*;

pub(super) fn invitation_from_row(row: &AnyRow) -> Result<Invitation> {
    Ok(Invitation {
        id: parse_id(row, "id", keyward_core::InvitationId::parse)?,
        token_hash: row.try_get("token_hash")?,
        project_id: parse_id(row, "project_id", ProjectId::parse)?,
        email: row.try_get("email")?,
        role: member_role(row)?,
        invited_by: parse_id(row, "invited_by", UserId::parse)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
        accepted_by: parse_opt_id(row, "accepted_by", UserId::parse)?,
    })
}

#[async_trait]
impl InvitationStore for SqlStore {
    async fn insert_invitation(&self, i: &Invitation, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO invitations (id, token_hash, project_id, email, role, invited_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i.id.as_str())
        .bind(i.token_hash.as_str())
        .bind(i.project_id.as_str())
        .bind(i.email.as_str())
        .bind(i.role.as_str())
        .bind(i.invited_by.as_str())
        .bind(i.created_at)
        .bind(i.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_insert(e, "an invitation with this token"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn invitation(&self, token_hash: &str) -> Result<Option<Invitation>> {
        sqlx::query("SELECT * FROM invitations WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(invitation_from_row)
            .transpose()
    }

    async fn pending_invitations(&self, project: &ProjectId, now: i64) -> Result<Vec<Invitation>> {
        sqlx::query(
            "SELECT * FROM invitations WHERE project_id = $1 AND accepted_at IS NULL \
             AND expires_at > $2 ORDER BY created_at DESC, id",
        )
        .bind(project.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(invitation_from_row)
        .collect()
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        user: &UserId,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<Option<Invitation>> {
        let mut tx = self.pool.begin().await?;
        // The write comes first: of racing requests, one marks the row.
        let used = sqlx::query(
            "UPDATE invitations SET accepted_at = $1, accepted_by = $2 \
             WHERE token_hash = $3 AND accepted_at IS NULL AND expires_at > $1",
        )
        .bind(at)
        .bind(user.as_str())
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        let invitation = invitation_from_row(
            &sqlx::query("SELECT * FROM invitations WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, user_id) DO NOTHING",
        )
        .bind(invitation.project_id.as_str())
        .bind(user.as_str())
        .bind(invitation.role.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(invitation))
    }

    async fn delete_invitation(
        &self,
        project: &ProjectId,
        id: &keyward_core::InvitationId,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM invitations WHERE project_id = $1 AND id = $2 AND accepted_at IS NULL",
        )
        .bind(project.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
