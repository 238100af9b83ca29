//! [`Store`] over SQLite or PostgreSQL through sqlx's `Any` driver: one set of
//! portable queries (`$n` placeholders, which both accept), one migrations
//! folder per backend. Writers that read-then-write start with a write, so
//! SQLite takes its write lock first and PostgreSQL locks the row.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use keyward_core::{AuditId, KeyHash, KeyId, KeyKind, Micros, Permissions, ProjectId, UserId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use crate::error::{Result, StoreError};
use crate::pg_ledger::PgLedger;
use crate::rollup;
use crate::sqlite_ledger::SqliteLedger;
use crate::store::*;
use keyward_core::records::*;
use keyward_core::{
    Actor, AuditAction, AuditChange, AuditEntry, AuditFilter, AuditTarget, Listed, Page,
};
use params::Params;

mod accounts;
mod audit;
mod invitations;
mod keys;
mod notifications;
mod objects;
mod outbox;
mod params;
mod projects;
mod sessions;
mod usage;

use audit::insert_audit;
use keys::{key_from_row, revoke_in, KEY_COLUMNS};
use notifications::insert_notification_in;
use projects::member_role;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config(
                "the database URL must start with sqlite:, postgres:// or postgresql://".into(),
            ))
        }
    }
}

/// The SQL store.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite's ledger writer, on a connection of its own (none for an
    /// in-memory database, which a second connection would not see).
    ledger: Option<Arc<SqliteLedger>>,
    /// PostgreSQL's ledger writer (array inserts through PostgreSQL's own
    /// driver, on a small pool of its own).
    pg_ledger: Option<Arc<PgLedger>>,
}

/// Set on every SQLite connection: the pool's and the ledger's own.
/// `synchronous = FULL`: every commit (a key created, rotated or revoked, a
/// member removed, a ledger batch) is on disk when it returns, so it
/// survives a power cut, not only a crash. Management changes are few, and
/// the ledger commits a batch of up to 8192 rows at once, so the `fsync`
/// per commit does not show in the ledger writer's rows per second
/// (BENCHMARKS.md: FULL and NORMAL measured on one machine).
pub(crate) const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; \
     PRAGMA cache_size = -32000; PRAGMA mmap_size = 1073741824;";

/// Lists fetch one row more than asked, to tell whether there are more.
fn listed<T>(mut items: Vec<T>, limit: u32) -> Listed<T> {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Listed { items, has_more }
}

impl SqlStore {
    /// Runs a list's query (which asks for `limit + 1` rows) and reads its
    /// rows with `from_row` into a page.
    async fn fetch_listed<T>(
        &self,
        sql: &str,
        params: &Params,
        limit: u32,
        from_row: fn(&AnyRow) -> Result<T>,
    ) -> Result<Listed<T>> {
        let rows = params
            .bind_to(sqlx::query(sql))
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(listed(items, limit))
    }
}

