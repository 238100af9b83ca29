//! Scanning every blob of a repository's history, through git itself:
//! `git rev-list --all --objects` names each object once (with the first
//! path it was seen at) and one `git cat-file --batch` streams their
//! contents, which worker threads search while git reads the next ones.
//! For the few blobs that hold a key, `git log --find-object` names the
//! commit that added them, so a report says which commit to rewrite.
//! Blobs above the size limit are read past, never held, and listed with
//! the commit that added them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use crate::matcher::Matcher;
use crate::stream::{scan_slice, Hit, Outcome};
use crate::{Finding, Location, Options, Report, ScanError, Skipped, Stats};

/// A blob waiting to be searched.
struct Blob {
    oid: String,
    path: String,
    data: Vec<u8>,
}

/// Scans every blob reachable from any ref of the repository at `repo`.
pub fn git_history(repo: &Path, options: &Options) -> Result<Report, ScanError> {
    let objects = list_objects(repo)?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut report = search_blobs(repo, &objects, threads, options.max_file_size)?;
    let found = report.findings.iter_mut().map(|f| &mut f.location);
    let skipped = report.skipped.iter_mut().map(|s| &mut s.location);
    attribute_commits(repo, found.chain(skipped).collect())?;
    report.sort();
    Ok(report)
}

/// The top of the git work tree holding `dir`, with symbolic links
/// resolved; `None` outside one, or without git.
pub fn work_tree_root(dir: &Path) -> Option<PathBuf> {
    let out = git(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let top = String::from_utf8(out.stdout).ok()?;
    let top = top.strip_suffix('\n').unwrap_or(&top);
    (out.status.success() && !top.is_empty()).then(|| PathBuf::from(top))
}

fn git(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo);
    cmd
}

fn spawn_error(e: std::io::Error) -> ScanError {
    ScanError::Git(format!(
        "cannot run git: {e}; install git (and put it on PATH) to scan history"
    ))
}

/// Runs a git command to its end and returns its stdout.
fn output(mut cmd: Command, repo: &Path, what: &str) -> Result<Vec<u8>, ScanError> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(spawn_error)?;
    if !out.status.success() {
        return Err(ScanError::Git(format!(
            "git {what} failed in {}: {}; check that it is a git repository",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// `(object id, path)` for every tree and blob below the root trees; commits
/// and root trees (no path) cannot hold file content and are left out.
fn list_objects(repo: &Path) -> Result<Vec<(String, String)>, ScanError> {
    let mut cmd = git(repo);
    cmd.args(["rev-list", "--all", "--objects"]);
    let out = output(cmd, repo, "rev-list")?;
    Ok(out
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let space = memchr::memchr(b' ', line)?;
            let (oid, path) = (&line[..space], &line[space + 1..]);
            (!path.is_empty()).then(|| {
                (
                    String::from_utf8_lossy(oid).into_owned(),
                    String::from_utf8_lossy(path).into_owned(),
                )
            })
        })
        .collect())
}

/// Streams the objects through `git cat-file --batch` and searches the
/// blobs of at most `max_size` bytes on `threads` threads.
fn search_blobs(
    repo: &Path,
    objects: &[(String, String)],
    threads: usize,
    max_size: u64,
) -> Result<Report, ScanError> {
    let mut child = git(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_error)?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(ScanError::Git("git cat-file started without pipes".into()));
    };
    let findings = Mutex::new(Vec::new());
    let mut skipped = Vec::new();
    let (tx, rx) = sync_channel::<Blob>(threads * 4);
    let rx = Mutex::new(rx);
    let read = std::thread::scope(|s| {
        // Feeding ids from another thread keeps git's output flowing while
        // its input is still being written.
        s.spawn(move || {
            let mut ids = std::io::BufWriter::new(&mut stdin);
            for (oid, _) in objects {
                if writeln!(ids, "{oid}").is_err() {
                    return;
                }
            }
            let _ = ids.flush();
        });
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| search_worker(&rx, &findings)))
            .collect();
        let read = read_batch(stdout, objects, max_size, &mut skipped, |blob| {
            tx.send(blob).is_ok()
        });
        drop(tx);
        if read.is_err() {
            // Unblocks the feeding thread.
            let _ = child.kill();
        }
        let stats = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .fold(Stats::default(), |a, b| Stats {
                searched: a.searched + b.searched,
                bytes: a.bytes + b.bytes,
                binary: a.binary + b.binary,
            });
        read.map(|()| stats)
    });
    finish(child)?;
    let stats = read?;
    Ok(Report {
        findings: findings.into_inner().unwrap_or_else(|p| p.into_inner()),
        skipped,
        errors: Vec::new(),
        stats,
    })
}

