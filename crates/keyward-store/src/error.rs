use thiserror::Error;

/// A storage failure. Messages never contain secrets: queries bind hashes,
/// never plaintext keys.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the database could not be reached or failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the database schema could not be brought up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the usage ledger failed ({0})")]
    Ledger(String),
    #[error("a stored row is not what Keyward expects ({0}); was the database changed by hand?")]
    Corrupt(String),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("the project already has {0} active keys, the most the operator allows")]
    KeyCapReached(i64),
    #[error("{0}")]
    Config(String),
    /// A list's `after` names nothing in the listed collection.
    #[error("the page's `after` names nothing in this list")]
    UnknownCursor,
}

impl StoreError {
    pub(crate) fn from_insert(e: sqlx::Error, what: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
