//! Secret keys: create (shown once), list, retrieve, update, revoke, rotate,
//! expire, and authenticate a presented secret.

use keyward_core::{
    time::now_unix, Access, KeyId, KeyKind, Micros, Permissions, PlainKey, ProjectId, UserId,
};
use keyward_core::{
    Actor, AuditAction, AuditEntry, KeyEvent, KeyRecord, KeyScope, Listed, Notification,
    OutboxMessage, Page, Project, RateLimits, Revocation, RevokeReason, SecretMatch, User,
};
use serde_json::json;

use crate::audit::{entry, list_error, Target};
use crate::caller::{Caller, Principal};
use crate::changes::Change;
use crate::error::{AuthError, Result, ServiceError};
use crate::{delegation, validate, Services};

/// The longest grace period a rotation may give the old secret: 7 days.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 7 * 86_400;

/// Settings for a new key.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    /// `None`: the default (`All` for people, the maker's for a key).
    pub permissions: Option<Permissions>,
    pub expires_at: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    pub rate_limits: RateLimits,
    pub monthly_budget: Option<Micros>,
}

/// Changes to a key's settings: `None` leaves a field as it is; `Some(None)`
/// clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub permissions: Option<Permissions>,
    pub expires_at: Option<Option<i64>>,
    pub allowed_models: Option<Option<Vec<String>>>,
    pub allowed_ips: Option<Option<Vec<String>>>,
    pub rate_limits: LimitsPatch,
    pub monthly_budget: Option<Option<Micros>>,
}

/// Changes to a key's or a project's rate limits: `None` leaves a limit as
/// it is; `Some(None)` clears it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsPatch {
    pub requests_per_minute: Option<Option<i64>>,
    pub tokens_per_minute: Option<Option<i64>>,
    pub max_concurrent_requests: Option<Option<i64>>,
}

impl LimitsPatch {
    /// Clears all three limits.
    pub const CLEAR: LimitsPatch = LimitsPatch {
        requests_per_minute: Some(None),
        tokens_per_minute: Some(None),
        max_concurrent_requests: Some(None),
    };

    /// Sets all three limits (`None`: no limit).
    pub fn set(limits: RateLimits) -> LimitsPatch {
        LimitsPatch {
            requests_per_minute: Some(limits.requests_per_minute),
            tokens_per_minute: Some(limits.tokens_per_minute),
            max_concurrent_requests: Some(limits.max_concurrent_requests),
        }
    }
}

/// A key just created or rotated: the only time its secret exists outside
/// the hands of its owner.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: KeyRecord,
    pub secret: PlainKey,
}

/// Which key an operation is about, and where it was addressed.
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// A project key, addressed under its project.
    InProject(&'a ProjectId, &'a KeyId),
    /// An admin key.
    Admin(&'a KeyId),
    /// Any key by id (the CLI).
    Any(&'a KeyId),
}

impl KeyRef<'_> {
    fn id(&self) -> &KeyId {
        match self {
            KeyRef::InProject(_, id) | KeyRef::Admin(id) | KeyRef::Any(id) => id,
        }
    }
}

fn validate_spec(spec: KeySpec, now: i64) -> Result<KeySpec> {
    Ok(KeySpec {
        name: validate::name("name", &spec.name)?,
        permissions: spec.permissions,
        expires_at: spec
            .expires_at
            .map(|t| validate::expires_at(t, now))
            .transpose()?,
        allowed_models: spec.allowed_models.map(validate::models).transpose()?,
        allowed_ips: spec.allowed_ips.map(validate::ips).transpose()?,
        rate_limits: validate_limits(spec.rate_limits)?,
        monthly_budget: spec.monthly_budget,
    })
}

/// Applies `patch` to `limits` and checks the result.
pub(crate) fn patch_limits(mut limits: RateLimits, patch: LimitsPatch) -> Result<RateLimits> {
    if let Some(v) = patch.requests_per_minute {
        limits.requests_per_minute = v;
    }
    if let Some(v) = patch.tokens_per_minute {
        limits.tokens_per_minute = v;
    }
    if let Some(v) = patch.max_concurrent_requests {
        limits.max_concurrent_requests = v;
    }
    validate_limits(limits)
}

