//! Keyward's domain, free of I/O so that every rule here can be tested and
//! benchmarked on its own: the secret-key format, typed ids, permissions,
//! money in micro-dollars and human durations.

#![forbid(unsafe_code)]

pub mod base62;
pub mod duration;
pub mod endpoint;
pub mod gcra;
pub mod id;
pub mod key;
pub mod money;
pub mod net;
pub mod permissions;
pub mod time;

pub use endpoint::Endpoint;
pub use id::{AuditId, InvitationId, KeyId, ProjectId, UserId};
pub use key::{KeyFormatError, KeyHash, KeyKind, PlainKey};
pub use money::{Micros, Price};
pub use permissions::{Access, EndpointGroup, Permissions};
