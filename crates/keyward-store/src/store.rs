use async_trait::async_trait;
use keyward_core::{KeyHash, KeyId, Micros, ProjectId, UserId};

use crate::error::Result;
use keyward_core::records::*;
use keyward_core::{AuditChange, AuditEntry, AuditFilter, Listed, Page};
use keyward_core::{ObjectKind, ObjectQuery, OwnedObject};

/// Everything Keyward persists. Every mutation takes the audit entry that
/// describes it and writes both in one transaction, so the log cannot miss a
/// change that happened nor record one that did not.
///
/// Split by the kind of data: `Store` is every part, plus the database's
/// own life (schema, readiness, closing). `SqlStore` implements each part
/// in a file of its own under `sql/`.
#[async_trait]
pub trait Store:
    AccountStore
    + ProjectStore
    + KeyStore
    + UsageStore
    + NotificationStore
    + OutboxStore
    + SessionStore
    + InvitationStore
    + AuditStore
    + ObjectStore
    + Send
    + Sync
    + 'static
{
    /// Brings the schema up to date.
    async fn migrate(&self) -> Result<()>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;
    /// Closes every connection (SQLite then folds its WAL into the database).
    async fn close(&self);
}

/// Accounts.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn insert_user(&self, user: &User, audit: &AuditEntry) -> Result<()>;
    async fn user(&self, id: &UserId) -> Result<Option<User>>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    async fn count_users(&self) -> Result<i64>;
}

/// Projects and their members.
#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Inserts a project with `owner` as its first member (role owner).
    async fn insert_project(
        &self,
        project: &Project,
        owner: &UserId,
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn project(&self, id: &ProjectId) -> Result<Option<Project>>;
    /// The projects `user` belongs to, with their role, newest first.
    async fn projects_of(
        &self,
        user: &UserId,
        include_archived: bool,
        page: &Page,
    ) -> Result<Listed<(Project, MemberRole)>>;
    /// Every project, oldest first (for the operator's CLI).
    async fn all_projects(&self) -> Result<Vec<Project>>;
    async fn membership(&self, project: &ProjectId, user: &UserId) -> Result<Option<MemberRole>>;
    /// The project's members with their roles, owners first.
    async fn members(&self, project: &ProjectId) -> Result<Vec<(UserId, MemberRole)>>;
    /// Writes a project's name, rate limits and budget.
    async fn update_project(&self, project: &Project, audit: &AuditEntry) -> Result<()>;
    async fn archive_project(&self, id: &ProjectId, at: i64, audit: &AuditEntry) -> Result<()>;
    /// Adds `user` to `project` with `role`, or changes their role.
    async fn upsert_member(
        &self,
        project: &ProjectId,
        user: &UserId,
        role: MemberRole,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<()>;
    /// Removes `user` from `project` and, in the same transaction, revokes
    /// every active key they own there with `revocation`, auditing each with
    /// `key_audit`. `None` if they were not a member; else the revoked keys.
    async fn remove_member(
        &self,
        project: &ProjectId,
        user: &UserId,
        audit: &AuditEntry,
        revocation: &Revocation,
        key_audit: &(dyn for<'k> Fn(&'k KeyRecord) -> AuditEntry + Send + Sync),
    ) -> Result<Option<Vec<KeyId>>>;
}

/// Keys and their secrets' hashes.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts a key and its secret's hash. With `active_cap`, fails with
    /// [`crate::StoreError::KeyCapReached`] when the key's project already has
    /// that many active keys; the check and the insert are atomic.
    async fn insert_key(
        &self,
        key: &KeyRecord,
        hash: &KeyHash,
        active_cap: Option<i64>,
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn key(&self, id: &KeyId) -> Result<Option<KeyRecord>>;
    /// The key whose (current or grace-period) secret hashes to `hash`.
    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<SecretMatch>>;
    /// Keys newest first; revoked ones only with `include_revoked`.
    async fn list_keys(
        &self,
        scope: &KeyScope,
        include_revoked: bool,
        page: &Page,
    ) -> Result<Listed<KeyRecord>>;
    /// Writes the key's mutable settings: name, permissions, allow-lists, limits, budget, expiry.
    async fn update_key(&self, key: &KeyRecord, audit: &AuditEntry) -> Result<()>;
    /// Revokes the key; `false` if it was revoked already. `notice`, when
    /// given, is stored in the same transaction, and so is `outbox` (the
    /// notice's email and webhook): an exposed key's owner is told
    /// whenever the revocation commits.
    async fn revoke_key(
        &self,
        id: &KeyId,
        revocation: &Revocation,
        audit: &AuditEntry,
        notice: Option<&Notification>,
        outbox: &[OutboxMessage],
    ) -> Result<bool>;
    /// Adds `new_hash` as the key's secret; every older secret stops working
    /// at `old_secrets_expire_at`.
    async fn rotate_key(
        &self,
        id: &KeyId,
        new_hash: &KeyHash,
        new_redacted: &str,
        now: i64,
        old_secrets_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<()>;
    /// Records when keys were last used (batched by the caller).
    async fn touch_keys(&self, uses: &[(KeyId, i64)]) -> Result<()>;
    /// Active keys whose expiry is at or before `now`.
    async fn keys_expired_by(&self, now: i64, limit: u32) -> Result<Vec<KeyRecord>>;
    /// Drops secrets whose grace period ended before `now`.
    async fn purge_expired_secrets(&self, now: i64) -> Result<u64>;
}

/// The usage ledger and its daily roll-up.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Appends ledger rows and adds them to the daily roll-up, in one
    /// transaction. A request id already recorded is skipped, so a retried
    /// batch does not count twice.
    async fn record_usage(&self, events: &[UsageEvent]) -> Result<()>;
    /// What a key (with every key below it, see delegation), or a whole
    /// project, has spent since `from` (a day boundary).
    async fn spend_since(&self, owner: SpendOwner<'_>, from: i64) -> Result<Micros>;
    /// Usage added up per time bucket and group, oldest bucket first. Daily
    /// buckets read the roll-up; finer ones read the ledger.
    async fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>>;
    /// Ledger rows of a project in `[from, to)`, oldest first (for tests and export).
    async fn usage_events(
        &self,
        project: &ProjectId,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageEvent>>;
}

/// Notifications to account owners.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    async fn insert_notification(&self, n: &Notification) -> Result<()>;
    /// A user's notifications, newest first.
    async fn notifications(&self, user: &UserId, page: &Page) -> Result<Listed<Notification>>;
}

/// Notices to deliver by email and webhook.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Rows due at `now` that no process holds, oldest first.
    async fn outbox_due(&self, now: i64, limit: u32) -> Result<Vec<OutboxItem>>;
    /// Holds row `id` until `until` for one attempt; `false` when it is no
    /// longer due or another process holds it.
    async fn claim_outbox(&self, id: i64, now: i64, until: i64) -> Result<bool>;
    /// Records how an attempt ended and lets go of the row.
    async fn settle_outbox(&self, id: i64, now: i64, outcome: &OutboxOutcome) -> Result<()>;
    /// Deletes rows delivered or given up before `before`; returns how many.
    async fn prune_outbox(&self, before: i64) -> Result<u64>;
}

