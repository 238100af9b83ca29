//! The outbox's queries: notices waiting for delivery by email or webhook.
//! A row is claimed with a lease before each attempt, so processes sharing
//! the database never deliver it twice at once.

use async_trait::async_trait;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::SqlStore;
use crate::error::{Result, StoreError};
use crate::store::OutboxStore;
use keyward_core::records::{NoticeChannel, OutboxItem, OutboxMessage, OutboxOutcome};

/// Queues `messages`, due at once, inside the caller's transaction.
pub(crate) async fn enqueue_in(
    tx: &mut Transaction<'_, Any>,
    messages: &[OutboxMessage],
    now: i64,
) -> Result<()> {
    for m in messages {
        sqlx::query(
            "INSERT INTO outbox (channel, payload, created_at, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, 0, $3)",
        )
        .bind(m.channel.as_str())
        .bind(m.payload.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Undelivered rows whose time has come and that nobody holds, oldest first.
pub(crate) async fn due(pool: &AnyPool, now: i64, limit: u32) -> Result<Vec<OutboxItem>> {
    let rows = sqlx::query(
        "SELECT id, channel, payload, attempts, created_at FROM outbox \
         WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= $1 \
           AND (lease_until IS NULL OR lease_until < $1) \
         ORDER BY id LIMIT $2",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let channel: String = r.try_get("channel")?;
            Ok(OutboxItem {
                id: r.try_get("id")?,
                channel: NoticeChannel::parse(&channel)
                    .ok_or_else(|| StoreError::Corrupt(format!("outbox channel `{channel}`")))?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Holds row `id` until `until` if it is still due and nobody else holds
/// it: the update's row count says whether this caller won it.
pub(crate) async fn claim(pool: &AnyPool, id: i64, now: i64, until: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE outbox SET lease_until = $1 \
         WHERE id = $2 AND delivered_at IS NULL AND given_up_at IS NULL \
           AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)",
    )
    .bind(until)
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records how an attempt ended and lets go of the row.
pub(crate) async fn settle(
    pool: &AnyPool,
    id: i64,
    now: i64,
    outcome: &OutboxOutcome,
) -> Result<()> {
    let query = match outcome {
        OutboxOutcome::Delivered => sqlx::query(
            "UPDATE outbox SET delivered_at = $1, lease_until = NULL, last_error = NULL WHERE id = $2",
        )
        .bind(now)
        .bind(id),
        OutboxOutcome::Retry { at, error } => sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, \
             lease_until = NULL, last_error = $2 WHERE id = $3",
        )
        .bind(*at)
        .bind(error.as_str())
        .bind(id),
        OutboxOutcome::GaveUp { error } => sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, given_up_at = $1, \
             lease_until = NULL, last_error = $2 WHERE id = $3",
        )
        .bind(now)
        .bind(error.as_str())
        .bind(id),
    };
    query.execute(pool).await?;
    Ok(())
}

/// Deletes rows delivered or given up before `before`.
pub(crate) async fn prune(pool: &AnyPool, before: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM outbox WHERE delivered_at < $1 OR given_up_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn outbox_due(&self, now: i64, limit: u32) -> Result<Vec<OutboxItem>> {
        due(&self.pool, now, limit).await
    }

    async fn claim_outbox(&self, id: i64, now: i64, until: i64) -> Result<bool> {
        claim(&self.pool, id, now, until).await
    }

    async fn settle_outbox(&self, id: i64, now: i64, outcome: &OutboxOutcome) -> Result<()> {
        settle(&self.pool, id, now, outcome).await
    }

    async fn prune_outbox(&self, before: i64) -> Result<u64> {
        prune(&self.pool, before).await
    }
}
