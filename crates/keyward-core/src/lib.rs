//! Keyward's domain, free of I/O so that every rule here can be tested and
//! benchmarked on its own: the secret-key format, typed ids, permissions,
//! money in micro-dollars and human durations; and the vocabulary every
//! crate above shares: the records Keyward keeps, the audit log's kinds,
//! pages of lists and the kinds of upstream.

#![forbid(unsafe_code)]

pub mod audit;
pub mod base62;
pub mod duration;
pub mod endpoint;
pub mod gcra;
pub mod id;
pub mod key;
pub mod money;
mod names;
pub mod net;
pub mod objects;
pub mod page;
pub mod permissions;
pub mod records;
pub mod time;
pub mod upstream;

pub use audit::{Actor, AuditAction, AuditChange, AuditEntry, AuditFilter, AuditTarget, KeyEvent};
pub use endpoint::Endpoint;
pub use id::{AuditId, InvitationId, KeyId, ProjectId, UserId};
pub use key::{KeyFormatError, KeyHash, KeyKind, PlainKey};
pub use money::{Measure, Micros, Price};
pub use objects::{ObjectKind, ObjectQuery, OwnedObject};
pub use page::{Listed, Page};
pub use permissions::{Access, EndpointGroup, Permissions};
pub use records::*;
pub use upstream::UpstreamKind;
