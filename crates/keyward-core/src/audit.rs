//! The audit log's vocabulary: who acted, what they did and to what kind
//! of object. Each kind has one stored name, mapped both ways here: a new
//! action or target is a new variant, and every `match` on them (the
//! change feed's among them) is then a compile error until it is named.

use crate::{AuditId, KeyId, KeyKind, ProjectId, UserId};

/// Who did something, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Key(KeyId),
    Cli,
    System,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Key(_) => "api_key",
            Actor::Cli => "cli",
            Actor::System => "system",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Actor::User(id) => Some(id.as_str()),
            Actor::Key(id) => Some(id.as_str()),
            Actor::Cli | Actor::System => None,
        }
    }

    /// The actor stored as `kind` ([`Actor::kind`]) and `id` ([`Actor::id`]);
    /// the error names what is wrong.
    pub fn parse(kind: &str, id: Option<&str>) -> Result<Actor, String> {
        let id = || id.ok_or_else(|| format!("actor {kind} without an id"));
        match kind {
            "user" => UserId::parse(id()?)
                .map(Actor::User)
                .map_err(|e| format!("actor id: {e}")),
            "api_key" => KeyId::parse(id()?)
                .map(Actor::Key)
                .map_err(|e| format!("actor id: {e}")),
            "cli" => Ok(Actor::Cli),
            "system" => Ok(Actor::System),
            other => Err(format!("actor type {other}")),
        }
    }

    /// `user_…`, `key_…`, `cli` or `system`: how `created_by` and `revoked_by` name an actor.
    pub fn label(&self) -> String {
        self.id().unwrap_or(self.kind()).to_owned()
    }
}

/// The kind of object an audit entry is about (its `target_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditTarget {
    User,
    Project,
    ProjectMember,
    ProjectInvitation,
    ApiKey,
    AdminApiKey,
}

crate::names::stored_names!(AuditTarget {
    (User) => "user",
    (Project) => "project",
    (ProjectMember) => "project_member",
    (ProjectInvitation) => "project_invitation",
    (ApiKey) => "api_key",
    (AdminApiKey) => "admin_api_key",
});

impl AuditTarget {
    /// The kind a key of `kind` is audited as.
    pub fn key(kind: KeyKind) -> AuditTarget {
        match kind {
            KeyKind::Project => AuditTarget::ApiKey,
            KeyKind::Admin => AuditTarget::AdminApiKey,
        }
    }
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyEvent {
    Created,
    Updated,
    Rotated,
    Revoked,
}

/// What an audit entry records (its `action`, the API's event type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    UserCreated,
    ProjectCreated,
    ProjectUpdated,
    ProjectArchived,
    MemberSet,
    MemberRemoved,
    InvitationCreated,
    InvitationDeleted,
    InvitationAccepted,
    Key(KeyKind, KeyEvent),
}

crate::names::stored_names!(AuditAction {
    (UserCreated) => "user.created",
    (ProjectCreated) => "project.created",
    (ProjectUpdated) => "project.updated",
    (ProjectArchived) => "project.archived",
    (MemberSet) => "project_member.set",
    (MemberRemoved) => "project_member.removed",
    (InvitationCreated) => "project_invitation.created",
    (InvitationDeleted) => "project_invitation.deleted",
    (InvitationAccepted) => "project_invitation.accepted",
    (Key(KeyKind::Project, KeyEvent::Created)) => "api_key.created",
    (Key(KeyKind::Project, KeyEvent::Updated)) => "api_key.updated",
    (Key(KeyKind::Project, KeyEvent::Rotated)) => "api_key.rotated",
    (Key(KeyKind::Project, KeyEvent::Revoked)) => "api_key.revoked",
    (Key(KeyKind::Admin, KeyEvent::Created)) => "admin_api_key.created",
    (Key(KeyKind::Admin, KeyEvent::Updated)) => "admin_api_key.updated",
    (Key(KeyKind::Admin, KeyEvent::Rotated)) => "admin_api_key.rotated",
    (Key(KeyKind::Admin, KeyEvent::Revoked)) => "admin_api_key.revoked",
});

impl AuditAction {
    /// The kind of object the action is done to.
    pub fn target(self) -> AuditTarget {
        match self {
            AuditAction::UserCreated => AuditTarget::User,
            AuditAction::ProjectCreated
            | AuditAction::ProjectUpdated
            | AuditAction::ProjectArchived => AuditTarget::Project,
            AuditAction::MemberSet | AuditAction::MemberRemoved => AuditTarget::ProjectMember,
            AuditAction::InvitationCreated
            | AuditAction::InvitationDeleted
            | AuditAction::InvitationAccepted => AuditTarget::ProjectInvitation,
            AuditAction::Key(kind, _) => AuditTarget::key(kind),
        }
    }
}

/// One audit-log entry: who did what to which object, when and from where.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: AuditId,
    pub actor: Actor,
    pub action: AuditAction,
    /// Always `action.target()`.
    pub target_type: AuditTarget,
    pub target_id: String,
    pub project_id: Option<ProjectId>,
    /// The account the event belongs to, for events outside any project (admin keys).
    pub owner_id: Option<UserId>,
    pub details: serde_json::Value,
    pub source_ip: Option<String>,
    pub created_at: i64,
}

/// An entry of the change feed: its sequence number and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditChange {
    pub seq: i64,
    /// `None` for a kind this version does not know (written by a newer one).
    pub target_type: Option<AuditTarget>,
    pub target_id: String,
}

/// Which audit entries to list: those of the given projects or account.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub project_ids: Vec<ProjectId>,
    pub owner_id: Option<UserId>,
    /// Stored action names (event types); a name no action has matches nothing.
    pub actions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_is_named_after_its_target() {
        for a in AuditAction::ALL {
            assert_eq!(
                a.as_str().split_once('.').map(|(noun, _)| noun),
                Some(a.target().as_str())
            );
        }
    }

    #[test]
    fn every_actor_reads_back_from_its_stored_parts() {
        let actors = [
            Actor::User(UserId::generate()),
            Actor::Key(KeyId::generate()),
            Actor::Cli,
            Actor::System,
        ];
        for a in actors {
            assert_eq!(Actor::parse(a.kind(), a.id()), Ok(a.clone()));
        }
        assert!(Actor::parse("user", None).is_err());
        assert!(Actor::parse("robot", None).is_err());
    }
}
