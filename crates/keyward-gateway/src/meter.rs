//! Metering off the request path: handlers hand usage events to a queue;
//! one writer task stores them in batches, together with keys' last-used
//! times, and drains everything on a graceful shutdown.
//!
//! The queue is bounded, and a call takes its place in it *before* the
//! upstream is called ([`Meter::reserve`]): an answered call always has
//! room in the ledger, so nothing is ever served unbilled or dropped. When
//! the queue is full (the database is down or slower than the traffic),
//! new calls wait a moment for room, then are refused with 503
//! `ledger_unavailable`.
//!
//! The writer never lingers once a backlog exists: it takes everything
//! queued (up to [`MAX_BATCH`]) as one transaction, so the busier the
//! gateway, the larger the batches, and what a crash can lose stays a few
//! milliseconds of traffic (the events queued plus the batch being
//! written; BENCHMARKS.md). A batch that fails is retried until it is
//! stored, holding its places in the queue meanwhile.
//!
//! With a spool ([`start_spooled`]), each event is first appended to a
//! local file by the spool's thread ([`spool`]), so that a crash loses
//! only what was not yet written there, whatever the database's pace; the
//! next start stores what a dead process left.

pub mod spool;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::KeyId;
use keyward_core::UsageEvent;
use keyward_service::UsageSink;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest batch written in one transaction.
pub const MAX_BATCH: usize = 8192;
/// A batch smaller than this waits [`LINGER`] for company: each commit has
/// a fixed cost, and at low traffic nothing else is waiting.
const SMALL_BATCH: usize = 64;
/// How long a small batch waits. It bounds what a crash loses at low
/// traffic; at high traffic batches are large and never wait.
const LINGER: Duration = Duration::from_millis(5);
/// How long one attempt at storing a batch may take before it is made
/// again (a batch of [`MAX_BATCH`] rows takes well under a second).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// `last_used_at` is written at most this often per key.
const LAST_USED_EVERY: i64 = 60;

/// What handlers send the writer (through the spool's thread, when there
/// is a spool).
enum Message {
    Usage(UsageEvent),
    /// Store everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
    /// From the spool's thread: every event before this one is in the
    /// spool, up to this sequence number.
    Spooled(u64),
    /// To the spool's thread: hand on what came before, then stop.
    Close,
}

/// Where handlers' messages go first.
#[derive(Clone)]
enum Inbox {
    /// Straight to the writer.
    Writer(mpsc::UnboundedSender<Message>),
    /// To the spool's thread, which writes events to disk and hands them on.
    Spool(std::sync::mpsc::Sender<Message>),
}

impl Inbox {
    fn send(&self, m: Message) -> Result<(), ()> {
        match self {
            Inbox::Writer(tx) => tx.send(m).map_err(drop),
            Inbox::Spool(tx) => tx.send(m).map_err(drop),
        }
    }
}

/// The queue's bounds.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Events that may wait to be stored, calls in flight included.
    pub capacity: usize,
    /// How long a call waits for room in a full queue.
    pub wait: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            capacity: 200_000,
            wait: Duration::from_secs(1),
        }
    }
}

/// The sending side, cloned into every handler.
#[derive(Clone)]
pub struct Meter {
    tx: Inbox,
    /// Places left in the queue: one is taken per call before its upstream
    /// is called, and given back once its event is stored.
    room: Arc<Semaphore>,
    /// Events queued but not yet stored.
    depth: Arc<AtomicI64>,
    wait: Duration,
}

/// A place in the ledger's queue for one call's usage event. Dropped
/// unused (the call was refused before reaching an upstream), it is given
/// back.
pub struct LedgerSlot(OwnedSemaphorePermit);

/// The ledger's queue stayed full for the whole wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerFull;

impl Meter {
    /// Takes a place in the queue for a call about to be made, waiting up
    /// to the configured time when the queue is full.
    pub async fn reserve(&self) -> Result<LedgerSlot, LedgerFull> {
        match self.room.clone().try_acquire_owned() {
            Ok(permit) => return Ok(LedgerSlot(permit)),
            Err(TryAcquireError::Closed) => return Err(LedgerFull),
            Err(TryAcquireError::NoPermits) => {}
        }
        match tokio::time::timeout(self.wait, self.room.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(LedgerSlot(permit)),
            _ => Err(LedgerFull),
        }
    }

