//! The usage ledger's writer for SQLite: a connection of its own, outside
//! sqlx's pool, with its statements prepared once.
//!
//! The ledger is written once per request, so its cost is paid on every
//! call through the gateway. Through sqlx each batch was sent to the pool's
//! database thread with an owned copy of every value, and the ids of the
//! rows really inserted came back one by one through a channel (a thread
//! wake-up every few rows). Here a batch is one transaction run on the
//! caller's thread, by statements prepared once; SQLite's count of changed
//! rows says whether every row was new, and only when one was not are the
//! new rows read back.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, CachedStatement, Connection, ToSql};

use crate::error::{Result, StoreError};
use crate::rollup;
use crate::sql::{statement_chunks, Backend, SQLITE_PRAGMAS, STATEMENT_ROWS};
use keyward_core::records::UsageEvent;

pub(crate) struct SqliteLedger {
    /// None once closed.
    conn: Mutex<Option<Connection>>,
    /// The insert's SQL for each of [`STATEMENT_ROWS`] rows, built once:
    /// it is also the statement's key in the connection's cache, so each
    /// size is prepared once.
    inserts: Vec<(usize, String)>,
    upsert: String,
}

impl SqliteLedger {
    /// Opens `file`, which sqlx's pool has already created and migrated, or
    /// will have by the first batch, with the pool's settings.
    pub(crate) fn open(file: &Path) -> Result<Self> {
        let conn = Connection::open(file).map_err(|e| ledger_error("open", e))?;
        conn.execute_batch(SQLITE_PRAGMAS)
            .map_err(|e| ledger_error("open", e))?;
        // The writer retries a batch that meets a lock, so it waits for
        // one briefly: a long wait here would hold a graceful stop past
        // its grace (this runs on a blocking thread, not cancellable).
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(|e| ledger_error("open", e))?;
        Ok(SqliteLedger {
            conn: Mutex::new(Some(conn)),
            inserts: STATEMENT_ROWS
                .iter()
                .map(|&n| (n, rollup::ledger_insert_sql(&Backend::Sqlite.values(n, 12))))
                .collect(),
            upsert: rollup::upsert_sql(&Backend::Sqlite.values(1, 9)),
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
        // The rows of this batch are those past the ledger's last row now:
        // the write lock is held, so no other writer adds any meanwhile.
        let before: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM usage_ledger", [], |r| {
                r.get(0)
            })
            .map_err(|e| ledger_error("read", e))?;
        let mut stored = 0;
        for chunk in statement_chunks(events) {
            let sql = self
                .inserts
                .iter()
                .find(|(n, _)| *n == chunk.len())
                .map(|(_, sql)| sql)
                .ok_or_else(|| StoreError::Ledger("no statement for a batch size".into()))?;
            let mut insert = tx
                .prepare_cached(sql)
                .map_err(|e| ledger_error("prepare", e))?;
            for (n, e) in chunk.iter().enumerate() {
                bind_row(&mut insert, n * 12, e).map_err(|e| ledger_error("bind", e))?;
            }
            stored += insert
                .raw_execute()
                .map_err(|e| ledger_error("insert", e))?;
        }
        // Rows whose request id was already stored (a batch written again)
        // were skipped; only new rows count, once each.
        let mut new_ids = None;
        if stored < events.len() {
            let mut ids = tx
                .prepare("SELECT request_id FROM usage_ledger WHERE seq > ?1")
                .map_err(|e| ledger_error("prepare", e))?;
            let ids = ids
                .query_map([before], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<HashSet<String>>>())
                .map_err(|e| ledger_error("read", e))?;
            new_ids = Some(ids);
        }
        let daily = rollup::daily_sums(events.iter().filter(|e| match &mut new_ids {
            Some(ids) => ids.remove(&e.request_id),
            None => true,
        }));
        {
            let mut upsert = tx
                .prepare_cached(&self.upsert)
                .map_err(|e| ledger_error("prepare", e))?;
            for ((day, project, key, model), sums) in daily {
                let [requests, errors, prompt, completion, cost] = sums.in_column_order();
                upsert
                    .execute(params![
                        day, project, key, model, requests, errors, prompt, completion, cost
                    ])
                    .map_err(|e| ledger_error("roll-up", e))?;
            }
        }
        tx.commit().map_err(|e| ledger_error("commit", e))
    }

    /// Closes the connection; a later batch fails.
    pub(crate) fn close(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Err((_, e))) = conn.map(Connection::close) {
            tracing::warn!(error = %e, "closing the ledger's SQLite connection failed");
        }
    }
}

/// Binds `e` to the parameters after the first `offset`.
fn bind_row(
    insert: &mut CachedStatement<'_>,
    offset: usize,
    e: &UsageEvent,
) -> rusqlite::Result<()> {
    let values: [&dyn ToSql; 12] = [
        &e.request_id,
        &e.key_id.as_str(),
        &e.project_id.as_str(),
        &e.user_id.as_str(),
        &e.model,
        &e.endpoint.as_str(),
        &e.prompt_tokens,
        &e.completion_tokens,
        &e.cost.0,
        &e.status,
        &e.latency_ms,
        &e.created_at,
    ];
    for (n, v) in values.into_iter().enumerate() {
        insert.raw_bind_parameter(offset + n + 1, v)?;
    }
    Ok(())
}

fn ledger_error(step: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Ledger(format!("{step}: {e}"))
}
