//! Walking files and directory trees on every core. Everything is searched
//! (ignore files do not hide a leaked key) except `.git` directories, which
//! hold history (`--git-history` reads it through git) and would otherwise
//! report every committed key twice. Symbolic links are not followed, so a
//! scan never leaves the trees it was given. Files above the size limit are
//! not read, only listed.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ignore::{WalkBuilder, WalkState};

use crate::stream::{Hit, Outcome, StreamScanner};
use crate::{Finding, Location, Options, Report, ScanError, Skipped, Stats};

/// Scans `paths` (files or directories). Fails before scanning when a path
/// does not exist; errors met later (an unreadable file) are listed in the
/// report.
pub fn scan_paths(paths: &[PathBuf], options: &Options) -> Result<Report, ScanError> {
    let Some((first, rest)) = paths.split_first() else {
        return Ok(Report::default());
    };
    for path in paths {
        std::fs::metadata(path).map_err(|source| ScanError::Read {
            path: path.clone(),
            source,
        })?;
    }
    let mut builder = WalkBuilder::new(first);
    for path in rest {
        builder.add(path);
    }
    builder
        .standard_filters(false)
        .follow_links(false)
        .threads(options.threads)
        .filter_entry(|entry| entry.file_name() != ".git");

    let shared = Shared {
        max_file_size: options.max_file_size,
        ..Shared::default()
    };
    builder.build_parallel().run(|| {
        let mut scanner = StreamScanner::default();
        let mut hits = Vec::new();
        let shared = &shared;
        Box::new(move |entry| {
            match entry {
                Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => {
                    shared.scan_file(&mut scanner, &mut hits, entry.path());
                }
                Ok(_) => {}
                Err(e) => shared.fail(ScanError::Walk(e.to_string())),
            }
            WalkState::Continue
        })
    });
    Ok(shared.into_report())
}

/// What the walking threads add to.
#[derive(Default)]
struct Shared {
    max_file_size: u64,
    findings: Mutex<Vec<Finding>>,
    skipped: Mutex<Vec<Skipped>>,
    errors: Mutex<Vec<ScanError>>,
    searched: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
}

impl Shared {
    fn scan_file(&self, scanner: &mut StreamScanner, hits: &mut Vec<Hit>, path: &Path) {
        let opened = File::open(path).and_then(|file| Ok((file.metadata()?.len(), file)));
        let outcome = match opened {
            Ok((size, _)) if size > self.max_file_size => {
                lock(&self.skipped).push(Skipped {
                    location: Location::File(path.to_path_buf()),
                    size,
                });
                return;
            }
            Ok((_, file)) => scanner.scan_reader(file, hits),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Outcome::Binary) => {
                self.binary.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Outcome::Text { bytes }) => {
                self.searched.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            // Deleted between listing and opening: nothing left to leak.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => self.fail(ScanError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
        if !hits.is_empty() {
            let mut findings = lock(&self.findings);
            findings.extend(hits.drain(..).map(|hit| Finding {
                location: Location::File(path.to_path_buf()),
                line: hit.line,
                key: hit.key,
            }));
        }
    }

    fn fail(&self, error: ScanError) {
        lock(&self.errors).push(error);
    }

    fn into_report(self) -> Report {
        let mut report = Report {
            findings: into_inner(self.findings),
            skipped: into_inner(self.skipped),
            errors: into_inner(self.errors),
            stats: Stats {
                searched: self.searched.into_inner(),
                bytes: self.bytes.into_inner(),
                binary: self.binary.into_inner(),
            },
        };
        report.sort();
        report
    }
}

/// A panicking scan thread cannot leave a half-pushed `Vec`, so a poisoned
/// lock still holds whole findings.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::{KeyKind, PlainKey};

    fn threads(threads: usize) -> Options {
        Options {
            threads,
            ..Options::default()
        }
    }

    fn locations(report: &Report) -> Vec<(String, u64)> {
        report
            .findings
            .iter()
            .map(|f| (f.location.to_string(), f.line))
            .collect()
    }

    #[test]
    fn walks_trees_but_not_git_dirs_binaries_or_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let key = PlainKey::generate(KeyKind::Project);
        let k = key.expose();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join("top.txt"), format!("{k}\n")).unwrap();
        std::fs::write(root.join("a/b/deep.env"), format!("x=1\nKEY={k}\n")).unwrap();
        std::fs::write(root.join(".hidden"), format!("\n\n{k}")).unwrap();
        std::fs::write(root.join(".git/config"), k).unwrap();
        std::fs::write(root.join("bin.dat"), format!("\0{k}")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), k).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();

        let report = scan_paths(&[root.to_path_buf()], &threads(2)).unwrap();
        let shown = |p: &str| root.join(p).display().to_string();
        assert_eq!(
            locations(&report),
            vec![
                (shown(".hidden"), 3),
                (shown("a/b/deep.env"), 2),
                (shown("top.txt"), 1)
            ]
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.stats.binary, 1);
        assert_eq!(report.stats.searched, 3);
    }

    #[test]
    fn a_missing_path_fails_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let err = scan_paths(&[dir.path().join("nope")], &threads(1)).unwrap_err();
        assert!(err.to_string().contains("check that it exists"), "{err}");
    }

    #[test]
    fn files_may_be_given_directly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("one.py");
        let key = PlainKey::generate(KeyKind::Admin);
        std::fs::write(&file, format!("# {}\n", key.expose())).unwrap();
        let report = scan_paths(&[file.clone(), file.clone()], &threads(1)).unwrap();
        assert_eq!(report.findings.len(), 2);
        assert_eq!(report.findings[0].key.expose(), key.expose());
    }

    #[test]
    fn files_above_the_size_limit_are_listed_not_searched() {
        let dir = tempfile::tempdir().unwrap();
        let key = PlainKey::generate(KeyKind::Project);
        let k = key.expose();
        let fits = format!("{k}\n{}", "x".repeat(200 - k.len() - 1));
        std::fs::write(dir.path().join("fits.txt"), &fits).unwrap();
        std::fs::write(dir.path().join("over.txt"), format!("{fits}!")).unwrap();
        let options = Options {
            threads: 2,
            max_file_size: 200,
        };
        let report = scan_paths(&[dir.path().to_path_buf()], &options).unwrap();
        let shown = |p: &str| dir.path().join(p).display().to_string();
        assert_eq!(locations(&report), vec![(shown("fits.txt"), 1)]);
        assert_eq!(
            report.skipped,
            vec![Skipped {
                location: Location::File(dir.path().join("over.txt")),
                size: 201,
            }]
        );
        assert_eq!(report.stats.searched, 1);
        assert_eq!(report.stats.bytes, 200);
    }
}
