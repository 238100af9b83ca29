//! Delegation: a key with `keys: write` may make, change and rotate keys,
//! but only ever narrower than itself. A key-made key is bounded by its
//! maker in every dimension, spends against it and dies with it; a key
//! changes only itself and the keys below it. The rules are written down
//! in docs/authorization.md.

use std::net::IpAddr;

use keyward_core::KeyRecord;
use keyward_core::{net, Access, EndpointGroup, KeyId};

use crate::caller::{Caller, Principal};
use crate::error::{AuthError, Result, ServiceError};
use crate::keys::ActiveKey;
use crate::Services;

/// How many makers a key may have above it.
pub const MAX_DELEGATION_DEPTH: usize = 8;

impl ActiveKey {
    /// The key, then each key above it (its maker, its maker's maker, …).
    pub fn lineage(&self) -> impl Iterator<Item = &KeyRecord> {
        std::iter::once(&self.key).chain(&self.ancestors)
    }

    /// Whether `needed` access on `group` is granted by the key and every
    /// key above it.
    pub fn allows(&self, group: EndpointGroup, needed: Access) -> bool {
        self.lineage().all(|k| k.permissions.allows(group, needed))
    }

    /// Whether a caller at `ip` may use the key: every allow-list in its
    /// lineage must hold the address.
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        self.lineage()
            .all(|k| net::ip_allowed(k.allowed_ips.as_deref(), ip))
    }

    /// Whether the key, and every key above it, may call `model`.
    pub fn model_allowed(&self, model: &str) -> bool {
        self.lineage().all(|k| {
            k.allowed_models
                .as_ref()
                .is_none_or(|list| list.iter().any(|m| m == model))
        })
    }

    /// Whether `id` is this key or one above it: a change to `id` must
    /// drop this key from caches.
    pub fn descends_from(&self, id: &KeyId) -> bool {
        self.lineage().any(|k| &k.id == id)
    }
}

/// Fills what a key-made key's settings left out from its maker: a new
/// key is a copy of its maker, narrowed by what was given.
pub(crate) fn inherit(key: &mut KeyRecord, maker: &KeyRecord, permissions_given: bool) {
    if !permissions_given {
        key.permissions = maker.permissions;
    }
    key.expires_at = key.expires_at.or(maker.expires_at);
    if key.allowed_models.is_none() {
        key.allowed_models.clone_from(&maker.allowed_models);
    }
    if key.allowed_ips.is_none() {
        key.allowed_ips.clone_from(&maker.allowed_ips);
    }
    let (l, m) = (&mut key.rate_limits, &maker.rate_limits);
    l.requests_per_minute = l.requests_per_minute.or(m.requests_per_minute);
    l.tokens_per_minute = l.tokens_per_minute.or(m.tokens_per_minute);
    l.max_concurrent_requests = l.max_concurrent_requests.or(m.max_concurrent_requests);
    key.monthly_budget = key.monthly_budget.or(maker.monthly_budget);
}

/// Checks that `key`'s settings are no wider than `bound`'s in any
/// dimension; 400 naming the first field that is.
pub(crate) fn check_within(key: &KeyRecord, bound: &KeyRecord) -> Result<()> {
    let wider = |param: &'static str, what: &str| {
        Err(ServiceError::invalid(
            param,
            format!(
                "A key can only make or change keys no broader than itself: `{param}` {what} than the limiting key {}'s.",
                bound.id
            ),
        ))
    };
    if !bound.permissions.covers(&key.permissions) {
        return wider("permissions", "grants more");
    }
    if let Some(outer) = &bound.allowed_models {
        let inside = key
            .allowed_models
            .as_ref()
            .is_some_and(|list| list.iter().all(|m| outer.contains(m)));
        if !inside {
            return wider("allowed_models", "allows more models");
        }
    }
    if let Some(outer) = &bound.allowed_ips {
        let inside = key
            .allowed_ips
            .as_ref()
            .is_some_and(|list| net::within(list, outer));
        if !inside {
            return wider("allowed_ips", "allows more addresses");
        }
    }
    if not_within(key.expires_at, bound.expires_at) {
        return wider("expires_at", "is later");
    }
    let (k, b) = (&key.rate_limits, &bound.rate_limits);
    for (param, mine, theirs) in [
        (
            "rate_limits.requests_per_minute",
            k.requests_per_minute,
            b.requests_per_minute,
        ),
        (
            "rate_limits.tokens_per_minute",
            k.tokens_per_minute,
            b.tokens_per_minute,
        ),
        (
            "rate_limits.max_concurrent_requests",
            k.max_concurrent_requests,
            b.max_concurrent_requests,
        ),
    ] {
        if not_within(mine, theirs) {
            return wider(param, "is higher");
        }
    }
    if not_within(
        key.monthly_budget.map(|m| m.0),
        bound.monthly_budget.map(|m| m.0),
    ) {
        return wider("monthly_budget_usd", "is higher");
    }
    Ok(())
}

/// A bound `outer` (none: unbounded) that `inner` (none: unbounded) exceeds.
fn not_within(inner: Option<i64>, outer: Option<i64>) -> bool {
    match (inner, outer) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(i), Some(o)) => i > o,
    }
}

impl Services {
    /// The keys above `key`, nearest first, each still active at `now`;
    /// a dead maker makes the key dead too.
    pub(crate) async fn active_ancestors(
        &self,
        key: &KeyRecord,
        now: i64,
    ) -> Result<Vec<KeyRecord>, ServiceError> {
        let mut ancestors = Vec::new();
        let mut next = key.parent_id.clone();
        while let Some(id) = next {
            if ancestors.len() >= MAX_DELEGATION_DEPTH {
                return Err(AuthError::Revoked.into());
            }
            let maker = self.store.key(&id).await?.ok_or(AuthError::Revoked)?;
            if maker.revoked.is_some() {
                return Err(AuthError::Revoked.into());
            }
            if maker.expires_at.is_some_and(|t| t <= now) {
                return Err(AuthError::Expired.into());
            }
            next = maker.parent_id.clone();
            ancestors.push(maker);
        }
        Ok(ancestors)
    }

    /// For a change made by a key: checks that `target` is that key or one
    /// below it, and returns the bound the changed key must stay within
    /// (itself as it is now, or its maker). `None` for other callers.
    pub(crate) async fn delegation_bound(
        &self,
        caller: &Caller,
        target: &KeyRecord,
    ) -> Result<Option<KeyRecord>> {
        let Principal::ProjectKey(own) = &caller.principal else {
            return Ok(None);
        };
        if target.id == own.key.id {
            return Ok(Some(target.clone()));
        }
        let mut next = target.parent_id.clone();
        let mut maker: Option<KeyRecord> = None;
        for _ in 0..=MAX_DELEGATION_DEPTH {
            let Some(id) = next else { break };
            let above = self.store.key(&id).await?;
            let Some(above) = above else { break };
            if maker.is_none() {
                maker = Some(above.clone());
            }
            if above.id == own.key.id {
                return Ok(maker);
            }
            next = above.parent_id;
        }
        Err(ServiceError::PermissionDenied {
            scope: EndpointGroup::Keys.scope(Access::Write),
            hint: "A key may change, rotate or revoke only itself and the keys made under it; use an admin key or the dashboard for other keys.",
        })
    }
}