fn validate_limits(l: RateLimits) -> Result<RateLimits> {
    Ok(RateLimits {
        requests_per_minute: l
            .requests_per_minute
            .map(|v| validate::limit("requests_per_minute", v))
            .transpose()?,
        tokens_per_minute: l
            .tokens_per_minute
            .map(|v| validate::limit("tokens_per_minute", v))
            .transpose()?,
        max_concurrent_requests: l
            .max_concurrent_requests
            .map(|v| validate::limit("max_concurrent_requests", v))
            .transpose()?,
    })
}

fn key_target(key: &KeyRecord) -> Target<'_> {
    Target {
        id: key.id.as_str(),
        project: key.project_id.as_ref(),
        owner: Some(&key.owner_id),
    }
}

impl Services {
    /// Creates a project key. The secret is returned after the row is committed
    /// and is never stored or retrievable again.
    pub async fn create_project_key(
        &self,
        caller: &Caller,
        project_id: &ProjectId,
        spec: KeySpec,
    ) -> Result<CreatedKey> {
        self.authorize_keys(caller, project_id, Access::Write)
            .await?;
        let project = self
            .store
            .project(project_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", project_id))?;
        if project.archived_at.is_some() {
            return Err(ServiceError::Invalid {
                param: None,
                message: format!(
                    "Project {project_id} is archived; create keys in an active project."
                ),
            });
        }
        let owner = match &caller.principal {
            Principal::User { user, .. } => user.id.clone(),
            Principal::ProjectKey(own) => own.key.owner_id.clone(),
            Principal::Cli | Principal::System => self.project_owner(project_id).await?,
        };
        self.insert_new_key(
            caller,
            KeyKind::Project,
            Some(project_id.clone()),
            owner,
            spec,
        )
        .await
    }

    /// Creates an admin key for the calling user (or, from the CLI, for `owner`).
    pub async fn create_admin_key(
        &self,
        caller: &Caller,
        owner: Option<&UserId>,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<CreatedKey> {
        let owner = match (&caller.principal, owner) {
            (Principal::Cli | Principal::System, Some(owner)) => self.user(owner).await?.id,
            (Principal::Cli | Principal::System, None) => {
                return Err(ServiceError::invalid(
                    "owner",
                    "Name the account that will own the admin key.",
                ))
            }
            _ => caller
                .require_user("organization.admin_api_keys.write")?
                .id
                .clone(),
        };
        let spec = KeySpec {
            name: name.to_owned(),
            expires_at,
            ..KeySpec::default()
        };
        self.insert_new_key(caller, KeyKind::Admin, None, owner, spec)
            .await
    }

    async fn insert_new_key(
        &self,
        caller: &Caller,
        kind: KeyKind,
        project_id: Option<ProjectId>,
        owner_id: UserId,
        spec: KeySpec,
    ) -> Result<CreatedKey> {
        let now = now_unix();
        let spec = validate_spec(spec, now)?;
        let maker = match &caller.principal {
            Principal::ProjectKey(own) => Some(own),
            _ => None,
        };
        if maker.is_some_and(|m| m.ancestors.len() + 1 >= delegation::MAX_DELEGATION_DEPTH) {
            return Err(ServiceError::Invalid {
                param: None,
                message: format!(
                    "Keys can be delegated at most {} deep; make this key with an admin key or the dashboard.",
                    delegation::MAX_DELEGATION_DEPTH
                ),
            });
        }
        let permissions_given = spec.permissions.is_some();
        let secret = PlainKey::generate(kind);
        let mut key = KeyRecord {
            id: KeyId::generate(),
            kind,
            project_id,
            owner_id,
            created_by: caller.actor().label(),
            parent_id: maker.map(|m| m.key.id.clone()),
            name: spec.name,
            redacted_value: secret.redacted(),
            permissions: spec.permissions.unwrap_or_default(),
            allowed_models: spec.allowed_models,
            allowed_ips: spec.allowed_ips,
            rate_limits: spec.rate_limits,
            monthly_budget: spec.monthly_budget,
            created_at: now,
            last_used_at: None,
            expires_at: spec.expires_at,
            revoked: None,
        };
        if let Some(maker) = maker {
            delegation::inherit(&mut key, &maker.key, permissions_given);
            delegation::check_within(&key, &maker.key)?;
        }
        let audit = entry(
            caller,
            AuditAction::Key(key.kind, KeyEvent::Created),
            key_target(&key),
            json!({ "name": key.name, "redacted_value": key.redacted_value, "permissions": key.permissions, "expires_at": key.expires_at, "parent_key_id": key.parent_id }),
        );
        let cap = match kind {
            KeyKind::Project => self.policy.max_active_keys_per_project,
            KeyKind::Admin => None,
        };
        self.store
            .insert_key(&key, &secret.hash(), cap, &audit)
            .await?;
        Ok(CreatedKey { key, secret })
    }

    /// A project's keys, newest first.
    pub async fn list_project_keys(
        &self,
        caller: &Caller,
        project: &ProjectId,
        include_revoked: bool,
        page: &Page,
    ) -> Result<Listed<KeyRecord>> {
        self.authorize_keys(caller, project, Access::Read).await?;
        self.list_keys(&KeyScope::Project(project.clone()), include_revoked, page)
            .await
    }

    /// The calling user's admin keys, newest first.
    pub async fn list_admin_keys(&self, caller: &Caller, page: &Page) -> Result<Listed<KeyRecord>> {
        let user = caller.require_user("organization.admin_api_keys.read")?;
        self.list_keys(&KeyScope::AdminKeysOf(user.id.clone()), false, page)
            .await
    }

    async fn list_keys(
        &self,
        scope: &KeyScope,
        include_revoked: bool,
        page: &Page,
    ) -> Result<Listed<KeyRecord>> {
        self.store
            .list_keys(scope, include_revoked, page)
            .await
            .map_err(list_error(page))
    }

    /// One key the caller may see.
    pub async fn key(&self, caller: &Caller, key: KeyRef<'_>) -> Result<KeyRecord> {
        self.resolve(caller, key, Access::Read).await
    }

    /// Changes a key's settings.
    pub async fn update_key(
        &self,
        caller: &Caller,
        key: KeyRef<'_>,
        patch: KeyPatch,
    ) -> Result<KeyRecord> {
        let mut record = self.resolve(caller, key, Access::Write).await?;
        let bound = self.delegation_bound(caller, &record).await?;
        let now = now_unix();
        if let Some(name) = &patch.name {
            record.name = validate::name("name", name)?;
        }
        if let Some(p) = patch.permissions {
            record.permissions = p;
        }
        if let Some(e) = patch.expires_at {
            record.expires_at = e.map(|t| validate::expires_at(t, now)).transpose()?;
        }
        if let Some(m) = patch.allowed_models {
            record.allowed_models = m.map(validate::models).transpose()?;
        }
        if let Some(i) = patch.allowed_ips {
            record.allowed_ips = i.map(validate::ips).transpose()?;
        }
        record.rate_limits = patch_limits(record.rate_limits, patch.rate_limits)?;
        if let Some(b) = patch.monthly_budget {
            record.monthly_budget = b;
        }
        if let Some(bound) = &bound {
            delegation::check_within(&record, bound)?;
        }
        let audit = entry(
            caller,
            AuditAction::Key(record.kind, KeyEvent::Updated),
            key_target(&record),
            json!({
                "name": record.name,
                "permissions": record.permissions,
                "expires_at": record.expires_at,
                "allowed_models": record.allowed_models,
                "allowed_ips": record.allowed_ips,
                "rate_limits": record.rate_limits,
                "monthly_budget_micros": record.monthly_budget,
            }),
        );
        self.store.update_key(&record, &audit).await?;
        self.changed(Change::Key(record.id.clone()));
        Ok(record)
    }

    /// Revokes a key for good. Idempotent: revoking a revoked key changes
    /// nothing and returns it as it is.
    pub async fn revoke_key(
        &self,
        caller: &Caller,
        key: KeyRef<'_>,
        reason: RevokeReason,
        note: Option<String>,
    ) -> Result<KeyRecord> {
        let record = self.resolve(caller, key, Access::Write).await?;
        self.delegation_bound(caller, &record).await?;
        Ok(self
            .revoke_record(caller, record, reason, note, None, &[])
            .await?
            .0)
    }

    /// Revokes `record`; `notice`, when given, is stored for its owner in
    /// the same transaction, and so are the `outbox` messages that carry it
    /// by email and webhook. Returns the key as it is now, and whether this
    /// call revoked it (false: it was revoked already).
    pub(crate) async fn revoke_record(
        &self,
        caller: &Caller,
        mut record: KeyRecord,
        reason: RevokeReason,
        note: Option<String>,
        notice: Option<&Notification>,
        outbox: &[OutboxMessage],
    ) -> Result<(KeyRecord, bool)> {
        if record.revoked.is_some() {
            return Ok((record, false));
        }
        let revocation = Revocation {
            at: now_unix(),
            by: caller.actor().label(),
            reason,
            note,
        };
        let audit = revocation_audit(caller, &record, &revocation);
        if self
            .store
            .revoke_key(&record.id, &revocation, &audit, notice, outbox)
            .await?
        {
            self.changed(Change::Key(record.id.clone()));
            record.revoked = Some(revocation);
            return Ok((record, true));
        }
        if let Some(now) = self.store.key(&record.id).await? {
            record = now;
        }
        Ok((record, false))
    }

    /// Gives a key a new secret with the same settings. The old secret keeps
    /// working for `grace_seconds` (0 to 7 days), then stops.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        key: KeyRef<'_>,
        grace_seconds: i64,
    ) -> Result<CreatedKey> {
        if !(0..=MAX_ROTATION_GRACE_SECONDS).contains(&grace_seconds) {
            return Err(ServiceError::invalid(
                "grace_period_seconds",
                format!("`grace_period_seconds` must be from 0 to {MAX_ROTATION_GRACE_SECONDS} (7 days)."),
            ));
        }
        let mut record = self.resolve(caller, key, Access::Write).await?;
        self.delegation_bound(caller, &record).await?;
        let now = now_unix();
        if !record.is_active(now) {
            return Err(ServiceError::Invalid {
                param: None,
                message: format!(
                    "Key {} is revoked or expired and cannot be rotated; create a new key.",
                    record.id
                ),
            });
        }
        let secret = PlainKey::generate(record.kind);
        let audit = entry(
            caller,
            AuditAction::Key(record.kind, KeyEvent::Rotated),
            key_target(&record),
            json!({ "old_redacted_value": record.redacted_value, "redacted_value": secret.redacted(), "grace_period_seconds": grace_seconds }),
        );
        self.store
            .rotate_key(
                &record.id,
                &secret.hash(),
                &secret.redacted(),
                now,
                now + grace_seconds,
                &audit,
            )
            .await?;
        self.changed(Change::Key(record.id.clone()));
        record.redacted_value = secret.redacted();
        Ok(CreatedKey {
            key: record,
            secret,
        })
    }

    /// Revokes every key whose expiry has passed (reason `expired`); returns
    /// how many. Also drops old secrets whose rotation grace has ended.
    pub async fn expire_due_keys(&self) -> Result<usize> {
        let now = now_unix();
        let system = Caller {
            principal: Principal::System,
            source_ip: None,
        };
        let mut count = 0;
        loop {
            let due = self.store.keys_expired_by(now, 500).await?;
            if due.is_empty() {
                break;
            }
            for key in due {
                let (_, newly) = self
                    .revoke_record(&system, key, RevokeReason::Expired, None, None, &[])
                    .await?;
                count += usize::from(newly);
            }
        }
        self.store.purge_expired_secrets(now).await?;
        Ok(count)
    }

    /// Checks a presented secret: format and checksum first (no store read
    /// for a typo), then the hash lookup, revocation and expiry.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, ServiceError> {
        let active = self.active_key(presented).await?;
        match active.key.kind {
            KeyKind::Admin => {
                let user = self
                    .store
                    .user(&active.key.owner_id)
                    .await?
                    .ok_or(AuthError::Unknown)?;
                Ok(Principal::User {
                    user,
                    via: Actor::Key(active.key.id),
                })
            }
            KeyKind::Project => Ok(Principal::ProjectKey(Box::new(active))),
        }
    }

