//! `keyward scan` end to end: real keys planted in a tree among ten thousand
//! lookalikes (right shape, wrong checksum; or a real key glued inside a
//! longer token) are found exactly, with their lines; binary files and
//! `.git` are skipped; exit codes are 1 / 0 / 2; `--git-history` finds a key
//! that a later commit deleted; `--revoke` kills the keys on a real server,
//! which records where relative to the repository. Hostile file names print
//! escaped; files and blobs above `--max-file-size` are skipped, named.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{create_key, run, secret, Server};
use keyward_core::key::{self, KeyHash, KeyKind, PlainKey};
use serde_json::{json, Value};

const LOOKALIKES: usize = 10_000;

fn scan(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("scan")
        .args(args)
        .current_dir(dir))
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A small xorshift seeded from the OS, for picking characters quickly.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        // Base-62 characters from the OS CSPRNG are random enough for a seed.
        let mut seed = [0u8; 8];
        keyward_core::base62::fill_random(&mut seed);
        Rng(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn base62(&mut self, len: usize) -> String {
        let alphabet = keyward_core::base62::ALPHABET;
        (0..len)
            .map(|_| char::from(alphabet[self.below(62)]))
            .collect()
    }
}

/// A string that must not be reported: the right prefix and length with a
/// wrong checksum, or a real key with a letter or digit glued to one end.
fn lookalike(rng: &mut Rng) -> String {
    let prefix = if rng.below(4) == 0 {
        key::ADMIN_PREFIX
    } else {
        key::PROJECT_PREFIX
    };
    let glue_len = 1 + rng.below(8);
    match rng.below(4) {
        0 => {
            let real = PlainKey::generate(KeyKind::Project);
            format!("{}{}", rng.base62(glue_len), real.expose())
        }
        1 => {
            let real = PlainKey::generate(KeyKind::Admin);
            format!("{}{}", real.expose(), rng.base62(glue_len))
        }
        _ => loop {
            let candidate = format!("{prefix}{}", rng.base62(46));
            if key::verify(candidate.as_bytes()).is_err() {
                return candidate;
            }
        },
    }
}

/// Files of source-like lines, some carrying lookalikes.
fn lookalike_files(root: &Path, rng: &mut Rng) {
    for file in 0..10 {
        let mut text = String::new();
        for i in 0..LOOKALIKES / 10 {
            let sep = [" ", "\"", "'", "=", ":", "(", "\t"][rng.below(7)];
            text.push_str(&format!(
                "let v{i} = call({sep}{}{sep}); // {}\n",
                lookalike(rng),
                rng.base62(20)
            ));
        }
        write(root, &format!("vendor/lib{file}/data.rs"), text);
    }
}

/// `(path relative to root, 1-based line, key)`, sorted as the scanner sorts.
type Planted = Vec<(String, u64, PlainKey)>;

fn planted_tree(root: &Path) -> Planted {
    let mut rng = Rng::new();
    lookalike_files(root, &mut rng);
    let k = |kind| PlainKey::generate(kind);
    let (a, b, c, d, e) = (
        k(KeyKind::Project),
        k(KeyKind::Admin),
        k(KeyKind::Project),
        k(KeyKind::Project),
        k(KeyKind::Project),
    );
    write(root, "README.md", "# demo\n\nNothing here.\n");
    write(
        root,
        "src/config.py",
        format!(
            "import os\n\nAPI_KEY = \"{}\"\nADMIN = '{}'\n",
            a.expose(),
            b.expose()
        ),
    );
    write(
        root,
        "src/deep/er/still/.env",
        format!(
            "{}\n{}\nKEYWARD_KEY={}",
            lookalike(&mut rng),
            lookalike(&mut rng),
            c.expose()
        ),
    );
    let mut long = "filler line\n".repeat(100_000);
    long.push_str(&format!("token: {}\n", d.expose()));
    write(root, "logs/big.log", long);
    // Skipped: binary (a NUL in the first 8 KiB) and git's own directory.
    write(root, "assets/blob.bin", format!("\u{0}\u{1}{}", e.expose()));
    write(root, ".git/config", format!("[remote]\n{}\n", e.expose()));
    let mut planted = vec![
        ("logs/big.log".into(), 100_001, d),
        ("src/config.py".into(), 3, a),
        ("src/config.py".into(), 4, b),
        ("src/deep/er/still/.env".into(), 3, c),
    ];
    planted.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    planted
}

