//! The ledger's crash spool: every usage event is appended to a local file
//! before it goes to the database writer, so a process that dies without a
//! graceful stop (`kill -9`, the OOM killer, a panic that aborts) loses
//! only what the spool's thread had not yet written, a few milliseconds of
//! traffic, however far behind the database is. The next start replays
//! what the dead process left before serving; storing an event is
//! idempotent (the ledger's request ids are unique), so replaying one the
//! database already has counts it once.
//!
//! Layout: `<root>/<instance>/` per running process, holding `lock` (an
//! exclusive file lock held for the process's life: a directory whose lock
//! can be taken belongs to a process that is gone) and segments
//! `<first sequence number>.jsonl`, one event per line. A segment is
//! closed at [`SEGMENT_BYTES`] and deleted once the writer has committed
//! every event in it; a graceful stop that stored everything deletes the
//! directory.
//!
//! The thread writes what has arrived as one `write` (group commit: the
//! busier the gateway, the more each write carries) and forwards it to the
//! writer. A write reaches the kernel's page cache, which survives the
//! process; [`SYNC_EVERY`] bounds what a power cut can take.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::UsageEvent;
use keyward_service::UsageSink;
use tokio::sync::mpsc::UnboundedSender;

use super::{Message, MAX_BATCH};

/// A segment is closed, and a new one begun, past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Written data is flushed to the disk at least this often while events
/// arrive (`fdatasync`): what a power cut can lose.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);
/// How long the spool's thread sleeps between rounds while events arrive.
/// It is not woken per event: a wake-up per call (a futex syscall on the
/// request path, and a context switch) cost the gateway about 15% of its
/// throughput on two CPUs; a round every 2 ms costs nothing measurable and
/// bounds what a crash loses to a few milliseconds.
const BUSY_TICK: Duration = Duration::from_millis(2);
/// The longest sleep once idle (doubling from [`BUSY_TICK`]): the most a
/// crash loses after a quiet spell, and the latest a flush is answered.
const IDLE_TICK: Duration = Duration::from_millis(50);
const LOCK_FILE: &str = "lock";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// This process's spool directory, locked, with its open segment.
pub(super) struct Spool {
    dir: PathBuf,
    /// Held (and locked) for the life of the process.
    _lock: File,
    segment: File,
    /// The sequence number of the open segment's first event.
    segment_first: u64,
    segment_bytes: u64,
    /// Closed segments and the last sequence number each holds.
    closed: VecDeque<(PathBuf, u64)>,
    /// The sequence number the next event gets (the first is 1).
    next_seq: u64,
    last_sync: Instant,
    unsynced: bool,
}

/// What [`recover`] found and stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Spool directories of processes that are gone.
    pub spools: usize,
    /// Events read from them (those the database already had count once).
    pub events: usize,
    /// Lines that could not be read: a last line cut by the crash, or
    /// damage.
    pub unreadable: usize,
}

impl Spool {
    /// Makes a fresh, locked directory for this process under `root`.
    pub(super) fn create(root: &Path) -> io::Result<Spool> {
        fs::create_dir_all(root)?;
        let name = format!("{}-{}", std::process::id(), random_suffix());
        // Made under a hidden name and locked before it is given its real
        // one: a starting process must never take a live spool for a dead
        // one.
        let hidden = root.join(format!(".new-{name}"));
        fs::create_dir(&hidden)?;
        let lock = File::create(hidden.join(LOCK_FILE))?;
        lock.try_lock().map_err(io::Error::other)?;
        let dir = root.join(&name);
        fs::rename(&hidden, &dir)?;
        let segment = open_segment(&dir, 1)?;
        Ok(Spool {
            dir,
            _lock: lock,
            segment,
            segment_first: 1,
            segment_bytes: 0,
            closed: VecDeque::new(),
            next_seq: 1,
            last_sync: Instant::now(),
            unsynced: false,
        })
    }

    /// Appends events already encoded, one per line, `count` of them.
    fn append(&mut self, lines: &[u8], count: u64) -> io::Result<()> {
        self.segment.write_all(lines)?;
        self.segment_bytes += lines.len() as u64;
        self.next_seq += count;
        self.unsynced = true;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        if self.segment_bytes >= SEGMENT_BYTES {
            self.sync()?;
            let last = self.next_seq - 1;
            let full = segment_path(&self.dir, self.segment_first);
            self.segment = open_segment(&self.dir, self.next_seq)?;
            self.segment_first = self.next_seq;
            self.segment_bytes = 0;
            self.closed.push_back((full, last));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.segment.sync_data()?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Deletes closed segments whose every event is committed.
    fn drop_committed(&mut self, committed: u64) {
        while let Some((path, last)) = self.closed.front() {
            if *last > committed {
                break;
            }
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(error = %e, segment = %path.display(), "cannot delete a spent ledger spool segment");
            }
            self.closed.pop_front();
        }
    }

    /// At the end of a graceful stop: the directory goes when the writer
    /// committed every event, and stays for the next start otherwise.
    pub(super) fn finish(mut self, committed: u64) {
        let last = self.next_seq - 1;
        if committed >= last {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                tracing::warn!(error = %e, dir = %self.dir.display(), "cannot delete the ledger spool");
            }
        } else {
            let _ = self.sync();
            tracing::warn!(
                events = last - committed,
                dir = %self.dir.display(),
                "usage events not yet stored are kept in the ledger spool; the next start stores them"
            );
        }
    }
}