fn finish(mut child: Child) -> Result<(), ScanError> {
    match child.wait() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(ScanError::Git(format!(
            "git cat-file exited with {status}; run `git fsck` in the repository"
        ))),
        Err(e) => Err(ScanError::Git(format!("waiting for git cat-file: {e}"))),
    }
}

fn search_worker(rx: &Mutex<Receiver<Blob>>, findings: &Mutex<Vec<Finding>>) -> Stats {
    let matcher = Matcher::default();
    let mut stats = Stats::default();
    let mut hits: Vec<Hit> = Vec::new();
    loop {
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(blob) = next else { return stats };
        match scan_slice(&matcher, &blob.data, &mut hits) {
            Outcome::Binary => stats.binary += 1,
            Outcome::Text { bytes } => {
                stats.searched += 1;
                stats.bytes += bytes;
            }
        }
        if hits.is_empty() {
            continue;
        }
        let mut all = findings.lock().unwrap_or_else(|p| p.into_inner());
        all.extend(hits.drain(..).map(|hit| Finding {
            location: Location::Blob {
                commit: None,
                blob: blob.oid.clone(),
                path: blob.path.clone(),
            },
            line: hit.line,
            key: hit.key,
        }));
    }
}

/// Reads `cat-file --batch` answers (`<oid> <type> <size>\n<content>\n`, or
/// `<oid> missing\n`) in the order asked, handing blobs of at most
/// `max_size` bytes to `send` until it returns false. Larger blobs are read
/// past without being kept, and listed in `skipped`.
fn read_batch(
    stdout: impl Read,
    objects: &[(String, String)],
    max_size: u64,
    skipped: &mut Vec<Skipped>,
    mut send: impl FnMut(Blob) -> bool,
) -> Result<(), ScanError> {
    let mut out = BufReader::with_capacity(1 << 20, stdout);
    let mut header = String::new();
    let broken = |what: &str| ScanError::Git(format!("git cat-file: {what}"));
    for (oid, path) in objects {
        header.clear();
        match out.read_line(&mut header) {
            Ok(0) => return Err(broken("output ended early")),
            Ok(_) => {}
            Err(e) => return Err(broken(&e.to_string())),
        }
        let mut fields = header.split_ascii_whitespace().skip(1);
        let (Some(kind), Some(size)) = (fields.next(), fields.next()) else {
            continue; // `<oid> missing`: nothing to read.
        };
        let size: u64 = size
            .parse()
            .map_err(|_| broken(&format!("bad header {header:?}")))?;
        if kind != "blob" || size > max_size {
            // The content and its newline.
            let passed = std::io::copy(&mut (&mut out).take(size + 1), &mut std::io::sink())
                .map_err(|e| broken(&e.to_string()))?;
            if passed != size + 1 {
                return Err(broken("output ended early"));
            }
            if kind == "blob" {
                skipped.push(Skipped {
                    location: Location::Blob {
                        commit: None,
                        blob: oid.clone(),
                        path: path.clone(),
                    },
                    size,
                });
            }
            continue;
        }
        // Fits in memory: at most `max_size`.
        let mut data = vec![0; size as usize + 1];
        out.read_exact(&mut data)
            .map_err(|e| broken(&e.to_string()))?;
        data.pop();
        let blob = Blob {
            oid: oid.clone(),
            path: path.clone(),
            data,
        };
        if !send(blob) {
            return Ok(());
        }
    }
    Ok(())
}

/// Most ids one `git log` is asked about, to keep its command line short.
const FIND_OBJECTS_PER_LOG: usize = 64;