fn expected_lines(planted: &Planted) -> String {
    planted
        .iter()
        .map(|(path, line, key)| format!("{path}:{line}: {}\n", key.redacted()))
        .collect()
}

#[test]
fn finds_exactly_the_planted_keys_among_lookalikes() {
    let dir = tempfile::tempdir().unwrap();
    let planted = planted_tree(dir.path());

    let out = scan(dir.path(), &[]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    let printed = stdout(&out);
    assert_eq!(printed, expected_lines(&planted));
    for (_, _, key) in &planted {
        assert!(!printed.contains(key.expose()), "a full key was printed");
    }

    let out = scan(dir.path(), &["--json", "."]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    let found: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let found = found.as_array().expect("a JSON array");
    assert_eq!(found.len(), planted.len());
    for (object, (path, line, key)) in found.iter().zip(&planted) {
        assert_eq!(
            object,
            &json!({
                "file": format!("./{path}"),
                "line": line,
                "redacted": key.redacted(),
                "kind": key.kind().as_str(),
                "token_hash": KeyHash::of(key.expose()).to_hex(),
            })
        );
    }
}

#[test]
fn a_clean_tree_exits_0_and_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    lookalike_files(dir.path(), &mut Rng::new());
    let out = scan(dir.path(), &[]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "");

    let out = scan(dir.path(), &["--json"]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );

    let out = scan(dir.path(), &["vendor", "no/such/dir"]);
    assert_eq!(code(&out), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no/such/dir") && err.contains("check that it exists"),
        "{err}"
    );

    // --revoke needs --server.
    assert_eq!(code(&scan(dir.path(), &["--revoke"])), Some(2));
    assert_eq!(code(&scan(dir.path(), &["--bogus"])), Some(2));
}

fn git(repo: &Path, args: &[&str]) {
    let out = run(Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(repo));
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn git_history_finds_a_key_deleted_by_a_later_commit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let key = PlainKey::generate(KeyKind::Project);
    git(repo, &["init", "-q"]);
    write(
        repo,
        "app/settings.toml",
        format!("[api]\n\nkey = \"{}\"\n", key.expose()),
    );
    write(repo, "README.md", "hello\n");
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "settings"]);
    git(repo, &["rm", "-q", "app/settings.toml"]);
    git(repo, &["commit", "-q", "-m", "oops"]);

    let out = scan(repo, &[]);
    assert_eq!(code(&out), Some(0), "the work tree is clean: {out:?}");

    let out = scan(repo, &["--git-history"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    let first = run(Command::new("git")
        .args(["rev-list", "--max-parents=0", "HEAD"])
        .current_dir(repo));
    let first = stdout(&first);
    assert_eq!(
        stdout(&out),
        format!("{}:app/settings.toml:3: {}\n", first.trim(), key.redacted())
    );

    let out = scan(repo, &["--git-history", "--json"]);
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found[0]["file"], "app/settings.toml");
    assert_eq!(found[0]["commit"], first.trim());

    let not_a_repo = tempfile::tempdir().unwrap();
    let out = scan(not_a_repo.path(), &["--git-history"]);
    assert_eq!(code(&out), Some(2), "{out:?}");
}

#[test]
fn revoke_reports_the_keys_and_the_server_kills_them() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let live = secret(&create_key(&s, &admin, &project, json!({"name": "leaked"})));
    assert_eq!(s.get("/v1/models", &live).status, 200);
    let stranger = PlainKey::generate(KeyKind::Project);

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "deploy/env.sh",
        format!("export K={live}\nexport K2={}\n", stranger.expose()),
    );
    write(dir.path(), "notes.md", format!("the key is {live}\n"));
    let out = scan(dir.path(), &["--revoke", "--server", &s.base]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(err.contains("Reported 2 distinct key(s)"), "{err}");
    assert!(err.contains("1 revoked"), "{err}");
    assert_eq!(s.get("/v1/models", &live).status, 401);

    // The server recorded where, relative to the scanned tree: the first
    // place the key was found, and nothing of this machine's layout.
    assert_eq!(
        sightings(&s, &admin, dir.path()),
        vec!["deploy/env.sh".to_owned()]
    );
}