    /// Queues a call's event in the place taken for it; never blocks.
    pub fn record(&self, slot: LedgerSlot, event: UsageEvent) {
        // The place is given back by the writer once the event is stored.
        slot.0.forget();
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Message::Usage(event)).is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            self.room.add_permits(1);
            tracing::error!("usage event dropped: the ledger writer has stopped");
        }
    }

    /// Waits until every event queued before this call is stored, so that
    /// a reader of the ledger sees them.
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
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
    stop: oneshot::Sender<Instant>,
    task: JoinHandle<()>,
    spool: Option<SpoolThread>,
}

/// The spool's thread, and how far the writer has committed what it spooled.
struct SpoolThread {
    inbox: std::sync::mpsc::Sender<Message>,
    thread: std::thread::JoinHandle<spool::Spool>,
    committed: Arc<AtomicU64>,
}

impl LedgerWriter {
    /// Stores what is queued, giving up on a failing database at `deadline`
    /// (what is left is logged as lost, or kept in the spool for the next
    /// start when there is one).
    pub async fn shutdown(self, deadline: Instant) {
        // The spool's thread hands on everything before the writer is told
        // to finish, so that the writer's queue holds it all.
        let spool = match self.spool {
            Some(s) => {
                let _ = s.inbox.send(Message::Close);
                let thread = s.thread;
                match tokio::task::spawn_blocking(move || thread.join()).await {
                    Ok(Ok(spool)) => Some((spool, s.committed)),
                    _ => None,
                }
            }
            None => None,
        };
        let _ = self.stop.send(deadline);
        let _ = self.task.await;
        if let Some((spool, committed)) = spool {
            spool.finish(committed.load(Ordering::Acquire));
        }
    }
}

/// Starts the writer, without a spool: a crash loses what is queued.
pub fn start(sink: Arc<dyn UsageSink>, settings: QueueSettings) -> (Meter, LedgerWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let meter = new_meter(Inbox::Writer(tx), settings);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(write_loop(sink, rx, meter.clone(), stopped, None));
    let writer = LedgerWriter {
        stop,
        task,
        spool: None,
    };
    (meter, writer)
}

/// Stores what dead processes left in the spools under `root`, then starts
/// the writer with a spool of this process's own there.
pub async fn start_spooled(
    sink: Arc<dyn UsageSink>,
    settings: QueueSettings,
    root: &Path,
) -> std::io::Result<(Meter, LedgerWriter, spool::Recovered)> {
    let recovered = spool::recover(&*sink, root).await?;
    let files = spool::Spool::create(root)?;
    let (front, inbox) = std::sync::mpsc::channel();
    let (tx, rx) = mpsc::unbounded_channel();
    let meter = new_meter(Inbox::Spool(front.clone()), settings);
    let committed = Arc::new(AtomicU64::new(0));
    let thread = {
        let committed = committed.clone();
        std::thread::Builder::new()
            .name("ledger-spool".into())
            .spawn(move || spool::run(files, inbox, tx, committed))?
    };
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(write_loop(
        sink,
        rx,
        meter.clone(),
        stopped,
        Some(committed.clone()),
    ));
    let writer = LedgerWriter {
        stop,
        task,
        spool: Some(SpoolThread {
            inbox: front,
            thread,
            committed,
        }),
    };
    Ok((meter, writer, recovered))
}

fn new_meter(tx: Inbox, settings: QueueSettings) -> Meter {
    Meter {
        tx,
        room: Arc::new(Semaphore::new(
            settings.capacity.clamp(1, Semaphore::MAX_PERMITS),
        )),
        depth: Arc::new(AtomicI64::new(0)),
        wait: settings.wait,
    }
}

