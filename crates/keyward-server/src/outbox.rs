//! Delivers the outbox: notices that wait in the database (written in the
//! transaction that caused them) until their email or webhook got through.
//! A failed attempt is tried again after an exponential backoff
//! (`notices.retry_first`, doubling up to `notices.retry_max`) until
//! `notices.give_up_after` has passed since the notice was written. Each
//! attempt first leases its row for a minute, so replicas sharing a
//! database never send one notice twice at once; a process that dies
//! mid-attempt leaves a lease that simply runs out. Delivery is at least
//! once: a receiver may see a notice again (same `id`) when its answer was
//! lost.

use std::sync::Arc;
use std::time::Duration;

use keyward_core::time::now_unix;
use keyward_core::{OutboxItem, OutboxOutcome};
use keyward_service::Notice;
use keyward_service::{NoticeOutbox, ServiceError};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::Notices;
use crate::notify::{Failure, Notifier};

/// How long one attempt holds its row: longer than any send may take
/// (webhooks time out after 10 s, SMTP after 20 s).
const LEASE_SECONDS: i64 = 60;
/// How often the outbox is read when nothing wakes the deliverer (rows
/// written by other replicas, retries coming due).
const POLL: Duration = Duration::from_secs(2);
/// Rows read at a time.
const BATCH: u32 = 32;
/// How long delivered (and given-up) rows are kept, then deleted.
const KEEP_SECONDS: i64 = 30 * 24 * 3600;
/// How often old rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Wakes the deliverer when this process has queued something.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The running deliverer.
pub struct Deliverer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Deliverer {
    /// Lets an attempt in progress finish (until `deadline`), then stops.
    pub async fn stop(mut self, deadline: tokio::time::Instant) {
        let _ = self.stop.send(true);
        if tokio::time::timeout_at(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts delivering the outbox in the background.
pub fn start(
    outbox_rows: NoticeOutbox,
    notifier: Notifier,
    settings: Notices,
) -> (Outbox, Deliverer) {
    let outbox = Outbox::default();
    let (stop, stopped) = watch::channel(false);
    let wake = outbox.wake.clone();
    let task = tokio::spawn(async move {
        let worker = Worker {
            rows: outbox_rows,
            notifier,
            settings,
            stopped,
        };
        worker.run(wake).await;
    });
    (outbox, Deliverer { stop, task })
}

struct Worker {
    rows: NoticeOutbox,
    notifier: Notifier,
    settings: Notices,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self, wake: Arc<Notify>) {
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "cannot read the notice outbox; will retry");
            }
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(tokio::time::Instant::now());
                if let Err(e) = self.rows.prune(now_unix() - KEEP_SECONDS).await {
                    tracing::warn!(error = %e, "cannot delete old outbox rows; will retry");
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = self.stopped.changed() => return,
            }
            if *self.stopped.borrow() {
                return;
            }
        }
    }

    /// Attempts every row that is due, a batch at a time.
    async fn deliver_due(&self) -> Result<(), ServiceError> {
        loop {
            let due = self.rows.due(now_unix(), BATCH).await?;
            let mut claimed = 0;
            for item in &due {
                if *self.stopped.borrow() {
                    return Ok(());
                }
                let now = now_unix();
                if !self.rows.claim(item.id, now, now + LEASE_SECONDS).await? {
                    continue; // another replica has it
                }
                claimed += 1;
                let result = self.attempt(item).await;
                let outcome = outcome(item, result, &self.settings, now_unix());
                log(item, &outcome);
                self.rows.settle(item.id, now_unix(), &outcome).await?;
            }
            if claimed == 0 || due.len() < BATCH as usize {
                return Ok(());
            }
        }
    }

    async fn attempt(&self, item: &OutboxItem) -> Result<(), Failure> {
        let notice = Notice::from_payload(&item.payload).map_err(|e| Failure {
            message: format!("the outbox row cannot be read: {e}"),
            permanent: true,
        })?;
        self.notifier.send(item.channel, &notice).await
    }
}

/// What to record after an attempt made `now`.
fn outcome(
    item: &OutboxItem,
    result: Result<(), Failure>,
    settings: &Notices,
    now: i64,
) -> OutboxOutcome {
    let failure = match result {
        Ok(()) => return OutboxOutcome::Delivered,
        Err(f) => f,
    };
    let too_old = now - item.created_at >= settings.give_up_after.as_secs() as i64;
    if failure.permanent || too_old {
        return OutboxOutcome::GaveUp {
            error: failure.message,
        };
    }
    let wait = backoff(item.attempts + 1, settings);
    OutboxOutcome::Retry {
        at: now + wait.as_secs().max(1) as i64,
        error: failure.message,
    }
}

/// The wait after the `failures`-th failed attempt: `retry_first`, doubled
/// after each further failure, at most `retry_max`.
fn backoff(failures: i64, settings: &Notices) -> Duration {
    let doublings = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    settings
        .retry_first
        .checked_mul(2u32.saturating_pow(doublings.min(31)))
        .map_or(settings.retry_max, |d| d.min(settings.retry_max))
}

fn log(item: &OutboxItem, outcome: &OutboxOutcome) {
    let channel = item.channel.as_str();
    match outcome {
        OutboxOutcome::Delivered => {
            tracing::info!(channel, outbox_id = item.id, "notice delivered")
        }
        OutboxOutcome::Retry { at, error } => tracing::warn!(
            channel,
            outbox_id = item.id,
            attempt = item.attempts + 1,
            retry_in_seconds = at - now_unix(),
            error = %error,
            "notice not delivered; will retry"
        ),
        OutboxOutcome::GaveUp { error } => tracing::error!(
            channel,
            outbox_id = item.id,
            attempts = item.attempts + 1,
            error = %error,
            "notice could not be delivered; giving up on it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::NoticeChannel;

    fn settings() -> Notices {
        Notices {
            retry_first: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(3 * 24 * 3600),
        }
    }

    fn item(attempts: i64, created_at: i64) -> OutboxItem {
        OutboxItem {
            id: 1,
            channel: NoticeChannel::Webhook,
            payload: String::new(),
            attempts,
            created_at,
        }
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let s = settings();
        let waits: Vec<u64> = (1..=11).map(|n| backoff(n, &s).as_secs()).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff(i64::MAX, &s).as_secs(), 3600);
    }

    #[test]
    fn a_failure_is_retried_until_the_notice_is_too_old_or_cannot_succeed() {
        let s = settings();
        let failed = || {
            Err(Failure {
                message: "down".into(),
                permanent: false,
            })
        };
        assert_eq!(
            outcome(&item(0, 1000), failed(), &s, 1000),
            OutboxOutcome::Retry {
                at: 1010,
                error: "down".into()
            }
        );
        assert_eq!(
            outcome(&item(2, 1000), failed(), &s, 2000),
            OutboxOutcome::Retry {
                at: 2040,
                error: "down".into()
            }
        );
        assert!(matches!(
            outcome(&item(40, 0), failed(), &s, 3 * 24 * 3600),
            OutboxOutcome::GaveUp { .. }
        ));
        let refused = Err(Failure {
            message: "no such mailbox".into(),
            permanent: true,
        });
        assert!(matches!(
            outcome(&item(0, 1000), refused, &s, 1000),
            OutboxOutcome::GaveUp { .. }
        ));
        assert_eq!(
            outcome(&item(3, 1000), Ok(()), &s, 1000),
            OutboxOutcome::Delivered
        );
    }
}