/// Where the server says the keys it revoked were found (the owner's
/// notices), after checking that neither the notices nor the audit log
/// carry `local`, a path on the scanning machine.
fn sightings(s: &Server, admin: &str, local: &Path) -> Vec<String> {
    let notices = s.get("/v1/organization/notifications", admin).body;
    let audit = s
        .get(
            "/v1/organization/audit_logs?event_types[]=api_key.revoked",
            admin,
        )
        .body;
    let local = local.canonicalize().unwrap();
    for recorded in [&notices, &audit] {
        let text = recorded.to_string();
        assert!(
            !text.contains(local.to_str().unwrap()) && !text.contains("file://"),
            "the server recorded a local path: {text}"
        );
    }
    let mut urls: Vec<String> = notices["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["found_at"]["url"].as_str().unwrap().to_owned())
        .collect();
    for url in &urls {
        assert!(
            audit
                .to_string()
                .contains(&format!("at {url} (source: keyward scan)")),
            "the audit entry does not say where: {audit}"
        );
    }
    urls.sort();
    urls
}

#[test]
fn revoke_sends_paths_relative_to_the_repository() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let new_key = || secret(&create_key(&s, &admin, &project, json!({"name": "leaked"})));
    let (on_disk, in_history) = (new_key(), new_key());

    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("checkout");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    write(&repo, "old/settings.env", format!("K={in_history}\n"));
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "settings"]);
    git(&repo, &["rm", "-q", "old/settings.env"]);
    git(&repo, &["commit", "-q", "-m", "gone"]);
    write(&repo, "services/api/.env", format!("K={on_disk}\n"));

    // A subdirectory, named by its absolute path, from elsewhere: the path
    // sent is still relative to the repository's top.
    let absolute = repo.join("services").canonicalize().unwrap();
    let out = scan(
        dir.path(),
        &[absolute.to_str().unwrap(), "--revoke", "--server", &s.base],
    );
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 revoked"),
        "{out:?}"
    );

    let out = scan(
        dir.path(),
        &[
            repo.canonicalize().unwrap().to_str().unwrap(),
            "--git-history",
            "--revoke",
            "--server",
            &s.base,
        ],
    );
    assert_eq!(code(&out), Some(1), "{out:?}");
    let first = run(Command::new("git")
        .args(["rev-list", "--max-parents=0", "HEAD"])
        .current_dir(&repo));
    let first = stdout(&first);

    let mut expected = vec![
        "services/api/.env".to_owned(),
        format!("{}:old/settings.env", first.trim()),
    ];
    expected.sort();
    assert_eq!(sightings(&s, &admin, dir.path()), expected);
}

/// A name that would recolour the terminal, and one that would print a
/// fake finding on a line of its own.
const HOSTILE_NAMES: [(&str, &str); 2] = [
    ("red\x1b[31m.env", "red\\x1b[31m.env"),
    (
        "a.env\nnot-a-finding.env:9: sk-kw-fake",
        "a.env\\nnot-a-finding.env:9: sk-kw-fake",
    ),
];

/// What no output of the scanner may carry: ESC, CSI in either form, or a
/// newline anywhere but at the end of a line it wrote.
fn assert_inert(output: &str) {
    assert!(
        !output.contains(['\x1b', '\u{9b}', '\r']),
        "a raw control character was printed: {output:?}"
    );
}

