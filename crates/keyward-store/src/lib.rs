//! Keyward's storage. Everything persistent goes through the [`Store`] trait;
//! [`SqlStore`] implements it for SQLite (the embedded default) and
//! PostgreSQL with one set of portable queries and a migrations folder per
//! backend.

#![forbid(unsafe_code)]

mod error;
mod pg_ledger;
mod rollup;
mod sql;
mod sqlite_ledger;
mod store;

pub use error::StoreError;
pub use sql::{Backend, SqlStore};
pub use store::{
    AccountStore, AuditStore, InvitationStore, KeyStore, NotificationStore, OutboxStore,
    ProjectStore, SessionStore, Store, UsageStore,
};
