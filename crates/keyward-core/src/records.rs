//! The records Keyward keeps: accounts, projects, keys, usage,
//! notifications, sessions and invitations. They are plain data; the store
//! reads and writes them, and the rules about them live in keyward-service.

use crate::{KeyId, KeyKind, Micros, Permissions, ProjectId, UserId};
use serde::{Deserialize, Serialize};

/// An operator runs the installation; a user owns projects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    Operator,
    User,
}

crate::names::stored_names!(UserRole {
    (Operator) => "operator",
    (User) => "user",
});

/// An account. `password_hash` is an argon2id PHC string, never a password.
#[derive(Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: UserRole,
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    /// Limits on all of the project's keys together.
    pub rate_limits: RateLimits,
    pub monthly_budget: Option<Micros>,
}

/// A user's role in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Reader,
    Member,
    Owner,
}

crate::names::stored_names!(MemberRole {
    (Reader) => "reader",
    (Member) => "member",
    (Owner) => "owner",
});

/// Why a key stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Its owner (or someone allowed to) revoked it.
    User,
    /// It was found exposed in public.
    Exposed,
    /// Its expiry time passed.
    Expired,
    /// An operator revoked it.
    Admin,
    /// Its owner was removed from the key's project.
    MemberRemoved,
}

crate::names::stored_names!(RevokeReason {
    (User) => "user",
    (Exposed) => "exposed",
    (Expired) => "expired",
    (Admin) => "admin",
    (MemberRemoved) => "member_removed",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: i64,
    /// The actor that revoked it, as in the audit log (`user_…`, `key_…`, `cli`, `system`).
    pub by: String,
    pub reason: RevokeReason,
    /// Free text, e.g. where an exposed key was found.
    pub note: Option<String>,
}

/// Per-key rate limits; `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimits {
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub max_concurrent_requests: Option<i64>,
}

/// Everything about a key except its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub kind: KeyKind,
    /// `None` for admin keys, which belong to an account rather than a project.
    pub project_id: Option<ProjectId>,
    pub owner_id: UserId,
    pub created_by: String,
    /// The key that made this one (delegation), which bounds it.
    pub parent_id: Option<KeyId>,
    pub name: String,
    pub redacted_value: String,
    pub permissions: Permissions,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    pub rate_limits: RateLimits,
    pub monthly_budget: Option<Micros>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked: Option<Revocation>,
}

impl KeyRecord {
    /// Active: neither revoked nor past its expiry at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// A key found by the hash of a presented secret.
#[derive(Debug, Clone)]
pub struct SecretMatch {
    pub key: KeyRecord,
    /// When this particular secret stops working (set on the old secret by a rotation).
    pub secret_expires_at: Option<i64>,
}

/// Which keys to list.
#[derive(Debug, Clone)]
pub enum KeyScope {
    Project(ProjectId),
    AdminKeysOf(UserId),
}

/// What one gateway request used and cost; a row of the usage ledger.
/// Serialized as a line of the ledger's crash spool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsageEvent {
    pub request_id: String,
    pub key_id: KeyId,
    pub project_id: ProjectId,
    pub user_id: UserId,
    pub model: std::sync::Arc<str>,
    pub endpoint: crate::Endpoint,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: Micros,
    /// The HTTP status the client received.
    pub status: u16,
    pub latency_ms: i64,
    pub created_at: i64,
}

/// One row of the daily roll-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    pub day: i64,
    pub project_id: ProjectId,
    pub key_id: KeyId,
    pub model: String,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: Micros,
}

/// Whose spending to add up.
#[derive(Debug, Clone, Copy)]
pub enum SpendOwner<'a> {
    Key(&'a KeyId),
    Project(&'a ProjectId),
}

/// Which usage to add up, and how to group it.
#[derive(Debug, Clone)]
pub struct UsageFilter {
    /// Only these projects; never empty (the caller's visible projects).
    pub projects: Vec<ProjectId>,
    pub keys: Vec<KeyId>,
    pub models: Vec<String>,
    /// `[from, to)` in Unix seconds; `from` is aligned to `bucket_seconds`.
    pub from: i64,
    pub to: i64,
    /// 60, 3600 or 86400.
    pub bucket_seconds: i64,
    pub by_project: bool,
    pub by_key: bool,
    pub by_model: bool,
}

/// One group's usage in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub bucket_start: i64,
    pub project_id: Option<ProjectId>,
    pub key_id: Option<KeyId>,
    pub model: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: Micros,
}

/// A notice to an account owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: String,
    pub user_id: UserId,
    /// E.g. `api_key.exposed`.
    pub kind: String,
    pub key_id: Option<KeyId>,
    pub project_id: Option<ProjectId>,
    /// One sentence for people.
    pub message: String,
    /// Structured details (redacted key, where it was found, when).
    pub details: serde_json::Value,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// Where a notice goes beyond the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeChannel {
    Email,
    Webhook,
}

crate::names::stored_names!(NoticeChannel {
    (Email) => "email",
    (Webhook) => "webhook",
});

/// A notice for one channel, to be kept in the outbox until delivered. The
/// payload never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub channel: NoticeChannel,
    pub payload: String,
}

/// An outbox row due for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub channel: NoticeChannel,
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: i64,
    pub created_at: i64,
}

/// How one attempt at delivering an outbox row ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxOutcome {
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        at: i64,
        error: String,
    },
    /// Failed for good: kept, with the error, but never tried again.
    GaveUp {
        error: String,
    },
}

/// A dashboard session. The token itself is never stored: `token_hash` is
/// the hex SHA-256 of the token the browser holds in its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_hash: String,
    pub user_id: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    pub source_ip: Option<String>,
}

/// An invitation to join a project with a role. The link's token is never
/// stored: `token_hash` is the hex SHA-256 of the token in the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: crate::InvitationId,
    pub token_hash: String,
    pub project_id: ProjectId,
    /// Lower-case; only the account with this email may use the link.
    pub email: String,
    pub role: MemberRole,
    pub invited_by: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    /// When the link was used (it works once).
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<UserId>,
}
