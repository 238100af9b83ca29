//! Audit entries: every change records who made it, from where, and when.

use keyward_core::{time::now_unix, AuditId, ProjectId, UserId};
use keyward_core::{AuditAction, AuditEntry, AuditFilter, Listed, Page};

use keyward_store::StoreError;

use crate::caller::Caller;
use crate::error::{Result, ServiceError};
use crate::Services;

/// What an audit entry is about (its kind follows from the action).
pub(crate) struct Target<'a> {
    pub id: &'a str,
    pub project: Option<&'a ProjectId>,
    pub owner: Option<&'a UserId>,
}

pub(crate) fn entry(
    caller: &Caller,
    action: AuditAction,
    target: Target<'_>,
    details: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        id: AuditId::generate(),
        actor: caller.actor(),
        action,
        target_type: action.target(),
        target_id: target.id.to_owned(),
        project_id: target.project.cloned(),
        owner_id: target.owner.cloned(),
        details,
        source_ip: caller.source_ip.clone(),
        created_at: now_unix(),
    }
}

impl Services {
    /// The audit log the caller may read: its projects' events and its own
    /// account's (admin keys), optionally narrowed to some projects and actions.
    pub async fn list_audit_logs(
        &self,
        caller: &Caller,
        project_ids: Vec<ProjectId>,
        actions: Vec<String>,
        page: &Page,
    ) -> Result<Listed<AuditEntry>> {
        let user = caller.require_user("organization.audit_logs.read")?;
        let visible = self.member_project_ids(&user.id).await?;
        let filter = if project_ids.is_empty() {
            AuditFilter {
                project_ids: visible,
                owner_id: Some(user.id.clone()),
                actions,
            }
        } else {
            if let Some(unknown) = project_ids.iter().find(|p| !visible.contains(p)) {
                return Err(ServiceError::not_found("project", unknown));
            }
            AuditFilter {
                project_ids,
                owner_id: None,
                actions,
            }
        };
        self.store
            .list_audit(&filter, page)
            .await
            .map_err(list_error(page))
    }
}

/// A list's failure: `after` naming nothing in the list is the caller's
/// mistake (400 naming `after`); anything else is the store's.
pub(crate) fn list_error(page: &Page) -> impl FnOnce(StoreError) -> ServiceError + '_ {
    move |e| match e {
        StoreError::UnknownCursor => cursor_error(page.after.as_deref().unwrap_or_default()),
        other => other.into(),
    }
}

/// `after` named nothing in the listed collection.
pub(crate) fn cursor_error(after: &str) -> ServiceError {
    ServiceError::invalid(
        "after",
        format!(
            "`after` is `{}`, which is not an id in this list; pass the `last_id` of the previous page.",
            after.chars().take(64).collect::<String>()
        ),
    )
}