/// `committed`, when there is a spool, is told the spool sequence number
/// of the last event stored.
async fn write_loop(
    sink: Arc<dyn UsageSink>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    meter: Meter,
    mut stopped: oneshot::Receiver<Instant>,
    committed: Option<Arc<AtomicU64>>,
) {
    let mut touched: HashMap<KeyId, i64> = HashMap::new();
    let mut inbox = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut waiting = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_none() {
            tokio::select! {
                n = rx.recv_many(&mut inbox, MAX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let flush = inbox.iter().any(|m| matches!(m, Message::Flush(_)));
                    if inbox.len() < SMALL_BATCH && !flush {
                        tokio::time::sleep(LINGER).await;
                    }
                }
                d = &mut stopped => deadline = Some(d.unwrap_or_else(|_| Instant::now())),
            }
        }
        take_queued(&mut rx, &mut inbox, MAX_BATCH);
        if inbox.is_empty() && deadline.is_some() {
            break;
        }
        let spooled = sort(&mut inbox, &mut batch, &mut waiting);
        crate::telemetry::ledger_queue_depth(meter.queue_depth());
        if !store_batch(&*sink, &batch, &mut stopped, &mut deadline).await {
            let left = meter.queue_depth();
            tracing::error!(
                events = left,
                "usage events lost: the database kept failing until shutdown_grace ran out"
            );
            break;
        }
        if let (Some(committed), Some(seq)) = (&committed, spooled) {
            committed.store(seq, Ordering::Release);
        }
        touch_keys(&*sink, &batch, &mut touched).await;
        let n = batch.len();
        batch.clear();
        meter.depth.fetch_sub(n as i64, Ordering::Relaxed);
        meter.room.add_permits(n);
        crate::telemetry::ledger_queue_depth(meter.queue_depth());
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Moves usage events to `batch` and flush requests to `waiting`; returns
/// the last spool sequence number reported, which the batch covers.
fn sort(
    inbox: &mut Vec<Message>,
    batch: &mut Vec<UsageEvent>,
    waiting: &mut Vec<oneshot::Sender<()>>,
) -> Option<u64> {
    let mut spooled = None;
    for m in inbox.drain(..) {
        match m {
            Message::Usage(e) => batch.push(e),
            Message::Flush(done) => waiting.push(done),
            Message::Spooled(seq) => spooled = Some(seq),
            // Only the spool's thread receives it.
            Message::Close => {}
        }
    }
    spooled
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

/// Stores a batch, retrying until it is stored: billing data is never
/// dropped while the database is down (the queue fills, and new calls are
/// refused instead). Gives up only at a shutdown's deadline, which may
/// arrive while it retries.
async fn store_batch(
    sink: &dyn UsageSink,
    batch: &[UsageEvent],
    stopped: &mut oneshot::Receiver<Instant>,
    deadline: &mut Option<Instant>,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        // A database that hangs (a lock held elsewhere) counts as failing:
        // the attempt is abandoned (its transaction rolls back; a retry
        // cannot count a row twice) and made again.
        let limit = Instant::now() + ATTEMPT_TIMEOUT;
        let write = sink.record_usage(batch);
        tokio::pin!(write);
        // A shutdown that arrives during the attempt shortens it to the grace.
        let outcome = loop {
            let until = deadline.map_or(limit, |d| d.min(limit));
            tokio::select! {
                r = tokio::time::timeout_at(until, &mut write) => break r,
                d = &mut *stopped, if deadline.is_none() => {
                    *deadline = Some(d.unwrap_or_else(|_| Instant::now()));
                }
            }
        };
        let error = match outcome {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the database did not answer in time".to_owned(),
        };
        crate::telemetry::ledger_write_failed();
        tracing::warn!(error = %error, attempt, events = batch.len(), "cannot write usage; retrying");
        let wake = Instant::now() + delay;
        if deadline.is_none() {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                d = &mut *stopped => *deadline = Some(d.unwrap_or_else(|_| Instant::now())),
            }
        }
        if deadline.is_some_and(|d| wake >= d) {
            return false;
        }
        tokio::time::sleep_until(wake).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Records keys' last use, at most once a minute per key.
async fn touch_keys(sink: &dyn UsageSink, batch: &[UsageEvent], touched: &mut HashMap<KeyId, i64>) {
    let mut uses: HashMap<&KeyId, i64> = HashMap::new();
    for e in batch {
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
        match sink.touch_keys(&due).await {
            Ok(()) => touched.extend(due),
            Err(e) => tracing::warn!(error = %e, "cannot record keys' last use"),
        }
    }
}