/// Dashboard sessions (not audited: they are high-churn, like `touch_keys`).
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: &Session) -> Result<()>;
    /// The session whose token hashes to `token_hash`, expired or not.
    async fn session(&self, token_hash: &str) -> Result<Option<Session>>;
    /// Ends one session; `false` if there was none.
    async fn delete_session(&self, token_hash: &str) -> Result<bool>;
    /// Drops sessions that expired before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: i64) -> Result<u64>;
}

/// Invitations to projects.
#[async_trait]
pub trait InvitationStore: Send + Sync {
    async fn insert_invitation(&self, invitation: &Invitation, audit: &AuditEntry) -> Result<()>;
    /// The invitation whose token hashes to `token_hash`, used or not.
    async fn invitation(&self, token_hash: &str) -> Result<Option<Invitation>>;
    /// A project's invitations not used yet and unexpired at `now`, newest first.
    async fn pending_invitations(&self, project: &ProjectId, now: i64) -> Result<Vec<Invitation>>;
    /// Uses the invitation: marks it accepted by `user` and makes `user` a
    /// member of its project with its role (one already a member keeps
    /// their role), in one transaction with `audit`. `None` when it was
    /// used already or expired by `at`: a link works once, also when
    /// several requests race for it.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        user: &UserId,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<Option<Invitation>>;
    /// Withdraws an unused invitation; `false` if there was none.
    async fn delete_invitation(
        &self,
        project: &ProjectId,
        id: &keyward_core::InvitationId,
        audit: &AuditEntry,
    ) -> Result<bool>;
}

/// The audit log and its change feed.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The newest audit entry's sequence number (0 when empty).
    async fn audit_seq_now(&self) -> Result<i64>;
    /// What the entries after `after` are about, oldest first: the change
    /// feed other processes watch to drop cached keys.
    async fn audit_targets_since(&self, after: i64, limit: u32) -> Result<Vec<AuditChange>>;
    /// The entries among `seqs` that exist now (a reader of the change
    /// feed asks again for sequence numbers it skipped: PostgreSQL commits
    /// them out of order).
    async fn audit_targets_at(&self, seqs: &[i64]) -> Result<Vec<AuditChange>>;
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> Result<Listed<AuditEntry>>;
}

/// Which project owns each upstream object (responses, files, batches).
/// Not audited: these are the data plane's records, like the ledger.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Records an object's owner; `false` when the id is already recorded
    /// (its first owner stays).
    async fn insert_object(&self, object: &OwnedObject) -> Result<bool>;
    /// The object, whoever owns it.
    async fn object(&self, kind: ObjectKind, id: &str) -> Result<Option<OwnedObject>>;
    /// Replaces the object's last JSON seen.
    async fn update_object_snapshot(
        &self,
        kind: ObjectKind,
        id: &str,
        snapshot: &str,
    ) -> Result<()>;
    /// Forgets the object (deleted, or gone upstream).
    async fn delete_object(&self, kind: ObjectKind, id: &str) -> Result<bool>;
    /// Marks a batch's usage as recorded; `true` for the one call that did.
    async fn settle_object(&self, kind: ObjectKind, id: &str) -> Result<bool>;
    /// A page of a project's objects of one kind, in creation order.
    async fn list_objects(&self, query: &ObjectQuery<'_>) -> Result<Listed<OwnedObject>>;
}
