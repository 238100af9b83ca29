//! Finds Keyward secret keys where they should not be: in files, directory
//! trees and every blob of a git repository's history.
//!
//! A candidate is reported only when it is a whole token (no letter or digit
//! touching either end) and its checksum verifies, so random strings of the
//! right shape, and key-shaped runs inside longer tokens, are not reported.
//! Keys found are kept as [`PlainKey`]s: they leave memory only redacted,
//! hashed, or sent to the server that can revoke them. Names are printed
//! only escaped ([`escape`]), so a hostile file name cannot drive the
//! terminal.

#![forbid(unsafe_code)]

pub mod escape;
mod git;
pub mod matcher;
pub mod stream;
mod walk;

use std::fmt;
use std::path::PathBuf;

use keyward_core::PlainKey;

use escape::{escape, escape_path};

pub use git::{git_history, work_tree_root};
pub use walk::scan_paths;

/// Where a key was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A file on disk.
    File(PathBuf),
    /// A blob of git history, with the commit that added it when git could
    /// tell.
    Blob {
        commit: Option<String>,
        blob: String,
        path: String,
    },
}

impl fmt::Display for Location {
    /// `path`, or `commit:path` / `blob:path` for history, escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => f.write_str(&escape_path(path)),
            Location::Blob { commit, blob, path } => {
                let id = commit.as_deref().unwrap_or(blob);
                write!(f, "{id}:{}", escape(path))
            }
        }
    }
}

/// The largest file or blob searched unless told otherwise: 10 MB. Larger
/// ones are mostly data (archives, dumps, media) and would cost the most
/// time; they are listed as skipped, never passed as clean.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10_000_000;

/// How a scan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Search threads; 0 for one per core.
    pub threads: usize,
    /// Files and blobs of more bytes than this are not searched but listed
    /// in [`Report::skipped`].
    pub max_file_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: 0,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// A file or blob left unsearched: larger than [`Options::max_file_size`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub location: Location,
    /// Bytes.
    pub size: u64,
}

/// One key at one place.
#[derive(Debug, Clone)]
pub struct Finding {
    pub location: Location,
    /// 1-based.
    pub line: u64,
    pub key: PlainKey,
}

/// How much was looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Files (or blobs) searched.
    pub searched: u64,
    /// Bytes searched.
    pub bytes: u64,
    /// Files (or blobs) skipped as binary.
    pub binary: u64,
}

/// What a scan found, sorted by location and line, what it skipped for its
/// size, and what it could not read. A scan with errors still reports
/// everything it could read.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<ScanError>,
    pub stats: Stats,
}

impl Report {
    fn sort(&mut self) {
        self.findings
            .sort_by(|a, b| (&a.location, a.line).cmp(&(&b.location, b.line)));
        self.skipped.sort_by(|a, b| a.location.cmp(&b.location));
    }
}

/// Why (part of) a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "cannot read {}: {source}; check that it exists and that you may read it",
        escape_path(path)
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot walk a directory: {}; check that you may list it", escape(.0))]
    Walk(String),
    /// Git's own messages may quote file names.
    #[error("{}", escape(.0))]
    Git(String),
}

#[cfg(test)]
mod tests {
    /// Other scanners are handed the pattern in docs/; it must stay the
    /// one the key format defines.
    #[test]
    fn the_published_pattern_is_the_key_format_pattern() {
        let pattern = keyward_core::key::PATTERN;
        assert!(include_str!("../../../docs/gitleaks.toml").contains(pattern));
        assert!(include_str!("../../../docs/key-format.md").contains(pattern));
        assert!(include_str!("../../../docs/gitleaks.toml").contains("id = \"keyward-api-key\""));
    }
}
