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
use crate::outbox;
use crate::pg_ledger::PgLedger;
use crate::rollup;
use crate::sqlite_ledger::SqliteLedger;
use crate::store::Store;
use keyward_core::records::*;
use keyward_core::{
    Actor, AuditAction, AuditChange, AuditEntry, AuditFilter, AuditTarget, Listed, Page,
    UnknownCursor,
};

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

const KEY_COLUMNS: &str = "id, kind, project_id, owner_id, created_by, name, redacted_value, \
     permissions, allowed_models, allowed_ips, rpm_limit, tpm_limit, max_concurrent, \
     monthly_budget_micros, created_at, last_used_at, expires_at, revoked_at, revoked_by, \
     revoke_reason, revoke_note, parent_key_id";

const AUDIT_COLUMNS: &str = "id, actor_type, actor_id, action, target_type, target_id, \
     project_id, owner_id, details, source_ip, created_at";

/// Lists fetch one row more than asked, to tell whether there are more.
fn listed<T>(mut items: Vec<T>, limit: u32) -> Listed<T> {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Listed { items, has_more }
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
    async fn page_start(
        &self,
        after: Option<&str>,
        sql: &str,
        binds: &[&str],
    ) -> Result<Result<i64, UnknownCursor>> {
        let Some(after) = after else {
            return Ok(Ok(i64::MAX));
        };
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        Ok(match q.bind(after).fetch_optional(&self.pool).await? {
            Some(row) => Ok(row.try_get::<i64, _>(0)?),
            None => Err(UnknownCursor),
        })
    }
}

async fn insert_audit(tx: &mut Transaction<'_, Any>, e: &AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, \
         project_id, owner_id, details, source_ip, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.id.as_str())
    .bind(e.actor.kind())
    .bind(e.actor.id())
    .bind(e.action.as_str())
    .bind(e.target_type.as_str())
    .bind(e.target_id.as_str())
    .bind(e.project_id.as_ref().map(|p| p.as_str()))
    .bind(e.owner_id.as_ref().map(|u| u.as_str()))
    .bind(e.details.to_string())
    .bind(e.source_ip.as_deref())
    .bind(e.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT, largest first: a batch is cut into pieces of
/// these sizes, so only a handful of distinct statements are ever prepared
/// (and stay in sqlx's statement cache). At 12 values a row, 256 rows stay
/// far below the bound parameters SQLite (32,766) and PostgreSQL (65,535)
/// accept.
pub(crate) const STATEMENT_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Marks a key revoked; `false` if it was revoked already.
async fn revoke_in(
    tx: &mut Transaction<'_, Any>,
    id: &KeyId,
    revocation: &Revocation,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1, revoked_by = $2, revoke_reason = $3, revoke_note = $4 \
         WHERE id = $5 AND revoked_at IS NULL",
    )
    .bind(revocation.at)
    .bind(revocation.by.as_str())
    .bind(revocation.reason.as_str())
    .bind(revocation.note.as_deref())
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn insert_notification_in(tx: &mut Transaction<'_, Any>, n: &Notification) -> Result<()> {
    sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, key_id, project_id, message, details, created_at, read_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(n.id.as_str())
    .bind(n.user_id.as_str())
    .bind(n.kind.as_str())
    .bind(n.key_id.as_ref().map(|k| k.as_str()))
    .bind(n.project_id.as_ref().map(|p| p.as_str()))
    .bind(n.message.as_str())
    .bind(n.details.to_string())
    .bind(n.created_at)
    .bind(n.read_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

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

fn json_list(row: &AnyRow, col: &str) -> Result<Option<Vec<String>>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(format!("{col}: {e}"))))
        .transpose()
}

fn to_json_list(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref()
        .map(|l| serde_json::Value::from(l.clone()).to_string())
}

fn user_from_row(row: &AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: parse_id(row, "id", UserId::parse)?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        role: UserRole::parse(&role).ok_or_else(|| corrupt(format!("user role {role}")))?,
        created_at: row.try_get("created_at")?,
    })
}

