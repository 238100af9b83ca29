//! Public ids (`key_…`, `proj_…`, `user_…`, `audit_…`): a typed wrapper per
//! entity so that a key id can never be passed where a project id belongs.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base62;

const RANDOM_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a valid {what} id: expected `{prefix}` followed by letters and digits")]
pub struct IdError {
    pub what: &'static str,
    pub prefix: &'static str,
    /// The input, cut short so an error never echoes a long payload.
    pub shown: String,
}

fn parse_id(s: &str, prefix: &'static str, what: &'static str) -> Result<(), IdError> {
    let ok = s.len() <= MAX_LEN
        && s.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(base62::is_base62));
    if ok {
        Ok(())
    } else {
        Err(IdError {
            what,
            prefix,
            shown: s.chars().take(MAX_LEN).collect(),
        })
    }
}

fn random_id(prefix: &str) -> String {
    let mut random = [0u8; RANDOM_LEN];
    base62::fill_random(&mut random);
    let mut s = String::with_capacity(prefix.len() + RANDOM_LEN);
    s.push_str(prefix);
    s.extend(random.iter().map(|&b| char::from(b)));
    s
}

macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        // Shared, not owned: a request clones the ids of its key, project
        // and owner several times (rate-limit subjects, ledger rows), and a
        // clone is then a reference count, not an allocation.
        pub struct $name(Arc<str>);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                $name(random_id($prefix).into())
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_id(s, $prefix, $what).map(|()| $name(s.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Written as its text, without a copy (the ledger's spool writes
        /// three ids per call).
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                parse_id(&s, $prefix, $what).map(|()| $name(s.into()))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

public_id!(
    /// A secret key's public id; safe to show, log and put in URLs.
    KeyId, "key_", "key"
);
public_id!(
    /// A project's id.
    ProjectId, "proj_", "project"
);
public_id!(
    /// A user account's id.
    UserId, "user_", "user"
);
public_id!(
    /// An audit-log entry's id.
    AuditId, "audit_", "audit log"
);
public_id!(
    /// A notification's id.
    NotificationId, "notice_", "notification"
);
public_id!(
    /// An invitation to a project (never its secret link).
    InvitationId, "inv_", "invitation"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_others_do_not() {
        let id = KeyId::generate();
        assert!(id.as_str().starts_with("key_"));
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
        assert!(KeyId::parse("proj_abc").is_err());
        assert!(KeyId::parse("key_").is_err());
        assert!(KeyId::parse("key_a-b").is_err());
        assert!(KeyId::parse(&format!("key_{}", "a".repeat(100))).is_err());
        assert!(serde_json::from_str::<ProjectId>("\"key_abc\"").is_err());
    }
}
