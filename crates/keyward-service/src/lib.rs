//! The services behind every way into Keyward: the management API, the CLI
//! and the dashboard call these functions, never the store directly, so each
//! rule (who may do what, what is valid, what gets audited) lives once.
//! Work beside those rules (the gateway's ledger writer and budget book,
//! the notice outbox, readiness) gets a narrow handle on the database
//! (`handles`); nothing above this crate holds the store.

#![forbid(unsafe_code)]

mod accounts;
mod audit;
mod caller;
mod changes;
mod delegation;
mod error;
mod exposure;
mod handles;
mod invitations;
mod keys;
mod members;
mod projects;
mod sessions;
mod token;
mod usage;
mod validate;

use std::sync::Arc;

pub use accounts::NewAccount;
pub use caller::{Caller, Principal};
pub use changes::{Change, ChangeCursor};
pub use delegation::MAX_DELEGATION_DEPTH;
pub use error::{AuthError, ServiceError};
pub use exposure::{Label, Notice, Reported, Sighting, Verdict};
pub use handles::{
    Database, Ledger, NoticeOutbox, ObjectRegistry, Objects, OpenError, SpendReader, UsageSink,
};
pub use invitations::{CreatedInvitation, OpenInvitation, INVITATION_SECONDS};
pub use keys::{
    ActiveKey, CreatedKey, KeyPatch, KeyRef, KeySpec, LimitsPatch, MAX_ROTATION_GRACE_SECONDS,
};
use keyward_core::NoticeChannel;
use keyward_store::Store;
/// What [`ServiceError::Store`] carries.
pub use keyward_store::StoreError;
pub use projects::ProjectPatch;
pub use sessions::{session_hash, SessionToken, SESSION_SECONDS};
pub use token::SecretToken;
pub use usage::{BucketWidth, UsageBucket, UsagePage, UsageQuery, LATEST_TIME};
pub use validate::MAX_NAME_CHARS;

/// Operator settings the services enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The most active (unrevoked, unexpired) keys one project may hold.
    pub max_active_keys_per_project: Option<i64>,
    /// Where notices go beyond the dashboard (the configured email and
    /// webhook): each gets an outbox row with the notice.
    pub notice_channels: Vec<NoticeChannel>,
    /// Who may sign up through the dashboard's form.
    pub signup: SignupPolicy,
}

/// Who may create an account through the sign-up form (`dashboard.signup`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignupPolicy {
    /// The first account (the operator) only; after that people join
    /// through an owner's invitation, or the operator's CLI.
    #[default]
    Closed,
    /// Anyone who can reach the dashboard.
    Open,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_active_keys_per_project: Some(1000),
            notice_channels: Vec::new(),
            signup: SignupPolicy::Closed,
        }
    }
}

/// The services, sharing one store.
#[derive(Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    policy: Policy,
    hooks: Arc<std::sync::RwLock<Vec<changes::Hook>>>,
}

impl Services {
    pub fn new(store: Arc<dyn Store>, policy: Policy) -> Self {
        Services {
            store,
            policy,
            hooks: Arc::default(),
        }
    }
}

/// Largest page a list returns; the default is 20.
pub const MAX_PAGE: u32 = 100;
