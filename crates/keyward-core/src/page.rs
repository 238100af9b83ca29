//! Cursor pagination, as every list reads it.

/// A cursor page: items after the one with id `after`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: u32,
}

/// One page of results, newest first.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}