/// The spool's thread: writes what arrives to disk, then hands it to the
/// writer, until [`Message::Close`]. Returns the spool for
/// [`Spool::finish`].
pub(super) fn run(
    mut spool: Spool,
    inbox: Receiver<Message>,
    writer: UnboundedSender<Message>,
    committed: Arc<AtomicU64>,
) -> Spool {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut lines = Vec::with_capacity(1 << 20);
    let mut failing = false;
    let mut nap = BUSY_TICK;
    loop {
        let mut disconnected = false;
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(m) => batch.push(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if batch.is_empty() {
            if disconnected {
                break;
            }
            if nap >= IDLE_TICK {
                if let Err(e) = spool.sync() {
                    tracing::error!(error = %e, "cannot flush the ledger spool to disk");
                }
                spool.drop_committed(committed.load(Ordering::Acquire));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(IDLE_TICK);
            continue;
        }
        nap = BUSY_TICK;
        let taken = batch.len();
        lines.clear();
        let mut count = 0;
        for m in &batch {
            if let Message::Usage(e) = m {
                // An event always serializes (plain strings and numbers).
                if serde_json::to_writer(&mut lines, e).is_ok() {
                    lines.push(b'\n');
                    count += 1;
                }
            }
        }
        if count > 0 {
            // A spool that cannot write (a full disk) must not stop billing:
            // the events still go to the database, only the crash
            // protection is lost meanwhile, loudly.
            match spool.append(&lines, count) {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the ledger spool writes again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, dir = %spool.dir.display(), "cannot write the ledger spool: a crash now loses the usage events not yet in the database");
                }
                Err(_) => {}
            }
        }
        let mut close = false;
        for m in batch.drain(..) {
            match m {
                Message::Close => close = true,
                m => {
                    let _ = writer.send(m);
                }
            }
        }
        if count > 0 {
            let _ = writer.send(Message::Spooled(spool.next_seq - 1));
        }
        spool.drop_committed(committed.load(Ordering::Acquire));
        if close {
            break;
        }
        // A full round means more is waiting: no sleep then.
        if taken < MAX_BATCH {
            std::thread::sleep(BUSY_TICK);
        }
    }
    spool
}

/// Stores what processes that died left in their spools under `root`, then
/// deletes those spools. Spools of processes still running (another
/// replica on this machine sharing the directory) are left alone.
pub(super) async fn recover(sink: &dyn UsageSink, root: &Path) -> io::Result<Recovered> {
    let mut found = Recovered::default();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let dir = entry.path();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Ok(lock) = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
        else {
            continue;
        };
        if lock.try_lock().is_err() {
            // A live process's spool.
            continue;
        }
        found.spools += 1;
        let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let first = name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()?;
                Some((first, e.path()))
            })
            .collect();
        segments.sort();
        for (_, path) in segments {
            let (events, unreadable) = read_segment(&fs::read(&path)?);
            found.events += events.len();
            found.unreadable += unreadable;
            for chunk in events.chunks(MAX_BATCH) {
                sink.record_usage(chunk).await.map_err(|e| {
                    io::Error::other(format!(
                        "cannot store the usage events left in {}: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        fs::remove_dir_all(&dir)?;
    }
    Ok(found)
}

/// The events in a segment, and how many lines could not be read.
fn read_segment(bytes: &[u8]) -> (Vec<UsageEvent>, usize) {
    let mut events = Vec::new();
    let mut unreadable = 0;
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(e) => events.push(e),
            Err(_) => unreadable += 1,
        }
    }
    (events, unreadable)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

fn open_segment(dir: &Path, first_seq: u64) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, first_seq))
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    keyward_core::base62::fill_random(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_line_is_counted_unreadable_and_the_rest_kept() {
        let e = UsageEvent {
            request_id: "req_1".into(),
            key_id: keyward_core::KeyId::generate(),
            project_id: keyward_core::ProjectId::generate(),
            user_id: keyward_core::UserId::generate(),
            model: "m".into(),
            endpoint: keyward_core::Endpoint::ChatCompletions,
            prompt_tokens: 3,
            completion_tokens: 4,
            cost: keyward_core::Micros(5),
            status: 200,
            latency_ms: 6,
            created_at: 7,
        };
        let mut bytes = serde_json::to_vec(&e).unwrap();
        bytes.push(b'\n');
        let whole = bytes.clone();
        bytes.extend_from_slice(&whole[..whole.len() / 2]);
        let (events, unreadable) = read_segment(&bytes);
        assert_eq!(events, vec![e]);
        assert_eq!(unreadable, 1);
    }

    #[test]
    fn a_live_spool_is_not_recovered_and_a_dead_one_is_found() {
        let root = tempfile::tempdir().unwrap();
        let live = Spool::create(root.path()).unwrap();
        let dead = Spool::create(root.path()).unwrap();
        let dead_dir = dead.dir.clone();
        drop(dead);
        let lockable = |dir: &Path| {
            File::options()
                .write(true)
                .open(dir.join(LOCK_FILE))
                .unwrap()
                .try_lock()
                .is_ok()
        };
        assert!(!lockable(&live.dir), "a live spool's lock was free");
        assert!(lockable(&dead_dir), "a dropped spool's lock was held");
    }
}
