//! The usage ledger's writer for PostgreSQL: each column of a batch bound
//! as one array and inserted with `UNNEST`, so a batch of any size is two
//! statements (the rows, then the roll-up), prepared once, on a small pool
//! of its own.
//!
//! Through sqlx's `Any` driver a batch was cut into multi-row INSERTs of
//! at most 256 rows, twelve parameters a row, each value copied into the
//! driver's own argument type: about 40k rows per second here. Arrays need
//! PostgreSQL's own driver (`Any` cannot bind them).

use std::collections::HashSet;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use crate::error::Result;
use crate::rollup;
use keyward_core::records::UsageEvent;

pub(crate) struct PgLedger {
    pool: PgPool,
}

const INSERT: &str = "INSERT INTO usage_ledger (request_id, key_id, project_id, user_id, model, \
     endpoint, prompt_tokens, completion_tokens, cost_micros, status, latency_ms, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]) \
     ON CONFLICT (request_id) DO NOTHING RETURNING request_id";

impl PgLedger {
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(PgLedger { pool })
    }

    /// Stores `events` and adds the new ones to the daily roll-up, all or
    /// nothing. A request id already stored is skipped, so a batch written
    /// again counts once.
    pub(crate) async fn record(&self, events: &[UsageEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&UsageEvent) -> &str| events.iter().map(f).collect::<Vec<&str>>();
        let number = |f: fn(&UsageEvent) -> i64| events.iter().map(f).collect::<Vec<i64>>();
        let mut tx = self.pool.begin().await?;
        let inserted: HashSet<String> = sqlx::query(INSERT)
            .bind(column(|e| &e.request_id))
            .bind(column(|e| e.key_id.as_str()))
            .bind(column(|e| e.project_id.as_str()))
            .bind(column(|e| e.user_id.as_str()))
            .bind(column(|e| &e.model))
            .bind(column(|e| e.endpoint.as_str()))
            .bind(number(|e| e.prompt_tokens))
            .bind(number(|e| e.completion_tokens))
            .bind(number(|e| e.cost.0))
            .bind(number(|e| i64::from(e.status)))
            .bind(number(|e| e.latency_ms))
            .bind(number(|e| e.created_at))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut inserted = inserted;
        let daily = rollup::daily_sums(events.iter().filter(|e| inserted.remove(&e.request_id)));
        if !daily.is_empty() {
            let mut days = Vec::with_capacity(daily.len());
            let (mut projects, mut keys, mut models) = (Vec::new(), Vec::new(), Vec::new());
            let mut sums: [Vec<i64>; 5] = Default::default();
            for ((day, project, key, model), group) in &daily {
                days.push(*day);
                projects.push(*project);
                keys.push(*key);
                models.push(*model);
                for (column, value) in sums.iter_mut().zip(group.in_column_order()) {
                    column.push(value);
                }
            }
            let [requests, errors, prompt, completion, cost] = sums;
            sqlx::query(&rollup::upsert_from(
                "SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                 $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])",
            ))
            .bind(days)
            .bind(projects)
            .bind(keys)
            .bind(models)
            .bind(requests)
            .bind(errors)
            .bind(prompt)
            .bind(completion)
            .bind(cost)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}
