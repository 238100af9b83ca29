//! A fresh, migrated store for the ledger's tests and benchmarks: SQLite in
//! a temporary directory, or a new PostgreSQL database (dropped afterwards)
//! when `KEYWARD_TEST_DATABASE_URL` names a server.
#![allow(dead_code)]

use std::sync::Arc;

use keyward_core::UsageEvent;
use keyward_core::{KeyId, Micros, ProjectId, UserId};
use keyward_store::{SqlStore, Store};
use sqlx::Connection;

pub struct FreshStore {
    pub store: Arc<SqlStore>,
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
        let (store, place) = match std::env::var("KEYWARD_TEST_DATABASE_URL") {
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
                let store = SqlStore::connect(&url).await.unwrap();
                (store, Place::Postgres { admin, name, url })
            }
            Err(_) => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqlStore::open_sqlite_dir(dir.path()).await.unwrap();
                (store, Place::Sqlite(dir))
            }
        };
        store.migrate().await.unwrap();
        FreshStore {
            store: Arc::new(store),
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
        let row: (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM usage_ledger")
            .fetch_one(self.store.pool())
            .await
            .unwrap();
        row.0
    }

    /// Blocks the ledger's writes until the returned guard is released:
    /// a held SQLite write transaction, or a PostgreSQL table lock.
    pub async fn block_writes(&self) -> WriteBlock {
        match &self.place {
            Place::Sqlite(dir) => {
                let file = dir.path().join("keyward.db");
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                        .await
                        .unwrap();
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
        self.store.close().await;
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