#[test]
fn file_names_with_escape_sequences_print_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let key = PlainKey::generate(KeyKind::Project);
    for (name, _) in HOSTILE_NAMES {
        write(dir.path(), name, format!("K={}\n", key.expose()));
    }

    let out = scan(dir.path(), &[]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    let printed = stdout(&out);
    assert_inert(&printed);
    assert_inert(&String::from_utf8_lossy(&out.stderr));
    let mut expected: Vec<String> = HOSTILE_NAMES
        .iter()
        .map(|(_, shown)| format!("{shown}:1: {}", key.redacted()))
        .collect();
    expected.sort();
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);

    // JSON escapes them its own way, and still names the real files.
    let out = scan(dir.path(), &["--json"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert_inert(&stdout(&out));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut files: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    files.sort();
    let mut names: Vec<&str> = HOSTILE_NAMES.iter().map(|(name, _)| *name).collect();
    names.sort();
    assert_eq!(files, names);

    // Errors name paths escaped too.
    let out = scan(dir.path(), &["no\x1b[2Jsuch"]);
    assert_eq!(code(&out), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_inert(&err);
    assert!(err.contains("no\\x1b[2Jsuch"), "{err}");
}

#[test]
fn history_names_with_escape_sequences_print_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let key = PlainKey::generate(KeyKind::Project);
    git(repo, &["init", "-q"]);
    for (name, _) in HOSTILE_NAMES {
        write(repo, name, format!("K={}\n", key.expose()));
    }
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "hostile"]);

    let out = scan(repo, &["--git-history"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    let printed = stdout(&out);
    assert_inert(&printed);
    let commit = run(Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo));
    let commit = stdout(&commit);
    // Both files hold the same blob, found once, at the first name git
    // gives it.
    let line = printed.trim_end();
    assert!(!line.contains('\n'), "{printed:?}");
    assert!(
        HOSTILE_NAMES
            .iter()
            .any(|(_, shown)| line == format!("{}:{shown}:1: {}", commit.trim(), key.redacted())),
        "{printed:?}"
    );
}

/// `size` bytes of text ending in `key` on a line of its own.
fn padded(key: &PlainKey, size: usize) -> String {
    let tail = format!("\n{}\n", key.expose());
    let mut text = "filler line\n".repeat(size / 12 + 1);
    text.truncate(size - tail.len());
    text + &tail
}

#[test]
fn files_above_the_size_limit_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let key = PlainKey::generate(KeyKind::Project);
    // The default limit is 10 MB: one byte more is skipped.
    write(dir.path(), "dump/huge.sql", padded(&key, 10_000_001));
    let fits = padded(&key, 10_000_000);
    // The key is on the last line.
    let line = fits.matches('\n').count();
    write(dir.path(), "dump/fits.sql", fits);

    let out = scan(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("dump/fits.sql:{line}: {}\n", key.redacted())
    );
    assert!(
        err.contains(
            "warning: skipped ./dump/huge.sql (10000001 bytes, above --max-file-size 10 MB); to search it, rerun with --max-file-size 11MB"
        ),
        "{err}"
    );
    assert!(
        err.contains("1 above 10 MB skipped): 1 key(s) found in the files searched; the skipped ones were not searched"),
        "{err}"
    );

    // A smaller limit skips both: nothing found, but not passed as clean
    // in silence.
    let out = scan(dir.path(), &["--max-file-size", "1KB"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "");
    assert!(
        err.contains("skipped ./dump/fits.sql (10 MB, above --max-file-size 1 KB)"),
        "{err}"
    );
    assert!(err.contains("skipped ./dump/huge.sql"), "{err}");
    assert!(err.contains("Searched 0 files"), "{err}");
    assert!(err.contains("2 above 1 KB skipped"), "{err}");

    // A larger one searches both.
    let out = scan(dir.path(), &["--json", "--max-file-size", "11MB"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 2);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));

    let out = scan(dir.path(), &["--max-file-size", "lots"]);
    assert_eq!(code(&out), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`lots` is not a size") && err.contains("e.g. 10MB"),
        "{err}"
    );
}

#[test]
fn history_blobs_above_the_size_limit_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let key = PlainKey::generate(KeyKind::Project);
    git(repo, &["init", "-q"]);
    write(repo, "data/export.csv", padded(&key, 3_000));
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "export"]);
    git(repo, &["rm", "-q", "data/export.csv"]);
    git(repo, &["commit", "-q", "-m", "gone"]);
    let first = run(Command::new("git")
        .args(["rev-list", "--max-parents=0", "HEAD"])
        .current_dir(repo));
    let first = stdout(&first);

    let out = scan(repo, &["--git-history", "--max-file-size", "2KiB"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert!(
        err.contains(&format!(
            "warning: skipped {}:data/export.csv (3 KB, above --max-file-size 2 KiB)",
            first.trim()
        )),
        "{err}"
    );
    assert!(err.contains("1 above 2 KiB skipped"), "{err}");

    let out = scan(repo, &["--git-history"]);
    assert_eq!(code(&out), Some(1), "{out:?}");
}
