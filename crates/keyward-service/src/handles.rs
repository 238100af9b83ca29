//! Narrow handles on the database for the work that runs beside the
//! services' rules: the gateway's ledger writer and budget book, the
//! notice outbox's deliverer, the readiness probe and the process's start
//! and stop. Each reaches only the part of the store it needs, so nothing
//! above keyward-service holds the store itself.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use keyward_core::{
    KeyId, Listed, Micros, ObjectKind, ObjectQuery, OutboxItem, OutboxOutcome, OwnedObject,
    ProjectId, SpendOwner, UsageEvent,
};
use keyward_store::{SqlStore, Store, StoreError};

use crate::error::{Result, ServiceError};
use crate::{Policy, Services};

/// Where the gateway's ledger writer stores what it metered.
#[async_trait]
pub trait UsageSink: Send + Sync + 'static {
    /// Appends ledger rows and adds them to the daily roll-up, in one
    /// transaction. A request id already recorded is skipped, so a retried
    /// batch does not count twice.
    async fn record_usage(&self, events: &[UsageEvent]) -> Result<()>;
    /// Records when keys were last used.
    async fn touch_keys(&self, uses: &[(KeyId, i64)]) -> Result<()>;
}

/// What the gateway's budget book reads: spend so far.
#[async_trait]
pub trait SpendReader: Send + Sync + 'static {
    /// What a key (with every key below it), or a whole project, has spent
    /// since `from` (a day boundary).
    async fn spend_since(&self, owner: SpendOwner<'_>, from: i64) -> Result<Micros>;
}

/// The usage ledger, as the gateway writes and reads it.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
}

#[async_trait]
impl UsageSink for Ledger {
    async fn record_usage(&self, events: &[UsageEvent]) -> Result<()> {
        Ok(self.store.record_usage(events).await?)
    }

    async fn touch_keys(&self, uses: &[(KeyId, i64)]) -> Result<()> {
        Ok(self.store.touch_keys(uses).await?)
    }
}

#[async_trait]
impl SpendReader for Ledger {
    async fn spend_since(&self, owner: SpendOwner<'_>, from: i64) -> Result<Micros> {
        Ok(self.store.spend_since(owner, from).await?)
    }
}

/// Who owns the objects upstreams keep (responses, files, batches), as
/// the gateway records and checks them.
#[async_trait]
pub trait ObjectRegistry: Send + Sync + 'static {
    /// Records a new object's owner. An id already recorded keeps its first
    /// owner (an upstream never issues one id twice; if it did, the first
    /// project keeps it).
    async fn record(&self, object: &OwnedObject) -> Result<()>;
    /// The object if `project` owns it; `None` when it does not exist or
    /// another project owns it, which callers answer alike (404), so that
    /// another project's ids cannot even be confirmed.
    async fn owned(
        &self,
        kind: ObjectKind,
        id: &str,
        project: &ProjectId,
    ) -> Result<Option<OwnedObject>>;
    /// Replaces the JSON kept of an object (lists are answered from it).
    async fn refresh(&self, kind: ObjectKind, id: &str, snapshot: &str) -> Result<()>;
    /// Forgets an object deleted (or gone) upstream.
    async fn forget(&self, kind: ObjectKind, id: &str) -> Result<()>;
    /// Marks a batch's usage as recorded; `true` for the one call that did.
    async fn settle(&self, kind: ObjectKind, id: &str) -> Result<bool>;
    /// A page of one project's objects; an `after` that is not one of them
    /// is a 400 naming `after`.
    async fn list(&self, query: &ObjectQuery<'_>) -> Result<Listed<OwnedObject>>;
}

/// Whether `id` can be an object id at all: text without NUL, which
/// PostgreSQL refuses in a query parameter (a 500, not a 404).
fn storable_id(id: &str) -> bool {
    !id.contains('\0')
}

/// The owners of upstream objects, in the store.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
}

#[async_trait]
impl ObjectRegistry for Objects {
    async fn record(&self, object: &OwnedObject) -> Result<()> {
        self.store.insert_object(object).await?;
        Ok(())
    }

    async fn owned(
        &self,
        kind: ObjectKind,
        id: &str,
        project: &ProjectId,
    ) -> Result<Option<OwnedObject>> {
        if !storable_id(id) {
            // No upstream issues such an id, and PostgreSQL cannot hold it.
            return Ok(None);
        }
        Ok(self
            .store
            .object(kind, id)
            .await?
            .filter(|o| &o.project_id == project))
    }

