//! The JSON objects the management API returns, shaped like OpenAI's Admin API.

use keyward_core::{AuditEntry, KeyRecord, Listed, Project, RateLimits, User};
use keyward_core::{KeyKind, Permissions};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// `{"object":"list","data":[…],"first_id","last_id","has_more"}`.
#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl<T> List<T> {
    pub fn new<R>(listed: Listed<R>, id: impl Fn(&R) -> String, map: impl FnMut(R) -> T) -> Self {
        List {
            object: "list",
            first_id: listed.items.first().map(&id),
            last_id: listed.items.last().map(&id),
            has_more: listed.has_more,
            data: listed.items.into_iter().map(map).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProjectObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    /// `active` or `archived`.
    pub status: &'static str,
    /// Limits on all the project's keys together.
    #[schema(value_type = Object)]
    pub rate_limits: RateLimits,
    pub monthly_budget_usd: Option<f64>,
}

impl From<Project> for ProjectObject {
    fn from(p: Project) -> Self {
        ProjectObject {
            id: p.id.to_string(),
            object: "organization.project",
            name: p.name,
            created_at: p.created_at,
            status: if p.archived_at.is_some() {
                "archived"
            } else {
                "active"
            },
            archived_at: p.archived_at,
            rate_limits: p.rate_limits,
            monthly_budget_usd: p.monthly_budget.map(|m| m.to_usd()),
        }
    }
}

#[derive(Clone, Serialize, ToSchema)]
pub struct OwnerUser {
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct Owner {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub user: Option<OwnerUser>,
}

impl Owner {
    pub fn of(user: Option<User>, role: &str) -> Self {
        Owner {
            kind: "user",
            user: user.map(|u| OwnerUser {
                object: "organization.user",
                id: u.id.to_string(),
                name: u.name,
                email: u.email,
                role: role.to_owned(),
                created_at: u.created_at,
            }),
        }
    }
}

/// A key as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyObject {
    /// `organization.project.api_key` or `organization.admin_api_key`.
    pub object: &'static str,
    pub id: String,
    pub name: String,
    pub redacted_value: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub owner: Owner,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Who created it: `user_…`, `key_…` or `cli`.
    pub created_by: String,
    #[schema(value_type = Object)]
    pub permissions: Permissions,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    #[schema(value_type = Object)]
    pub rate_limits: RateLimits,
    pub monthly_budget_usd: Option<f64>,
    pub revoked_at: Option<i64>,
    /// `user`, `exposed`, `expired` or `admin`.
    pub revoke_reason: Option<&'static str>,
}

impl KeyObject {
    pub fn new(key: KeyRecord, owner: Owner) -> Self {
        KeyObject {
            object: match key.kind {
                KeyKind::Project => "organization.project.api_key",
                KeyKind::Admin => "organization.admin_api_key",
            },
            id: key.id.to_string(),
            name: key.name,
            redacted_value: key.redacted_value,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            owner,
            project_id: key.project_id.map(|p| p.to_string()),
            created_by: key.created_by,
            permissions: key.permissions,
            allowed_models: key.allowed_models,
            allowed_ips: key.allowed_ips,
            rate_limits: key.rate_limits,
            monthly_budget_usd: key.monthly_budget.map(|m| m.to_usd()),
            revoked_at: key.revoked.as_ref().map(|r| r.at),
            revoke_reason: key.revoked.as_ref().map(|r| r.reason.as_str()),
        }
    }
}

/// A key just created or rotated: the listed fields plus `value`, the
/// secret, present in this one response only.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyObject {
    #[serde(flatten)]
    pub key: KeyObject,
    /// The full secret. It is not stored and cannot be shown again.
    pub value: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedObject {
    pub object: &'static str,
    pub id: String,
    pub deleted: bool,
}

/// An audit-log entry in OpenAI's shape: the event's details sit under a
/// key named after its type, e.g. `"api_key.created": {"id", "data"}`.
pub fn audit_object(e: AuditEntry) -> Value {
    let actor = match &e.actor {
        keyward_core::Actor::User(id) => {
            json!({"type": "session", "session": {"user": {"id": id}, "ip_address": e.source_ip}})
        }
        keyward_core::Actor::Key(id) => json!({"type": "api_key", "api_key": {"id": id}}),
        keyward_core::Actor::Cli => json!({"type": "cli"}),
        keyward_core::Actor::System => json!({"type": "system"}),
    };
    let mut obj = json!({
        "object": "organization.audit_log",
        "id": e.id,
        "type": e.action.as_str(),
        "effective_at": e.created_at,
        "actor": actor,
        "project": e.project_id.as_ref().map(|p| json!({"id": p})),
        "target": {"type": e.target_type.as_str(), "id": e.target_id},
        "ip_address": e.source_ip,
    });
    obj[e.action.as_str()] = json!({"id": e.target_id, "data": e.details});
    obj
}