/// Names, for each blob at `locations` (a finding's or a skipped blob's),
/// the oldest commit that added it (and the path it was added at), from
/// `git log --raw`. Blobs git cannot place keep their id.
fn attribute_commits(repo: &Path, mut locations: Vec<&mut Location>) -> Result<(), ScanError> {
    let mut blobs: Vec<String> = locations
        .iter()
        .filter_map(|location| match &**location {
            Location::Blob { blob, .. } => Some(blob.clone()),
            Location::File(_) => None,
        })
        .collect();
    blobs.sort_unstable();
    blobs.dedup();
    let mut added: HashMap<String, (String, String)> = HashMap::new();
    for chunk in blobs.chunks(FIND_OBJECTS_PER_LOG) {
        let mut cmd = git(repo);
        cmd.args([
            "log",
            "-z",
            "--all",
            "--reverse",
            "--no-renames",
            "--no-abbrev",
            "--raw",
            "--format=commit %H",
        ]);
        for blob in chunk {
            cmd.arg(format!("--find-object={blob}"));
        }
        let out = output(cmd, repo, "log")?;
        parse_raw_log(&out, &mut added);
    }
    for location in &mut locations {
        if let Location::Blob { commit, blob, path } = &mut **location {
            if let Some((c, p)) = added.get(blob.as_str()) {
                *commit = Some(c.clone());
                *path = p.clone();
            }
        }
    }
    Ok(())
}