    /// The key a presented secret belongs to, if it may be used now: not
    /// revoked, not expired, its secret not past a rotation's grace, its
    /// project not archived, and every key above it (delegation) active.
    pub async fn active_key(&self, presented: &str) -> Result<ActiveKey, ServiceError> {
        let plain = PlainKey::parse(presented).map_err(|_| AuthError::Malformed)?;
        let found = self.store.key_by_hash(&plain.hash()).await?;
        let now = now_unix();
        let (key, valid_until) = check_match(found, now)?;
        let ancestors = self.active_ancestors(&key, now).await?;
        let valid_until = ancestors
            .iter()
            .filter_map(|a| a.expires_at)
            .chain(valid_until)
            .min();
        let project = match &key.project_id {
            Some(id) => match self.store.project(id).await? {
                Some(p) if p.archived_at.is_none() => Some(p),
                _ => return Err(AuthError::Revoked.into()),
            },
            None => None,
        };
        Ok(ActiveKey {
            key,
            valid_until,
            project,
            ancestors,
        })
    }

    /// Loads a key and checks the caller may use it with `needed` access.
    /// Keys the caller cannot see answer NotFound, never Forbidden.
    async fn resolve(&self, caller: &Caller, key: KeyRef<'_>, needed: Access) -> Result<KeyRecord> {
        let id = key.id();
        let not_found = || ServiceError::not_found("key", id);
        let record = self.store.key(id).await?.ok_or_else(not_found)?;
        match (key, record.kind, &record.project_id) {
            (KeyRef::InProject(p, _), KeyKind::Project, Some(rp)) if p == rp => {}
            (KeyRef::Admin(_), KeyKind::Admin, _) | (KeyRef::Any(_), _, _) => {}
            _ => return Err(not_found()),
        }
        match (&record.project_id, &caller.principal) {
            (_, Principal::Cli | Principal::System) => {}
            (Some(project), _) => {
                self.authorize_keys(caller, project, needed)
                    .await
                    .map_err(|e| match e {
                        ServiceError::NotFound { .. } => not_found(),
                        other => other,
                    })?
            }
            (None, Principal::User { user, .. }) if user.id == record.owner_id => {}
            (None, _) => return Err(not_found()),
        }
        Ok(record)
    }