impl SqlStore {
    /// Connects to `url` (`sqlite://path?mode=rwc`, `postgres://…`).
    pub async fn connect(url: &str) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = Backend::of_url(url)?;
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10));
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options.connect(url).await?;
        let mut ledger = None;
        let pg_ledger = match backend {
            Backend::Postgres => Some(Arc::new(PgLedger::connect(url).await?)),
            Backend::Sqlite => None,
        };
        if backend == Backend::Sqlite {
            // WAL is a property of the database file: setting it once persists.
            pool.execute("PRAGMA journal_mode = WAL").await?;
            let file = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .get_filename()
                .to_owned();
            if file != Path::new(":memory:") && !url.contains("mode=memory") {
                ledger = Some(Arc::new(SqliteLedger::open(&file)?));
            }
        }
        Ok(SqlStore {
            pool,
            backend,
            ledger,
            pg_ledger,
        })
    }

    /// Opens (creating if needed) `keyward.db` in `dir`.
    pub async fn open_sqlite_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let file = dir.join("keyward.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        // Reject paths sqlx's URL parser would misread before we hand it over.
        sqlx::sqlite::SqliteConnectOptions::from_str(&url).map_err(|e| {
            StoreError::Config(format!(
                "cannot use {} as a database file: {e}",
                file.display()
            ))
        })?;
        Self::connect(&url).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where a page starts: the `seq` of the row named `after` (found by
    /// `sql`, which binds `binds` and then `after` and must search only the
    /// listed collection), or past the end when there is no `after`.
    async fn page_start(&self, after: Option<&str>, sql: &str, binds: &[&str]) -> Result<i64> {
        let mut params = Params::default();
        for b in binds {
            params.text(b);
        }
        self.page_start_with(after, sql, &params).await
    }

    /// [`Self::page_start`] for a query whose values are `params`; `sql`'s
    /// last placeholder (the next one after them) is the cursor.
    async fn page_start_with(
        &self,
        after: Option<&str>,
        sql: &str,
        params: &Params,
    ) -> Result<i64> {
        let Some(after) = after else {
            return Ok(i64::MAX);
        };
        let q = params.bind_to(sqlx::query(sql));
        match q.bind(after).fetch_optional(&self.pool).await? {
            Some(row) => Ok(row.try_get::<i64, _>(0)?),
            None => Err(StoreError::UnknownCursor),
        }
    }
}

/// Rows per multi-row INSERT, largest first: a batch is cut into pieces of
/// these sizes, so only a handful of distinct statements are ever prepared
/// (and stay in sqlx's statement cache). At 12 values a row, 256 rows stay
/// far below the bound parameters SQLite (32,766) and PostgreSQL (65,535)
/// accept.
pub(crate) const STATEMENT_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Cuts `items` into pieces of [`STATEMENT_ROWS`] sizes.
pub(crate) fn statement_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS.into_iter().find(|&n| n <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

impl Backend {
    /// The VALUES of a multi-row INSERT: `(?, ?, …), (?, …)` for SQLite,
    /// whose driver looks each numbered parameter up by name (quadratic in
    /// their count), `($1, $2, …), ($n+1, …)` for PostgreSQL.
    pub(crate) fn values(self, rows: usize, columns: usize) -> String {
        let mut out = String::with_capacity(rows * columns * 6);
        for row in 0..rows {
            out.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    out.push_str(", ");
                }
                match self {
                    Backend::Sqlite => out.push('?'),
                    Backend::Postgres => {
                        out.push('$');
                        out.push_str(&(row * columns + column + 1).to_string());
                    }
                }
            }
            out.push(')');
        }
        out
    }
}

/// Runs `f`, which blocks on the database, without stalling the other tasks
/// of a multi-threaded runtime (a single-threaded one has none to stall).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn parse_id<T>(
    row: &AnyRow,
    col: &str,
    parse: fn(&str) -> Result<T, keyward_core::id::IdError>,
) -> Result<T> {
    let s: String = row.try_get(col)?;
    parse(&s).map_err(|e| corrupt(format!("{col}: {e}")))
}

fn parse_opt_id<T>(
    row: &AnyRow,
    col: &str,
    parse: fn(&str) -> Result<T, keyward_core::id::IdError>,
) -> Result<Option<T>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| parse(&s).map_err(|e| corrupt(format!("{col}: {e}"))))
        .transpose()
}

/// A key's or a project's rate limits, from the columns both tables have.
fn rate_limits_from_row(row: &AnyRow) -> Result<RateLimits> {
    Ok(RateLimits {
        requests_per_minute: row.try_get("rpm_limit")?,
        tokens_per_minute: row.try_get("tpm_limit")?,
        max_concurrent_requests: row.try_get("max_concurrent")?,
    })
}

/// A key's or a project's monthly budget.
fn budget_from_row(row: &AnyRow) -> Result<Option<Micros>> {
    Ok(row
        .try_get::<Option<i64>, _>("monthly_budget_micros")?
        .map(Micros))
}

fn json_list(row: &AnyRow, col: &str) -> Result<Option<Vec<String>>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(format!("{col}: {e}"))))
        .transpose()
}

fn to_json_list(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref()
        .map(|l| serde_json::Value::from(l.clone()).to_string())
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    async fn close(&self) {
        if let Some(ledger) = &self.ledger {
            ledger.close();
        }
        if let Some(ledger) = &self.pg_ledger {
            ledger.close().await;
        }
        self.pool.close().await;
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_few_statement_shapes() {
        let sizes =
            |n: usize| -> Vec<usize> { statement_chunks(&vec![0u8; n]).map(<[u8]>::len).collect() };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(300), [256, 16, 16, 4, 4, 4]);
        assert_eq!(sizes(512), [256, 256]);
        assert_eq!(sizes(83).iter().sum::<usize>(), 83);
    }

    #[tokio::test]
    async fn sqlite_commits_through_the_pool_are_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite_dir(dir.path()).await.unwrap();
        for _ in 0..3 {
            let mut conn = store.pool.acquire().await.unwrap();
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(level, 2, "a pool connection commits without FULL sync");
        }
    }

    #[test]
    fn values_use_each_backends_placeholders() {
        assert_eq!(Backend::Sqlite.values(2, 2), "(?, ?), (?, ?)");
        assert_eq!(Backend::Postgres.values(2, 2), "($1, $2), ($3, $4)");
    }
}
