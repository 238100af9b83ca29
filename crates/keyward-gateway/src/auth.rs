//! Key checks on the gateway's hot path: format and checksum (no I/O), then
//! SHA-256 and an in-memory cache; the store is read only on a miss.
//! Revocations, rotations and edits made in this process drop cached copies
//! at once; those made elsewhere (the CLI, another replica) are picked up
//! from the change feed within `watch_every`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyward_core::key::{self, KeyHashBuilder};
use keyward_core::{time::now_unix, KeyHash, KeyKind};
use keyward_service::{ActiveKey, Change, ServiceError, Services};
use moka::sync::Cache;

use crate::error::ApiError;

/// How long a cached key is trusted without a store read, as a backstop to
/// invalidation.
const TTL: Duration = Duration::from_secs(300);

/// Turns a presented secret into the active key behind it. Behind a trait
/// so that other lookups (a shared cache) can replace the in-process one.
#[async_trait]
pub trait KeyLookup: Send + Sync {
    /// The active project key behind `presented`, or the 401 to answer.
    async fn authenticate(&self, presented: &str) -> Result<Arc<ActiveKey>, ApiError>;
}

/// The in-process cache in front of the store.
pub struct KeyCache {
    services: Services,
    cache: Cache<KeyHash, Arc<ActiveKey>, KeyHashBuilder>,
}

impl KeyCache {
    pub fn new(services: Services, capacity: u64) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(TTL)
            .support_invalidation_closures()
            .build_with_hasher(KeyHashBuilder);
        let keys = Arc::new(KeyCache {
            services: services.clone(),
            cache,
        });
        let weak = Arc::downgrade(&keys);
        services.on_change(move |change| {
            if let Some(keys) = weak.upgrade() {
                keys.drop_cached(change);
            }
        });
        keys
    }

    fn drop_cached(&self, change: &Change) {
        let change = change.clone();
        let _ = self
            .cache
            .invalidate_entries_if(move |_, active| match &change {
                Change::Key(id) => active.descends_from(id),
                Change::Project(p) => active.key.project_id.as_ref() == Some(p),
            });
    }

    /// Follows the change feed so that changes made by other processes
    /// reach this cache within `every`.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let keys = Arc::downgrade(self);
        let services = self.services.clone();
        tokio::spawn(async move {
            let mut cursor = loop {
                match services.change_cursor().await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the change feed; retrying");
                        tokio::time::sleep(every).await;
                    }
                }
            };
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(keys) = keys.upgrade() else { return };
                match services.changes_since(&mut cursor).await {
                    Ok(changes) => {
                        for c in &changes {
                            keys.drop_cached(c);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the change feed; cached keys may be stale")
                    }
                }
            }
        })
    }
}

#[async_trait]
impl KeyLookup for KeyCache {
    async fn authenticate(&self, presented: &str) -> Result<Arc<ActiveKey>, ApiError> {
        let kind = key::verify(presented.as_bytes()).map_err(|_| ApiError::bad_key(presented))?;
        if kind == KeyKind::Admin {
            // Rare on the gateway: say it is the wrong kind of key only when
            // it is a real one, so unknown keys all look alike.
            return Err(match self.services.active_key(presented).await {
                Ok(_) => ApiError::missing_scope(
                    "model.request",
                    "Admin keys (sk-kwadmin-…) manage Keyward; call models with a project key (sk-kw-…).",
                ),
                Err(ServiceError::Unauthenticated(_)) => ApiError::bad_key(presented),
                Err(other) => other.into(),
            });
        }
        let hash = KeyHash::of(presented);
        if let Some(active) = self.cache.get(&hash) {
            if active.valid_until.is_none_or(|t| t > now_unix()) {
                return Ok(active);
            }
            self.cache.invalidate(&hash);
            return Err(ApiError::bad_key(presented));
        }
        match self.services.active_key(presented).await {
            Ok(active) => {
                let active = Arc::new(active);
                self.cache.insert(hash, active.clone());
                Ok(active)
            }
            Err(ServiceError::Unauthenticated(_)) => Err(ApiError::bad_key(presented)),
            Err(other) => Err(other.into()),
        }
    }
}