    async fn refresh(&self, kind: ObjectKind, id: &str, snapshot: &str) -> Result<()> {
        Ok(self
            .store
            .update_object_snapshot(kind, id, snapshot)
            .await?)
    }

    async fn forget(&self, kind: ObjectKind, id: &str) -> Result<()> {
        self.store.delete_object(kind, id).await?;
        Ok(())
    }

    async fn settle(&self, kind: ObjectKind, id: &str) -> Result<bool> {
        Ok(self.store.settle_object(kind, id).await?)
    }

    async fn list(&self, query: &ObjectQuery<'_>) -> Result<Listed<OwnedObject>> {
        if let Some(after) = query.after.filter(|a| !storable_id(a)) {
            return Err(crate::audit::cursor_error(after));
        }
        self.store.list_objects(query).await.map_err(|e| match e {
            StoreError::UnknownCursor => {
                crate::audit::cursor_error(query.after.unwrap_or_default())
            }
            other => other.into(),
        })
    }
}

/// The outbox of notices to deliver by email and webhook, as its
/// deliverer works through it.
#[derive(Clone)]
pub struct NoticeOutbox {
    store: Arc<dyn Store>,
}

impl NoticeOutbox {
    /// Rows due at `now` that no process holds, oldest first.
    pub async fn due(&self, now: i64, limit: u32) -> Result<Vec<OutboxItem>> {
        Ok(self.store.outbox_due(now, limit).await?)
    }

    /// Holds row `id` until `until` for one attempt; `false` when it is no
    /// longer due or another process holds it.
    pub async fn claim(&self, id: i64, now: i64, until: i64) -> Result<bool> {
        Ok(self.store.claim_outbox(id, now, until).await?)
    }

    /// Records how an attempt ended and lets go of the row.
    pub async fn settle(&self, id: i64, now: i64, outcome: &OutboxOutcome) -> Result<()> {
        Ok(self.store.settle_outbox(id, now, outcome).await?)
    }

    /// Deletes rows delivered or given up before `before`; returns how many.
    pub async fn prune(&self, before: i64) -> Result<u64> {
        Ok(self.store.prune_outbox(before).await?)
    }
}

/// Where the database is.
#[derive(Debug, Clone, Copy)]
pub enum Database<'a> {
    /// `sqlite:…`, `postgres://…` or `postgresql://…`.
    Url(&'a str),
    /// SQLite's file `keyward.db` in this directory (made if missing).
    SqliteDir(&'a Path),
}

/// Why [`Services::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database could not be opened or reached.
    #[error(transparent)]
    Connect(ServiceError),
    /// Its schema could not be brought up to date.
    #[error(transparent)]
    Migrate(ServiceError),
}

impl Services {
    /// Opens the database, brings its schema up to date and wraps it in
    /// the services.
    pub async fn open(database: Database<'_>, policy: Policy) -> Result<Services, OpenError> {
        let store = match database {
            Database::Url(url) => SqlStore::connect(url).await,
            Database::SqliteDir(dir) => SqlStore::open_sqlite_dir(dir).await,
        }
        .map_err(|e| OpenError::Connect(e.into()))?;
        store
            .migrate()
            .await
            .map_err(|e| OpenError::Migrate(e.into()))?;
        Ok(Services::new(Arc::new(store), policy))
    }

    /// The usage ledger, for the gateway's writer ([`UsageSink`]) and
    /// budget book ([`SpendReader`]).
    pub fn ledger(&self) -> Ledger {
        Ledger {
            store: self.store.clone(),
        }
    }

    /// The owners of upstream objects, for the gateway ([`ObjectRegistry`]).
    pub fn objects(&self) -> Objects {
        Objects {
            store: self.store.clone(),
        }
    }

    /// The notice outbox, for its deliverer.
    pub fn notice_outbox(&self) -> NoticeOutbox {
        NoticeOutbox {
            store: self.store.clone(),
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    /// Closes every database connection (SQLite then folds its WAL into
    /// the database). Call once, when nothing uses the services any more.
    pub async fn close(&self) {
        self.store.close().await;
    }
}
