//! A fresh, migrated database for the ledger's tests and benchmarks, opened
//! through the services: SQLite in a temporary directory, or a new
//! PostgreSQL database (dropped afterwards) when `KEYWARD_TEST_DATABASE_URL`
//! names a server.
#![allow(dead_code)]

use std::sync::Arc;

use keyward_core::UsageEvent;
use keyward_core::{KeyId, Micros, ProjectId, UserId};
use keyward_service::{Database, Policy, Services, UsageSink};
use sqlx::Connection;

pub struct FreshStore {
    /// Where the ledger writer stores what it meters.
    pub sink: Arc<dyn UsageSink>,
    services: Services,
    /// The SQLite directory, or the PostgreSQL (admin url, database, url).
    pub place: Place,
}

pub enum Place {
    Sqlite(tempfile::TempDir),
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl FreshStore {
    pub async fn open() -> FreshStore {
        let (services, place) = match std::env::var("KEYWARD_TEST_DATABASE_URL") {
            Ok(admin) => {
                let mut suffix = [0u8; 12];
                keyward_core::base62::fill_random(&mut suffix);
                let name = format!(
                    "kw_ledger_{}",
                    String::from_utf8_lossy(&suffix).to_lowercase()
                );
                pg(&admin, &format!("CREATE DATABASE {name}")).await;
                let (base, _) = admin.rsplit_once('/').expect("postgres://host/db");
                let url = format!("{base}/{name}");
                let services = Services::open(Database::Url(&url), Policy::default())
                    .await
                    .unwrap();
                (services, Place::Postgres { admin, name, url })
            }
            Err(_) => {
                let dir = tempfile::tempdir().unwrap();
                let services = Services::open(Database::SqliteDir(dir.path()), Policy::default())
                    .await
                    .unwrap();
                (services, Place::Sqlite(dir))
            }
        };
        FreshStore {
            sink: Arc::new(services.ledger()),
            services,
            place,
        }
    }

    /// Which database this is, for printed results.
    pub fn label(&self) -> &'static str {
        match self.place {
            Place::Sqlite(_) => "SQLite",
            Place::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Rows in the usage ledger.
    pub async fn ledger_rows(&self) -> i64 {
        const COUNT: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM usage_ledger";
        let row: (i64,) = match &self.place {
            Place::Sqlite(dir) => {
                let mut conn = sqlite(dir).await;
                sqlx::query_as(COUNT).fetch_one(&mut conn).await.unwrap()
            }
            Place::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_as(COUNT).fetch_one(&mut conn).await.unwrap()
            }
        };
        row.0
    }

    /// Blocks the ledger's writes until the returned guard is released:
    /// a held SQLite write transaction, or a PostgreSQL table lock.
    pub async fn block_writes(&self) -> WriteBlock {
        match &self.place {
            Place::Sqlite(dir) => {
                let mut conn = sqlite(dir).await;
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteBlock::Sqlite(conn)
            }
            Place::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("LOCK TABLE usage_ledger IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteBlock::Postgres(conn)
            }
        }
    }

    pub async fn close(self) {
        self.services.close().await;
        if let Place::Postgres { admin, name, .. } = &self.place {
            pg(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

pub enum WriteBlock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteBlock {
    pub async fn release(self) {
        match self {
            WriteBlock::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
            WriteBlock::Postgres(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}

/// A connection of its own to the SQLite database in `dir`.
async fn sqlite(dir: &tempfile::TempDir) -> sqlx::SqliteConnection {
    let file = dir.path().join("keyward.db");
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap()
}

async fn pg(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("KEYWARD_TEST_DATABASE_URL must point at a reachable PostgreSQL");
    sqlx::query(sql).execute(&mut conn).await.expect(sql);
}

/// The ids one producer's events carry.
pub struct Caller {
    pub project: ProjectId,
    pub key: KeyId,
    pub user: UserId,
}

impl Caller {
    pub fn new() -> Self {
        Caller {
            project: ProjectId::generate(),
            key: KeyId::generate(),
            user: UserId::generate(),
        }
    }

    /// A gateway call's usage event, as the proxy makes it.
    pub fn event(&self, request_id: String, now: i64) -> UsageEvent {
        UsageEvent {
            request_id,
            key_id: self.key.clone(),
            project_id: self.project.clone(),
            user_id: self.user.clone(),
            model: "m".into(),
            endpoint: keyward_core::Endpoint::ChatCompletions,
            prompt_tokens: 10,
            completion_tokens: 20,
            cost: Micros(30),
            status: 200,
            latency_ms: 1,
            created_at: now,
        }
    }
}
