//! The usage ledger's writer for SQLite: a connection of its own, outside
//! sqlx's pool, with its two statements prepared once.
//!
//! The ledger is written once per request, so its cost is paid on every
//! call through the gateway. Through sqlx each batch was sent to the pool's
//! database thread with an owned copy of every value, and the ids of the
//! rows really inserted came back one by one through a channel (a thread
//! wake-up every few rows). Here a batch is one transaction run on the
//! caller's thread: each row is inserted by the same prepared statement, and
//! SQLite's count of changed rows says whether it was new.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::error::{Result, StoreError};
use crate::records::UsageEvent;
use crate::rollup;

/// How long a batch waits for another connection's write to end.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SqliteLedger {
    /// None once closed.
    conn: Mutex<Option<Connection>>,
}

impl SqliteLedger {
    /// Opens `file`, which sqlx's pool has already created and migrated, or
    /// will have by the first batch.
    pub(crate) fn open(file: &Path) -> Result<Self> {
        let conn = Connection::open(file).map_err(|e| ledger_error("open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.execute_batch("PRAGMA synchronous = NORMAL;"))
            .map_err(|e| ledger_error("open", e))?;
        Ok(SqliteLedger {
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Stores `events` and adds the new ones to the daily roll-up, all or
    /// nothing. Blocks until the transaction has committed.
    pub(crate) fn record(&self, events: &[UsageEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // A batch that panicked mid-way rolled back with its transaction
        // (dropped unfinished): the connection is still sound.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = conn.as_mut() else {
            return Err(StoreError::Ledger("the store is closed".into()));
        };
        // IMMEDIATE: take the write lock now, not at the first insert.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| ledger_error("begin", e))?;
        let mut inserted = Vec::with_capacity(events.len());
        {
            let mut insert = tx
                .prepare_cached(&rollup::ledger_insert_sql(&placeholders(12)))
                .map_err(|e| ledger_error("prepare", e))?;
            for e in events {
                let changed = insert
                    .execute(params![
                        e.request_id,
                        e.key_id.as_str(),
                        e.project_id.as_str(),
                        e.user_id.as_str(),
                        e.model,
                        e.endpoint,
                        e.prompt_tokens,
                        e.completion_tokens,
                        e.cost.0,
                        e.status,
                        e.latency_ms,
                        e.created_at,
                    ])
                    .map_err(|e| ledger_error("insert", e))?;
                inserted.push(changed == 1);
            }
        }
        let daily = rollup::daily_sums(
            events
                .iter()
                .zip(&inserted)
                .filter_map(|(e, &new)| new.then_some(e)),
        );
        {
            let mut upsert = tx
                .prepare_cached(&rollup::upsert_sql(&placeholders(9)))
                .map_err(|e| ledger_error("prepare", e))?;
            for ((day, project, key, model), [requests, errors, prompt, completion, cost]) in daily
            {
                upsert
                    .execute(params![
                        day, project, key, model, requests, errors, prompt, completion, cost
                    ])
                    .map_err(|e| ledger_error("roll-up", e))?;
            }
        }
        tx.commit().map_err(|e| ledger_error("commit", e))
    }
}

impl SqliteLedger {
    /// Closes the connection; a later batch fails.
    pub(crate) fn close(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Err((_, e))) = conn.map(Connection::close) {
            tracing::warn!(error = %e, "closing the ledger's SQLite connection failed");
        }
    }
}

/// `(?, ?, …)` with `n` parameters.
fn placeholders(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

fn ledger_error(step: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Ledger(format!("{step}: {e}"))
}