/// From `git log -z --raw` output (fields separated by NUL: `commit <sha>`,
/// then for each change `:<mode> <mode> <old> <new> <status>` and its path,
/// unquoted), the first commit that wrote each new blob id, keeping an
/// earlier answer.
fn parse_raw_log(log: &[u8], added: &mut HashMap<String, (String, String)>) {
    let mut commit = None;
    let mut fields = log.split(|&b| b == 0);
    while let Some(field) = fields.next() {
        // Git ends each commit's header with a newline before its changes.
        let field = String::from_utf8_lossy(field.strip_prefix(b"\n").unwrap_or(field));
        if let Some(c) = field.strip_prefix("commit ") {
            commit = Some(c.to_owned());
            continue;
        }
        let (Some(commit), Some(meta)) = (&commit, field.strip_prefix(':')) else {
            continue;
        };
        let Some(path) = fields.next() else { break };
        if let Some(new) = meta.split(' ').nth(3) {
            added
                .entry(new.to_owned())
                .or_insert_with(|| (commit.clone(), String::from_utf8_lossy(path).into_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_log_names_the_first_commit_that_wrote_a_blob() {
        let log = b"commit c1\0\n:000000 100644 0000 b1 A\0config/app.env\0\
                    commit c2\0\n:100644 100644 b1 b2 M\0config/app.env\0\
                    commit c3\0\n:100644 000000 b2 0000 D\0config/app.env\0\
                    :000000 100644 0000 b1 A\0copy.env\0\
                    commit c4\0\n:000000 100644 0000 b3 A\0\nodd\x1b[31mname\0";
        let mut added = HashMap::new();
        parse_raw_log(log, &mut added);
        assert_eq!(added["b1"], ("c1".to_owned(), "config/app.env".to_owned()));
        assert_eq!(added["b2"], ("c2".to_owned(), "config/app.env".to_owned()));
        // Names come unquoted, control characters and all.
        assert_eq!(
            added["b3"],
            ("c4".to_owned(), "\nodd\x1b[31mname".to_owned())
        );
    }

    #[test]
    fn batch_output_is_split_into_blobs() {
        let objects = vec![
            ("t1".to_owned(), "dir".to_owned()),
            ("b1".to_owned(), "dir/a".to_owned()),
            ("gone".to_owned(), "dir/b".to_owned()),
            ("b2".to_owned(), "dir/c".to_owned()),
        ];
        let batch = b"t1 tree 3\nxyz\nb1 blob 5\nhello\ngone missing\nb2 blob 0\n\n";
        let mut got = Vec::new();
        let mut skipped = Vec::new();
        read_batch(&batch[..], &objects, 5, &mut skipped, |b| {
            got.push((b.oid, b.path, b.data));
            true
        })
        .unwrap();
        assert!(skipped.is_empty());
        assert_eq!(
            got,
            vec![
                ("b1".into(), "dir/a".into(), b"hello".to_vec()),
                ("b2".into(), "dir/c".into(), Vec::new()),
            ]
        );
    }

    #[test]
    fn blobs_above_the_limit_are_read_past_and_listed() {
        let objects = vec![
            ("big".to_owned(), "data/dump.sql".to_owned()),
            ("small".to_owned(), "a.env".to_owned()),
        ];
        let batch = b"big blob 6\n123456\nsmall blob 5\nhello\n";
        let mut got = Vec::new();
        let mut skipped = Vec::new();
        read_batch(&batch[..], &objects, 5, &mut skipped, |b| {
            got.push(b.oid);
            true
        })
        .unwrap();
        assert_eq!(got, vec!["small".to_owned()]);
        assert_eq!(
            skipped,
            vec![Skipped {
                location: Location::Blob {
                    commit: None,
                    blob: "big".into(),
                    path: "data/dump.sql".into(),
                },
                size: 6,
            }]
        );
        // A blob cut short is an error, not a skip.
        let cut = b"big blob 6\n123";
        let err = read_batch(&cut[..], &objects, 5, &mut skipped, |_| true).unwrap_err();
        assert!(err.to_string().contains("ended early"), "{err}");
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;
    use keyward_core::{KeyKind, PlainKey};

    fn run(repo: &Path, args: &[&str]) {
        let out = git(repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[test]
    fn finds_a_key_deleted_in_a_later_commit_and_names_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        run(repo, &["init", "-q"]);
        let key = PlainKey::generate(KeyKind::Project);
        std::fs::create_dir(repo.join("conf")).unwrap();
        std::fs::write(
            repo.join("conf/app.env"),
            format!("A=1\nKEY={}\n", key.expose()),
        )
        .unwrap();
        run(repo, &["add", "."]);
        run(repo, &["commit", "-q", "-m", "add"]);
        std::fs::remove_file(repo.join("conf/app.env")).unwrap();
        run(repo, &["commit", "-q", "-a", "-m", "remove"]);

        let report = git_history(
            repo,
            &Options {
                threads: 2,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(report.findings.len(), 1);
        let found = &report.findings[0];
        assert_eq!(found.line, 2);
        assert_eq!(found.key.expose(), key.expose());
        let first = git(repo)
            .args(["rev-list", "--max-parents=0", "HEAD"])
            .output()
            .unwrap();
        let first = String::from_utf8(first.stdout).unwrap();
        assert_eq!(
            found.location.to_string(),
            format!("{}:conf/app.env", first.trim())
        );
    }

    #[test]
    fn a_directory_that_is_not_a_repository_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = git_history(dir.path(), &Options::default()).unwrap_err();
        assert!(err.to_string().contains("git repository"), "{err}");
    }

    #[test]
    fn blobs_above_the_limit_are_listed_with_the_commit_that_added_them() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        run(repo, &["init", "-q"]);
        let key = PlainKey::generate(KeyKind::Project);
        let k = key.expose();
        std::fs::write(repo.join("small.env"), format!("K={k}\n")).unwrap();
        std::fs::write(repo.join("big.sql"), format!("{}\n{k}\n", "-".repeat(500))).unwrap();
        run(repo, &["add", "."]);
        run(repo, &["commit", "-q", "-m", "add"]);

        let options = Options {
            threads: 1,
            max_file_size: 200,
        };
        let report = git_history(repo, &options).unwrap();
        let head = git(repo).args(["rev-parse", "HEAD"]).output().unwrap();
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(report.findings.len(), 1);
        assert_eq!(
            report.findings[0].location.to_string(),
            format!("{}:small.env", head.trim())
        );
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(
            report.skipped[0].location.to_string(),
            format!("{}:big.sql", head.trim())
        );
        assert_eq!(report.skipped[0].size, 500 + 1 + k.len() as u64 + 1);
    }

    #[test]
    fn the_work_tree_root_is_found_from_below_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(work_tree_root(dir.path()), None);
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("a/b")).unwrap();
        run(&repo, &["init", "-q"]);
        let top = repo.canonicalize().unwrap();
        assert_eq!(work_tree_root(&repo.join("a/b")), Some(top.clone()));
        assert_eq!(work_tree_root(&repo), Some(top));
    }
}
