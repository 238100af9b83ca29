//! Log lines to stderr, written in batches. A server logs a line per
//! request; writing each with its own `write(2)` cost a syscall per request,
//! so info and lower lines gather in memory and go out every
//! [`FLUSH_EVERY`] or once [`FLUSH_AT`] bytes are waiting. Warnings and
//! errors are written at once, after whatever is waiting, so their order
//! is kept and nothing urgent lingers. [`flush`] writes what is left at exit.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const FLUSH_AT: usize = 64 * 1024;

static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The `MakeWriter` of the log subscriber.
pub struct BatchedStderr;

impl BatchedStderr {
    /// Starts the thread that writes waiting lines every [`FLUSH_EVERY`].
    pub fn new() -> Self {
        static FLUSHER: OnceLock<()> = OnceLock::new();
        FLUSHER.get_or_init(|| {
            let _ = std::thread::Builder::new()
                .name("keyward-log".into())
                .spawn(|| loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush();
                });
        });
        BatchedStderr
    }
}

/// Writes every waiting line.
pub fn flush() {
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    write_out(&mut pending);
}

fn write_out(pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        let _ = std::io::stderr().write_all(pending);
        pending.clear();
    }
}

/// One line's writer: the formatter hands it the whole line in one call.
pub enum LineWriter {
    Batched,
    Now,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        match self {
            LineWriter::Batched => {
                pending.extend_from_slice(buf);
                if pending.len() >= FLUSH_AT {
                    write_out(&mut pending);
                }
            }
            LineWriter::Now => {
                write_out(&mut pending);
                std::io::stderr().write_all(buf)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter::Now
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        // Levels compare by verbosity: WARN and ERROR are the "smaller" ones.
        if *meta.level() <= Level::WARN {
            LineWriter::Now
        } else {
            LineWriter::Batched
        }
    }
}