    /// The user a CLI-created key is owned by: the project's first owner.
    async fn project_owner(&self, project: &ProjectId) -> Result<UserId> {
        self.store
            .members(project)
            .await?
            .into_iter()
            .next()
            .map(|(u, _)| u)
            .ok_or_else(|| {
                ServiceError::Conflict(format!("Project {project} has no members to own the key."))
            })
    }

    /// The user who owns a key and their role (in the key's project, or in
    /// the installation for admin keys), for display.
    pub async fn key_owner(&self, key: &KeyRecord) -> Result<Option<(User, &'static str)>> {
        let Some(user) = self.store.user(&key.owner_id).await? else {
            return Ok(None);
        };
        let role = match &key.project_id {
            Some(p) => self
                .store
                .membership(p, &user.id)
                .await?
                .map_or("former member", |r| r.as_str()),
            None => user.role.as_str(),
        };
        Ok(Some((user, role)))
    }
}

pub(crate) fn revocation_audit(
    caller: &Caller,
    record: &KeyRecord,
    revocation: &Revocation,
) -> AuditEntry {
    entry(
        caller,
        AuditAction::Key(record.kind, KeyEvent::Revoked),
        key_target(record),
        json!({ "reason": revocation.reason.as_str(), "note": revocation.note, "redacted_value": record.redacted_value }),
    )
}

/// A key that may be used, and until when (its own expiry or its secret's,
/// whichever comes first).
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub key: KeyRecord,
    pub valid_until: Option<i64>,
    /// The key's project (none for admin keys), for project-wide limits.
    pub project: Option<Project>,
    /// The keys above it (delegation), nearest first: their limits,
    /// budgets and allow-lists apply to it too.
    pub ancestors: Vec<KeyRecord>,
}

/// The verdict on a hash lookup at time `now`.
fn check_match(
    found: Option<SecretMatch>,
    now: i64,
) -> Result<(KeyRecord, Option<i64>), AuthError> {
    let m = found.ok_or(AuthError::Unknown)?;
    if m.key.revoked.is_some() {
        return Err(AuthError::Revoked);
    }
    let valid_until = match (m.key.expires_at, m.secret_expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if valid_until.is_some_and(|t| t <= now) {
        return Err(AuthError::Expired);
    }
    Ok((m.key, valid_until))
}