fn project_from_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: parse_id(row, "id", ProjectId::parse)?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        archived_at: row.try_get("archived_at")?,
        rate_limits: RateLimits {
            requests_per_minute: row.try_get("rpm_limit")?,
            tokens_per_minute: row.try_get("tpm_limit")?,
            max_concurrent_requests: row.try_get("max_concurrent")?,
        },
        monthly_budget: row
            .try_get::<Option<i64>, _>("monthly_budget_micros")?
            .map(Micros),
    })
}

fn member_role(row: &AnyRow) -> Result<MemberRole> {
    let role: String = row.try_get("role")?;
    MemberRole::parse(&role).ok_or_else(|| corrupt(format!("member role {role}")))
}

fn invitation_from_row(row: &AnyRow) -> Result<Invitation> {
    Ok(Invitation {
        id: parse_id(row, "id", keyward_core::InvitationId::parse)?,
        token_hash: row.try_get("token_hash")?,
        project_id: parse_id(row, "project_id", ProjectId::parse)?,
        email: row.try_get("email")?,
        role: member_role(row)?,
        invited_by: parse_id(row, "invited_by", UserId::parse)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
        accepted_by: parse_opt_id(row, "accepted_by", UserId::parse)?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<KeyRecord> {
    let kind: String = row.try_get("kind")?;
    let permissions: String = row.try_get("permissions")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let revoked = match revoked_at {
        None => None,
        Some(at) => {
            let reason: String = row.try_get("revoke_reason")?;
            Some(Revocation {
                at,
                by: row
                    .try_get::<Option<String>, _>("revoked_by")?
                    .unwrap_or_default(),
                reason: RevokeReason::parse(&reason)
                    .ok_or_else(|| corrupt(format!("revoke reason {reason}")))?,
                note: row.try_get("revoke_note")?,
            })
        }
    };
    Ok(KeyRecord {
        id: parse_id(row, "id", KeyId::parse)?,
        kind: KeyKind::from_db(&kind).ok_or_else(|| corrupt(format!("key kind {kind}")))?,
        project_id: parse_opt_id(row, "project_id", ProjectId::parse)?,
        owner_id: parse_id(row, "owner_id", UserId::parse)?,
        created_by: row.try_get("created_by")?,
        parent_id: parse_opt_id(row, "parent_key_id", KeyId::parse)?,
        name: row.try_get("name")?,
        redacted_value: row.try_get("redacted_value")?,
        permissions: serde_json::from_str::<Permissions>(&permissions)
            .map_err(|e| corrupt(format!("permissions: {e}")))?,
        allowed_models: json_list(row, "allowed_models")?,
        allowed_ips: json_list(row, "allowed_ips")?,
        rate_limits: RateLimits {
            requests_per_minute: row.try_get("rpm_limit")?,
            tokens_per_minute: row.try_get("tpm_limit")?,
            max_concurrent_requests: row.try_get("max_concurrent")?,
        },
        monthly_budget: row
            .try_get::<Option<i64>, _>("monthly_budget_micros")?
            .map(Micros),
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry> {
    let actor_type: String = row.try_get("actor_type")?;
    let actor_id: Option<String> = row.try_get("actor_id")?;
    let actor = Actor::parse(&actor_type, actor_id.as_deref()).map_err(corrupt)?;
    let action: String = row.try_get("action")?;
    let action =
        AuditAction::parse(&action).ok_or_else(|| corrupt(format!("audit action {action}")))?;
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        id: parse_id(row, "id", AuditId::parse)?,
        actor,
        action,
        target_type: action.target(),
        target_id: row.try_get("target_id")?,
        project_id: parse_opt_id(row, "project_id", ProjectId::parse)?,
        owner_id: parse_opt_id(row, "owner_id", UserId::parse)?,
        details: serde_json::from_str(&details)
            .map_err(|e| corrupt(format!("audit details: {e}")))?,
        source_ip: row.try_get("source_ip")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A row of `SELECT seq, target_type, target_id`.
fn audit_change_from_row(row: &AnyRow) -> Result<AuditChange> {
    let target_type: String = row.try_get(1)?;
    Ok(AuditChange {
        seq: row.try_get(0)?,
        target_type: AuditTarget::parse(&target_type),
        target_id: row.try_get(2)?,
    })
}

fn usage_from_row(row: &AnyRow) -> Result<UsageEvent> {
    let endpoint: String = row.try_get("endpoint")?;
    let status: i64 = row.try_get("status")?;
    Ok(UsageEvent {
        request_id: row.try_get("request_id")?,
        key_id: parse_id(row, "key_id", KeyId::parse)?,
        project_id: parse_id(row, "project_id", ProjectId::parse)?,
        user_id: parse_id(row, "user_id", UserId::parse)?,
        model: row.try_get::<String, _>("model")?.into(),
        endpoint: keyward_core::Endpoint::parse(&endpoint)
            .ok_or_else(|| corrupt(format!("ledger endpoint {endpoint}")))?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        cost: Micros(row.try_get("cost_micros")?),
        status: u16::try_from(status).map_err(|_| corrupt(format!("ledger status {status}")))?,
        latency_ms: row.try_get("latency_ms")?,
        created_at: row.try_get("created_at")?,
    })
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

    async fn insert_user(&self, user: &User, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.as_str())
        .bind(user.email.as_str())
        .bind(user.name.as_str())
        .bind(user.password_hash.as_str())
        .bind(user.role.as_str())
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_insert(e, "an account with this email"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    async fn insert_project(
        &self,
        project: &Project,
        owner: &UserId,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projects (id, name, created_at, archived_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(project.id.as_str())
        .bind(project.name.as_str())
        .bind(project.created_at)
        .bind(project.archived_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_insert(e, "a project with this id"))?;
        sqlx::query("INSERT INTO project_members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(project.id.as_str())
            .bind(owner.as_str())
            .bind(MemberRole::Owner.as_str())
            .bind(project.created_at)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn project(&self, id: &ProjectId) -> Result<Option<Project>> {
        sqlx::query("SELECT * FROM projects WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(project_from_row)
            .transpose()
    }

    async fn projects_of(
        &self,
        user: &UserId,
        include_archived: bool,
        page: &Page,
    ) -> Result<Result<Listed<(Project, MemberRole)>, UnknownCursor>> {
        let sql = "SELECT p.seq FROM projects p JOIN project_members m ON m.project_id = p.id \
                   WHERE m.user_id = $1 AND p.id = $2";
        let Ok(before) = self
            .page_start(page.after.as_deref(), sql, &[user.as_str()])
            .await?
        else {
            return Ok(Err(UnknownCursor));
        };
        let rows = sqlx::query(
            "SELECT p.*, m.role FROM projects p JOIN project_members m ON m.project_id = p.id \
             WHERE m.user_id = $1 AND p.seq < $2 AND ($3 = 1 OR p.archived_at IS NULL) \
             ORDER BY p.seq DESC LIMIT $4",
        )
        .bind(user.as_str())
        .bind(before)
        .bind(i64::from(include_archived))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| Ok((project_from_row(r)?, member_role(r)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Ok(listed(items, page.limit)))
    }

    async fn all_projects(&self) -> Result<Vec<Project>> {
        sqlx::query("SELECT * FROM projects ORDER BY seq")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(project_from_row)
            .collect()
    }

    async fn membership(&self, project: &ProjectId, user: &UserId) -> Result<Option<MemberRole>> {
        sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(member_role)
            .transpose()
    }

    async fn members(&self, project: &ProjectId) -> Result<Vec<(UserId, MemberRole)>> {
        let rows = sqlx::query(
            "SELECT user_id, role FROM project_members WHERE project_id = $1 ORDER BY created_at",
        )
        .bind(project.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut members = rows
            .iter()
            .map(|r| Ok((parse_id(r, "user_id", UserId::parse)?, member_role(r)?)))
            .collect::<Result<Vec<_>>>()?;
        members.sort_by_key(|m| std::cmp::Reverse(m.1));
        Ok(members)
    }

    async fn update_project(&self, project: &Project, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE projects SET name = $1, rpm_limit = $2, tpm_limit = $3, max_concurrent = $4, \
             monthly_budget_micros = $5 WHERE id = $6",
        )
        .bind(project.name.as_str())
        .bind(project.rate_limits.requests_per_minute)
        .bind(project.rate_limits.tokens_per_minute)
        .bind(project.rate_limits.max_concurrent_requests)
        .bind(project.monthly_budget.map(|m| m.0))
        .bind(project.id.as_str())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn archive_project(&self, id: &ProjectId, at: i64, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE projects SET archived_at = $1 WHERE id = $2 AND archived_at IS NULL",
        )
        .bind(at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_key(
        &self,
        key: &KeyRecord,
        hash: &KeyHash,
        active_cap: Option<i64>,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let (Some(project), Some(cap)) = (&key.project_id, active_cap) {
            // A no-op write first: SQLite takes its write lock, PostgreSQL
            // locks the project row, so concurrent creates count in turn.
            sqlx::query("UPDATE projects SET name = name WHERE id = $1")
                .bind(project.as_str())
                .execute(&mut *tx)
                .await?;
            let active: i64 = sqlx::query(
                "SELECT COUNT(*) FROM api_keys WHERE project_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(project.as_str())
            .bind(key.created_at)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            if active >= cap {
                return Err(StoreError::KeyCapReached(cap));
            }
        }
        sqlx::query(
            "INSERT INTO api_keys (id, kind, project_id, owner_id, created_by, name, redacted_value, \
             permissions, allowed_models, allowed_ips, rpm_limit, tpm_limit, max_concurrent, \
             monthly_budget_micros, created_at, last_used_at, expires_at, parent_key_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(key.id.as_str())
        .bind(key.kind.as_str())
        .bind(key.project_id.as_ref().map(|p| p.as_str()))
        .bind(key.owner_id.as_str())
        .bind(key.created_by.as_str())
        .bind(key.name.as_str())
        .bind(key.redacted_value.as_str())
        .bind(serde_json::to_string(&key.permissions).map_err(corrupt)?)
        .bind(to_json_list(&key.allowed_models))
        .bind(to_json_list(&key.allowed_ips))
        .bind(key.rate_limits.requests_per_minute)
        .bind(key.rate_limits.tokens_per_minute)
        .bind(key.rate_limits.max_concurrent_requests)
        .bind(key.monthly_budget.map(|m| m.0))
        .bind(key.created_at)
        .bind(key.last_used_at)
        .bind(key.expires_at)
        .bind(key.parent_id.as_ref().map(|p| p.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_insert(e, "a key with this id"))?;
        sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, NULL)")
            .bind(hash.as_bytes().to_vec())
            .bind(key.id.as_str())
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "a key with this secret"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key(&self, id: &KeyId) -> Result<Option<KeyRecord>> {
        sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<SecretMatch>> {
        let sql = format!(
            "SELECT {}, s.expires_at AS secret_expires_at FROM api_key_secrets s \
             JOIN api_keys k ON k.id = s.key_id WHERE s.hash = $1",
            KEY_COLUMNS
                .split(", ")
                .map(|c| format!("k.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some(row) = sqlx::query(&sql)
            .bind(hash.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(SecretMatch {
            key: key_from_row(&row)?,
            secret_expires_at: row.try_get("secret_expires_at")?,
        }))
    }

    async fn list_keys(
        &self,
        scope: &KeyScope,
        include_revoked: bool,
        page: &Page,
    ) -> Result<Result<Listed<KeyRecord>, UnknownCursor>> {
        let (filter, owner) = match scope {
            KeyScope::Project(p) => ("kind = 'project' AND project_id = $1", p.as_str()),
            KeyScope::AdminKeysOf(u) => ("kind = 'admin' AND owner_id = $1", u.as_str()),
        };
        let sql = format!("SELECT seq FROM api_keys WHERE {filter} AND id = $2");
        let Ok(before) = self
            .page_start(page.after.as_deref(), &sql, &[owner])
            .await?
        else {
            return Ok(Err(UnknownCursor));
        };
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE {filter} AND seq < $2 AND {revoked} \
             ORDER BY seq DESC LIMIT $3",
            revoked = if include_revoked {
                "1 = 1"
            } else {
                "revoked_at IS NULL"
            }
        ))
        .bind(owner)
        .bind(before)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(key_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Ok(listed(items, page.limit)))
    }

    async fn update_key(&self, key: &KeyRecord, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE api_keys SET name = $1, permissions = $2, allowed_models = $3, allowed_ips = $4, \
             rpm_limit = $5, tpm_limit = $6, max_concurrent = $7, monthly_budget_micros = $8, \
             expires_at = $9 WHERE id = $10",
        )
        .bind(key.name.as_str())
        .bind(serde_json::to_string(&key.permissions).map_err(corrupt)?)
        .bind(to_json_list(&key.allowed_models))
        .bind(to_json_list(&key.allowed_ips))
        .bind(key.rate_limits.requests_per_minute)
        .bind(key.rate_limits.tokens_per_minute)
        .bind(key.rate_limits.max_concurrent_requests)
        .bind(key.monthly_budget.map(|m| m.0))
        .bind(key.expires_at)
        .bind(key.id.as_str())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_key(
        &self,
        id: &KeyId,
        revocation: &Revocation,
        audit: &AuditEntry,
        notice: Option<&Notification>,
        outbox: &[OutboxMessage],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !revoke_in(&mut tx, id, revocation).await? {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        if let Some(n) = notice {
            insert_notification_in(&mut tx, n).await?;
        }
        outbox::enqueue_in(&mut tx, outbox, revocation.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_key(
        &self,
        id: &KeyId,
        new_hash: &KeyHash,
        new_redacted: &str,
        now: i64,
        old_secrets_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE api_keys SET redacted_value = $1 WHERE id = $2")
            .bind(new_redacted)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE api_key_secrets SET expires_at = $1 \
             WHERE key_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(old_secrets_expire_at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1 AND expires_at <= $2")
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO api_key_secrets (hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, NULL)")
            .bind(new_hash.as_bytes().to_vec())
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "a key with this secret"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_keys(&self, uses: &[(KeyId, i64)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(*at)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn keys_expired_by(&self, now: i64, limit: u32) -> Result<Vec<KeyRecord>> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
             AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn purge_expired_secrets(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM api_key_secrets WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn insert_notification(&self, n: &Notification) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_notification_in(&mut tx, n).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn notifications(
        &self,
        user: &UserId,
        page: &Page,
    ) -> Result<Result<Listed<Notification>, UnknownCursor>> {
        let sql = "SELECT seq FROM notifications WHERE user_id = $1 AND id = $2";
        let Ok(before) = self
            .page_start(page.after.as_deref(), sql, &[user.as_str()])
            .await?
        else {
            return Ok(Err(UnknownCursor));
        };
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(user.as_str())
        .bind(before)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(Notification {
                    id: r.try_get("id")?,
                    user_id: parse_id(r, "user_id", UserId::parse)?,
                    kind: r.try_get("kind")?,
                    key_id: parse_opt_id(r, "key_id", KeyId::parse)?,
                    project_id: parse_opt_id(r, "project_id", ProjectId::parse)?,
                    message: r.try_get("message")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| corrupt(format!("notification details: {e}")))?,
                    created_at: r.try_get("created_at")?,
                    read_at: r.try_get("read_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Ok(listed(items, page.limit)))
    }

    async fn outbox_due(&self, now: i64, limit: u32) -> Result<Vec<OutboxItem>> {
        outbox::due(&self.pool, now, limit).await
    }

    async fn claim_outbox(&self, id: i64, now: i64, until: i64) -> Result<bool> {
        outbox::claim(&self.pool, id, now, until).await
    }

    async fn settle_outbox(&self, id: i64, now: i64, outcome: &OutboxOutcome) -> Result<()> {
        outbox::settle(&self.pool, id, now, outcome).await
    }

    async fn prune_outbox(&self, before: i64) -> Result<u64> {
        outbox::prune(&self.pool, before).await
    }

    async fn audit_seq_now(&self) -> Result<i64> {
        Ok(
            sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM audit_log")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    async fn audit_targets_since(&self, after: i64, limit: u32) -> Result<Vec<AuditChange>> {
        let rows = sqlx::query(
            "SELECT seq, target_type, target_id FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_change_from_row).collect()
    }

    async fn audit_targets_at(&self, seqs: &[i64]) -> Result<Vec<AuditChange>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=seqs.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT seq, target_type, target_id FROM audit_log WHERE seq IN ({}) ORDER BY seq",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(*seq);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_change_from_row)
            .collect()
    }

    async fn record_usage(&self, events: &[UsageEvent]) -> Result<()> {
        if let Some(ledger) = &self.ledger {
            return blocking(|| ledger.record(events));
        }
        if let Some(ledger) = &self.pg_ledger {
            return ledger.record(events).await;
        }
        let mut tx = self.pool.begin().await?;
        // Ledger rows, a few hundred per statement; RETURNING names the rows
        // really inserted, so a batch retried after a failed commit is not
        // counted twice in the roll-up.
        let mut inserted = std::collections::HashSet::new();
        for chunk in statement_chunks(events) {
            let sql = format!(
                "{} RETURNING request_id",
                rollup::ledger_insert_sql(&self.backend.values(chunk.len(), 12))
            );
            let mut query = sqlx::query(&sql);
            for e in chunk {
                query = query
                    .bind(e.request_id.as_str())
                    .bind(e.key_id.as_str())
                    .bind(e.project_id.as_str())
                    .bind(e.user_id.as_str())
                    .bind(&*e.model)
                    .bind(e.endpoint.as_str())
                    .bind(e.prompt_tokens)
                    .bind(e.completion_tokens)
                    .bind(e.cost.0)
                    .bind(i64::from(e.status))
                    .bind(e.latency_ms)
                    .bind(e.created_at);
            }
            for row in query.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        let daily: Vec<_> =
            rollup::daily_sums(events.iter().filter(|e| inserted.remove(&e.request_id)))
                .into_iter()
                .collect();
        for chunk in statement_chunks(&daily) {
            let sql = rollup::upsert_sql(&self.backend.values(chunk.len(), 9));
            let mut query = sqlx::query(&sql);
            for ((day, project, key, model), sums) in chunk {
                query = query.bind(*day).bind(*project).bind(*key).bind(*model);
                for sum in sums {
                    query = query.bind(*sum);
                }
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn spend_since(&self, owner: SpendOwner<'_>, from: i64) -> Result<Micros> {
        let (sql, id) = match owner {
            // The key and every key below it (delegated keys spend against
            // their makers).
            SpendOwner::Key(k) => (
                "WITH RECURSIVE tree (id) AS (SELECT CAST($1 AS TEXT) \
                 UNION SELECT k.id FROM api_keys k JOIN tree t ON k.parent_key_id = t.id) \
                 SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_daily \
                 WHERE key_id IN (SELECT id FROM tree) AND day >= $2",
                k.as_str(),
            ),
            SpendOwner::Project(p) => (
                "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_daily \
                 WHERE project_id = $1 AND day >= $2",
                p.as_str(),
            ),
        };
        Ok(Micros(
            sqlx::query(sql)
                .bind(id)
                .bind(from)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        ))
    }

    async fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>> {
        if f.projects.is_empty() || f.bucket_seconds <= 0 {
            return Ok(Vec::new());
        }
        let daily = f.bucket_seconds == 86_400;
        let (table, time, requests) = if daily {
            ("usage_daily", "day", "SUM(requests)")
        } else {
            ("usage_ledger", "created_at", "COUNT(*)")
        };
        let mut binds: Vec<String> = Vec::new();
        let mut list = |values: Vec<&str>| -> String {
            let start = binds.len();
            binds.extend(values.iter().map(|v| v.to_string()));
            (start + 1..=binds.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut conditions = vec![format!(
            "project_id IN ({})",
            list(f.projects.iter().map(|p| p.as_str()).collect())
        )];
        if !f.keys.is_empty() {
            conditions.push(format!(
                "key_id IN ({})",
                list(f.keys.iter().map(|k| k.as_str()).collect())
            ));
        }
        if !f.models.is_empty() {
            conditions.push(format!(
                "model IN ({})",
                list(f.models.iter().map(String::as_str).collect())
            ));
        }
        let n = binds.len();
        let groups: Vec<&str> = [
            (f.by_project, "project_id"),
            (f.by_key, "key_id"),
            (f.by_model, "model"),
        ]
        .into_iter()
        .filter_map(|(on, col)| on.then_some(col))
        .collect();
        let select_groups: String = groups.iter().map(|g| format!(", {g}")).collect();
        let sql = format!(
            "SELECT CAST(({time} / ${w}) * ${w} AS BIGINT) AS bucket{select_groups}, \
             CAST({requests} AS BIGINT) AS requests, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
             FROM {table} WHERE {} AND {time} >= ${from} AND {time} < ${to} \
             GROUP BY bucket{select_groups} ORDER BY bucket{select_groups}",
            conditions.join(" AND "),
            w = n + 1,
            from = n + 2,
            to = n + 3,
        );
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q
            .bind(f.bucket_seconds)
            .bind(f.from)
            .bind(f.to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    bucket_start: r.try_get("bucket")?,
                    project_id: if f.by_project {
                        Some(parse_id(r, "project_id", ProjectId::parse)?)
                    } else {
                        None
                    },
                    key_id: if f.by_key {
                        Some(parse_id(r, "key_id", KeyId::parse)?)
                    } else {
                        None
                    },
                    model: if f.by_model {
                        Some(r.try_get("model")?)
                    } else {
                        None
                    },
                    requests: r.try_get("requests")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cost: Micros(r.try_get("cost_micros")?),
                })
            })
            .collect()
    }

    async fn usage_events(
        &self,
        project: &ProjectId,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM usage_ledger WHERE project_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY seq",
        )
        .bind(project.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(usage_from_row).collect()
    }

    async fn upsert_member(
        &self,
        project: &ProjectId,
        user: &UserId,
        role: MemberRole,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3",
        )
        .bind(role.as_str())
        .bind(project.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(project.as_str())
            .bind(user.as_str())
            .bind(role.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "this project member"))?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(
        &self,
        project: &ProjectId,
        user: &UserId,
        audit: &AuditEntry,
        revocation: &Revocation,
        key_audit: &(dyn for<'k> Fn(&'k KeyRecord) -> AuditEntry + Send + Sync),
    ) -> Result<Option<Vec<KeyId>>> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                .bind(project.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await?;
        let keys = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = $1 AND owner_id = $2 \
             AND revoked_at IS NULL"
        ))
        .bind(project.as_str())
        .bind(user.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(key_from_row)
        .collect::<Result<Vec<_>>>()?;
        let mut revoked = Vec::with_capacity(keys.len());
        for key in keys {
            if revoke_in(&mut tx, &key.id, revocation).await? {
                insert_audit(&mut tx, &key_audit(&key)).await?;
                revoked.push(key.id);
            }
        }
        tx.commit().await?;
        Ok(Some(revoked))
    }

    async fn insert_session(&self, s: &Session) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, source_ip) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(s.token_hash.as_str())
        .bind(s.user_id.as_str())
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.source_ip.as_deref())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::from_insert(e, "a session with this token"))?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        sqlx::query("SELECT * FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(|r| {
                Ok(Session {
                    token_hash: r.try_get("token_hash")?,
                    user_id: parse_id(r, "user_id", UserId::parse)?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    source_ip: r.try_get("source_ip")?,
                })
            })
            .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    async fn delete_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn insert_invitation(&self, i: &Invitation, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO invitations (id, token_hash, project_id, email, role, invited_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i.id.as_str())
        .bind(i.token_hash.as_str())
        .bind(i.project_id.as_str())
        .bind(i.email.as_str())
        .bind(i.role.as_str())
        .bind(i.invited_by.as_str())
        .bind(i.created_at)
        .bind(i.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_insert(e, "an invitation with this token"))?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn invitation(&self, token_hash: &str) -> Result<Option<Invitation>> {
        sqlx::query("SELECT * FROM invitations WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(invitation_from_row)
            .transpose()
    }

    async fn pending_invitations(&self, project: &ProjectId, now: i64) -> Result<Vec<Invitation>> {
        sqlx::query(
            "SELECT * FROM invitations WHERE project_id = $1 AND accepted_at IS NULL \
             AND expires_at > $2 ORDER BY created_at DESC, id",
        )
        .bind(project.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(invitation_from_row)
        .collect()
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        user: &UserId,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<Option<Invitation>> {
        let mut tx = self.pool.begin().await?;
        // The write comes first: of racing requests, one marks the row.
        let used = sqlx::query(
            "UPDATE invitations SET accepted_at = $1, accepted_by = $2 \
             WHERE token_hash = $3 AND accepted_at IS NULL AND expires_at > $1",
        )
        .bind(at)
        .bind(user.as_str())
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        let invitation = invitation_from_row(
            &sqlx::query("SELECT * FROM invitations WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, user_id) DO NOTHING",
        )
        .bind(invitation.project_id.as_str())
        .bind(user.as_str())
        .bind(invitation.role.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(invitation))
    }

    async fn delete_invitation(
        &self,
        project: &ProjectId,
        id: &keyward_core::InvitationId,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM invitations WHERE project_id = $1 AND id = $2 AND accepted_at IS NULL",
        )
        .bind(project.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &Page,
    ) -> Result<Result<Listed<AuditEntry>, UnknownCursor>> {
        // Placeholders are numbered as the binds are collected.
        let mut binds: Vec<String> = Vec::new();
        let mut placeholder = |v: &str| {
            binds.push(v.to_owned());
            format!("${}", binds.len())
        };
        let mut scope: Vec<String> = Vec::new();
        if !filter.project_ids.is_empty() {
            let list: Vec<String> = filter
                .project_ids
                .iter()
                .map(|p| placeholder(p.as_str()))
                .collect();
            scope.push(format!("project_id IN ({})", list.join(", ")));
        }
        if let Some(owner) = &filter.owner_id {
            scope.push(format!(
                "(project_id IS NULL AND owner_id = {})",
                placeholder(owner.as_str())
            ));
        }
        if scope.is_empty() {
            return Ok(Ok(Listed {
                items: vec![],
                has_more: false,
            }));
        }
        let mut conditions = vec![format!("({})", scope.join(" OR "))];
        if !filter.actions.is_empty() {
            let list: Vec<String> = filter.actions.iter().map(|a| placeholder(a)).collect();
            conditions.push(format!("action IN ({})", list.join(", ")));
        }
        let condition = conditions.join(" AND ");
        let sql = format!(
            "SELECT seq FROM audit_log WHERE {condition} AND id = ${}",
            binds.len() + 1
        );
        let refs: Vec<&str> = binds.iter().map(String::as_str).collect();
        let Ok(before) = self.page_start(page.after.as_deref(), &sql, &refs).await? else {
            return Ok(Err(UnknownCursor));
        };
        let n = binds.len();
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {condition} AND seq < ${} ORDER BY seq DESC LIMIT ${}",
            n + 1,
            n + 2
        );
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q
            .bind(before)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Ok(listed(items, page.limit)))
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
