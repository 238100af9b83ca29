//! The server's log: `tracing` to stderr, as text lines or JSON, written
//! in batches ([`batched`]) and, off a terminal, by a formatter built for
//! one line per request ([`line`]).

mod batched;
mod line;

use std::io::IsTerminal;

pub use batched::flush;

use crate::config::LogFormat;

/// Installs the logger; `RUST_LOG` overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(batched::BatchedStderr::new())
        .with_ansi(terminal);
    match format {
        LogFormat::Json => builder.json().init(),
        // At a terminal, tracing's own formatter, in colour; into a file or
        // a pipe (a server's log), the same layout written for less CPU.
        LogFormat::Text if terminal => builder.init(),
        LogFormat::Text => builder.event_format(line::Line).init(),
    }
}
