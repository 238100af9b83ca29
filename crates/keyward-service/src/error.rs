use keyward_store::StoreError;
use thiserror::Error;

/// Why a presented key was not accepted. Every variant answers 401 with the
/// same masked message, so a caller learns nothing about which keys exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("no API key was provided")]
    Missing,
    #[error("the key is malformed")]
    Malformed,
    #[error("no such key")]
    Unknown,
    #[error("the key was revoked")]
    Revoked,
    #[error("the key has expired")]
    Expired,
}

/// A service call that could not be carried out, with what to do about it.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// Also used for objects that exist but belong to someone else, so
    /// their existence does not leak.
    #[error("No such {what}: {id}")]
    NotFound { what: &'static str, id: String },
    #[error("{message}")]
    Invalid {
        param: Option<&'static str>,
        message: String,
    },
    #[error(
        "You have insufficient permissions for this operation. Missing scopes: {scope}. {hint}"
    )]
    PermissionDenied { scope: String, hint: &'static str },
    #[error("{0}")]
    Conflict(String),
    /// The installation's policy does not allow it (e.g. sign-up is closed).
    #[error("{0}")]
    Refused(String),
    #[error(
        "This project already has {0} active keys, the most this installation allows. Revoke keys you no longer use, or ask the operator to raise limits.max_active_keys_per_project."
    )]
    KeyCapReached(i64),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::KeyCapReached(cap) => ServiceError::KeyCapReached(cap),
            other => ServiceError::Store(other),
        }
    }
}

impl ServiceError {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            param: Some(param),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        ServiceError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
