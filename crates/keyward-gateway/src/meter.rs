//! Metering off the request path: handlers hand usage events to a channel;
//! one writer task stores them in batches, together with keys' last-used
//! times, and drains everything on a graceful shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::KeyId;
use keyward_store::{Store, UsageEvent};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

/// Largest batch written in one transaction.
const BATCH: usize = 512;
/// How long a batch may wait to fill: every transaction is a commit (WAL
/// pages written, a round trip per statement to the database thread), so
/// under load a few large batches cost far less than many small ones.
const LINGER: Duration = Duration::from_millis(50);
/// `last_used_at` is written at most this often per key.
const LAST_USED_EVERY: i64 = 60;

/// What handlers send the writer.
enum Message {
    Usage(UsageEvent),
    /// Store everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// The sending side, cloned into every handler.
#[derive(Clone)]
pub struct Meter {
    tx: mpsc::UnboundedSender<Message>,
    depth: Arc<AtomicI64>,
    /// Cuts the writer's linger short for a flush.
    hurry: Arc<Notify>,
}

impl Meter {
    /// Queues an event; never blocks the request.
    pub fn record(&self, event: UsageEvent) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Message::Usage(event)).is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("usage event dropped: the ledger writer has stopped");
        }
    }

    /// Waits until every event queued before this call is stored (or the
    /// writer has given up on it), so that a reader of the ledger sees them.
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            self.hurry.notify_one();
            let _ = stored.await;
        }
    }

    /// Events queued but not yet stored.
    pub fn queue_depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }
}

/// The writer task; call [`LedgerWriter::shutdown`] after the server has
/// stopped accepting requests so that nothing queued is lost.
pub struct LedgerWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LedgerWriter {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the writer.
pub fn start(store: Arc<dyn Store>) -> (Meter, LedgerWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let depth = Arc::new(AtomicI64::new(0));
    let (stop, stopped) = oneshot::channel();
    let hurry = Arc::new(Notify::new());
    let task = tokio::spawn(write_loop(store, rx, depth.clone(), hurry.clone(), stopped));
    (Meter { tx, depth, hurry }, LedgerWriter { stop, task })
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    depth: Arc<AtomicI64>,
    hurry: Arc<Notify>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut touched: HashMap<KeyId, i64> = HashMap::new();
    let mut inbox = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut inbox, BATCH) => {
                if n == 0 {
                    break;
                }
                linger(&inbox, &hurry).await;
                take_queued(&mut rx, &mut inbox, BATCH);
                crate::telemetry::ledger_queue_depth(depth.load(Ordering::Relaxed));
            }
            _ = &mut stopped => {
                take_queued(&mut rx, &mut inbox, usize::MAX);
                sort(&mut inbox, &mut batch, &mut waiting);
                for chunk in batch.chunks(BATCH) {
                    write(&*store, chunk, &depth, &mut touched).await;
                }
                break;
            }
        }
        sort(&mut inbox, &mut batch, &mut waiting);
        write(&*store, &batch, &depth, &mut touched).await;
        batch.clear();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Moves usage events to `batch` and flush requests to `waiting`.
fn sort(
    inbox: &mut Vec<Message>,
    batch: &mut Vec<UsageEvent>,
    waiting: &mut Vec<oneshot::Sender<()>>,
) {
    for m in inbox.drain(..) {
        match m {
            Message::Usage(e) => batch.push(e),
            Message::Flush(done) => waiting.push(done),
        }
    }
}

/// Moves what is already queued to `inbox`, until it holds `limit` messages.
fn take_queued(rx: &mut mpsc::UnboundedReceiver<Message>, inbox: &mut Vec<Message>, limit: usize) {
    while inbox.len() < limit {
        match rx.try_recv() {
            Ok(m) => inbox.push(m),
            Err(_) => break,
        }
    }
}

/// Lets a batch gather for [`LINGER`] after its first message, unless it
/// holds a flush request or one arrives. Events sent meanwhile only queue:
/// listening for each of them would wake this task once per request.
async fn linger(inbox: &[Message], hurry: &Notify) {
    if inbox.iter().any(|m| matches!(m, Message::Flush(_))) {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(LINGER) => {}
        _ = hurry.notified() => {}
    }
}

/// Stores a batch, retrying a few times: a brief database outage must not
/// lose billing data.
async fn write(
    store: &dyn Store,
    batch: &[UsageEvent],
    depth: &AtomicI64,
    touched: &mut HashMap<KeyId, i64>,
) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=8 {
        match store.record_usage(batch).await {
            Ok(()) => break,
            Err(e) if attempt < 8 => {
                tracing::warn!(error = %e, attempt, "cannot write usage; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "usage events lost: the database keeps failing")
            }
        }
    }
    let mut uses: HashMap<&KeyId, i64> = HashMap::new();
    for e in batch.iter() {
        let t = uses.entry(&e.key_id).or_insert(e.created_at);
        *t = (*t).max(e.created_at);
    }
    let due: Vec<(KeyId, i64)> = uses
        .into_iter()
        .filter(|(k, t)| {
            touched
                .get(*k)
                .is_none_or(|last| t - last >= LAST_USED_EVERY)
        })
        .map(|(k, t)| (k.clone(), t))
        .collect();
    if !due.is_empty() {
        match store.touch_keys(&due).await {
            Ok(()) => touched.extend(due),
            Err(e) => tracing::warn!(error = %e, "cannot record keys' last use"),
        }
    }
    let left = depth.fetch_sub(batch.len() as i64, Ordering::Relaxed) - batch.len() as i64;
    crate::telemetry::ledger_queue_depth(left);
}
