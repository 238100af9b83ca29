//! No plaintext secret is ever at rest: keys are made every way there is
//! (API and CLI; project and admin keys; rotations with and without grace;
//! revocations), then the database's files (SQLite: the database, its WAL and
//! shared-memory files; PostgreSQL: a `pg_dump`) and the logs are searched
//! for every secret seen. The search is shown to work by finding what *must*
//! be there: each key's redacted value and the SHA-256 of its secret.

mod common;

use std::path::Path;
use std::process::Command;

use common::{create_key, key_path, keys_path, ok, run, Server};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One plaintext secret the test has seen.
struct Seen {
    value: String,
    /// Where it came from, for failure messages.
    origin: String,
    /// Its project (a project key) or `None` (an admin key).
    project: Option<String>,
    /// It still authenticates.
    live: bool,
    /// Its key's current secret: the key row holds its redacted value.
    current: bool,
    /// Its SHA-256 must still be stored (not dropped by a rotation without grace).
    hash_stored: bool,
}

impl Seen {
    fn new(value: &str, origin: &str, project: Option<&str>) -> Seen {
        assert!(
            value.starts_with("sk-kw-") || value.starts_with("sk-kwadmin-"),
            "{origin}: not a secret: {value:?}"
        );
        Seen {
            value: value.to_owned(),
            origin: origin.to_owned(),
            project: project.map(str::to_owned),
            live: true,
            current: true,
            hash_stored: true,
        }
    }

    /// The 40 random characters between the prefix and the checksum.
    fn random_part(&self) -> &str {
        let start = self.value.len() - 46;
        &self.value[start..start + 40]
    }

    fn redacted(&self) -> String {
        let v = &self.value;
        format!("{}...{}", &v[..10], &v[v.len() - 4..])
    }

    fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.value.as_bytes()).into()
    }
}

struct Secrets(Vec<Seen>);

impl Secrets {
    fn add(&mut self, value: &str, origin: &str, project: Option<&str>) -> usize {
        self.0.push(Seen::new(value, origin, project));
        self.0.len() - 1
    }

    /// The secret at `i` was replaced by a rotation with `grace` seconds.
    fn rotated_away(&mut self, i: usize, grace: bool) {
        let s = &mut self.0[i];
        s.current = false;
        s.live = grace;
        s.hash_stored = grace;
    }

    fn revoked(&mut self, i: usize) {
        self.0[i].live = false;
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w[0] == needle[0] && w == needle)
}

/// Every file under `dir`, recursively, as (name, bytes).
fn read_all_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_all_files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

/// A CLI command that must succeed; its stdout. Its stderr is kept in `said`.
fn cli_ok(cmd: &mut Command, said: &mut String) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {err}");
    said.push_str(&err);
    said.push('\n');
    String::from_utf8(out.stdout).unwrap()
}

fn project_id_of(created: &Value) -> String {
    created["id"].as_str().unwrap().to_owned()
}

fn pg_dump(url: &str) -> Vec<u8> {
    let out = Command::new("/usr/bin/pg_dump")
        .args(["--data-only", "--no-owner", "--dbname", url])
        .output()
        .expect("run /usr/bin/pg_dump");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn no_plaintext_secret_in_the_database_files_dumps_or_logs() {
    let mut s = Server::start();
    let mut seen = Secrets(Vec::new());
    let mut cli_stderr = String::new();

    // CLI: the operator's admin key.
    let admin = s.create_operator("owner@example.com");
    seen.add(&admin, "keyward admin create", None);
    let default = s.default_project(&admin);
    let second = project_id_of(&ok(s.post(
        "/v1/organization/projects",
        &admin,
        json!({ "name": "Second" }),
    )));

    // API: project keys of every shape.
    let bodies = [
        json!({ "name": "plain" }),
        json!({ "name": "read only", "permissions": { "mode": "read_only" } }),
        json!({ "name": "expiring", "expires_at": now() + 86_400 }),
        json!({ "name": "limited", "allowed_ips": ["127.0.0.1"], "allowed_models": ["gpt-4o"],
                "rate_limits": { "requests_per_minute": 60 }, "monthly_budget_usd": 5.0 }),
        json!({ "name": "to rotate with grace" }),
        json!({ "name": "to rotate without grace" }),
        json!({ "name": "to revoke" }),
        json!({ "name": "to report" }),
        json!({}),
    ];
    let mut api_keys = Vec::new();
    for (n, body) in bodies.into_iter().enumerate() {
        let project = if n % 3 == 2 { &second } else { &default };
        let k = create_key(&s, &admin, project, body);
        let i = seen.add(
            k["value"].as_str().unwrap(),
            &format!("API create {}", k["name"]),
            Some(project),
        );
        api_keys.push((i, project.clone(), k["id"].as_str().unwrap().to_owned()));
    }

    // API: admin keys.
    let mut admin_key_ids = Vec::new();
    for name in ["automation", "to revoke"] {
        let k = ok(s.post(
            "/v1/organization/admin_api_keys",
            &admin,
            json!({ "name": name }),
        ));
        let i = seen.add(
            k["value"].as_str().unwrap(),
            &format!("API admin key {name}"),
            None,
        );
        admin_key_ids.push((i, k["id"].as_str().unwrap().to_owned()));
    }

    // API: rotations with and without grace (the first twice).
    for (slot, grace) in [(4, 3600), (5, 0), (4, 60)] {
        let (old, project, id) = api_keys[slot].clone();
        let r = ok(s.post(
            &format!("{}/rotate", key_path(&project, &id)),
            &admin,
            json!({ "grace_period_seconds": grace }),
        ));
        seen.rotated_away(old, grace > 0);
        api_keys[slot].0 = seen.add(
            r["value"].as_str().unwrap(),
            &format!("API rotate (grace {grace})"),
            Some(&project),
        );
    }

    // API: revocations of a project key and an admin key.
    let (i, project, id) = &api_keys[6];
    ok(s.delete(&key_path(project, id), &admin));
    seen.revoked(*i);
    let (i, id) = &admin_key_ids[1];
    ok(s.delete(&format!("/v1/organization/admin_api_keys/{id}"), &admin));
    seen.revoked(*i);

    // An exposure report carries a plaintext key in; it is revoked.
    let (i, _, _) = &api_keys[7];
    let reported = seen.0[*i].value.clone();
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({ "keys": [reported], "url": "https://example.com/leak", "source": "test" })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    seen.revoked(*i);

    // CLI: project keys, another operator, rotations.
    let out = cli_ok(
        s.cli().args(["keys", "create", "--name", "cli"]),
        &mut cli_stderr,
    );
    let cli_key = seen.add(out.trim(), "keyward keys create", Some(&default));
    let out = cli_ok(
        s.cli()
            .args(["keys", "create", "--json", "--project", "Second"]),
        &mut cli_stderr,
    );
    let created: Value = serde_json::from_str(&out).unwrap();
    seen.add(
        created["value"].as_str().unwrap(),
        "keyward keys create --json",
        Some(&second),
    );
    let other_admin = s.create_operator("second@example.com");
    seen.add(&other_admin, "keyward admin create (second)", None);

    let cli_key_id = {
        let list: Value = serde_json::from_str(&cli_ok(
            s.cli().args(["keys", "list", "--json"]),
            &mut cli_stderr,
        ))
        .unwrap();
        let redacted = seen.0[cli_key].redacted();
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| k["redacted_value"] == redacted.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let out = cli_ok(
        s.cli()
            .args(["keys", "rotate", &cli_key_id, "--grace", "1h"]),
        &mut cli_stderr,
    );
    seen.rotated_away(cli_key, true);
    seen.add(out.trim(), "keyward keys rotate --grace 1h", Some(&default));
    let (i, project, id) = api_keys[0].clone();
    let out = cli_ok(s.cli().args(["keys", "rotate", &id]), &mut cli_stderr);
    seen.rotated_away(i, false);
    seen.add(out.trim(), "keyward keys rotate", Some(&project));

    // Every secret is used once (so last-used times and any request logging
    // happen), and each works exactly when it should.
    for x in &seen.0 {
        let path = match &x.project {
            Some(_) => "/v1/organization/usage/completions?start_time=0".to_owned(),
            None => "/v1/organization/projects".to_owned(),
        };
        let r = s.get(&path, &x.value);
        let want = if x.live { 200 } else { 401 };
        assert_eq!(
            r.status,
            want,
            "{} ({}): {}",
            x.origin,
            x.redacted(),
            r.body
        );
        if x.project.is_some() {
            let r = s.get("/v1/models", &x.value);
            assert_eq!(r.status, want, "{} on the gateway: {}", x.origin, r.body);
        }
    }
    assert!(seen.0.len() >= 20, "only {} secrets", seen.0.len());
    assert!(seen.0.iter().any(|x| !x.hash_stored));
    assert!(seen.0.iter().any(|x| !x.current && x.hash_stored));

    // What the API shows afterwards (lists, the audit log) holds no secret.
    let mut shown = String::new();
    for p in [&default, &second] {
        shown += &ok(s.get(
            &format!("{}?include_revoked=true&limit=100", keys_path(p)),
            &admin,
        ))
        .to_string();
    }
    for a in [&admin, &other_admin] {
        shown += &ok(s.get("/v1/organization/admin_api_keys?limit=100", a)).to_string();
    }
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/organization/audit_logs?limit=100&after={a}"),
            None => "/v1/organization/audit_logs?limit=100".to_owned(),
        };
        let page = ok(s.get(&path, &admin));
        shown += &page.to_string();
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    for x in seen.0.iter().filter(|x| x.current) {
        assert!(shown.contains(&x.redacted()), "{} is not listed", x.origin);
    }

    // The SQLite files as they are while the server runs (WAL included) ...
    let mut files = Vec::new();
    if s.db.url().is_none() {
        read_all_files(s.data_dir.path(), &mut files);
    }
    s.stop();
    // ... and after a graceful stop.
    let mut stored: Vec<(String, Vec<u8>)> = Vec::new();
    let sqlite = s.db.url().is_none();
    if sqlite {
        let mut after_stop = Vec::new();
        read_all_files(s.data_dir.path(), &mut after_stop);
        assert!(
            after_stop.iter().any(|(n, _)| n.ends_with("keyward.db")),
            "no keyward.db in the data dir"
        );
        assert!(
            files.iter().any(|(n, _)| n.ends_with("keyward.db-wal")),
            "no WAL while the server ran: {:?}",
            files.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        stored.extend(
            files
                .into_iter()
                .map(|(n, b)| (format!("{n} (while running)"), b)),
        );
        stored.extend(
            after_stop
                .into_iter()
                .map(|(n, b)| (format!("{n} (after stop)"), b)),
        );
    } else {
        stored.push((
            "pg_dump --data-only".to_owned(),
            pg_dump(s.db.url().unwrap()),
        ));
    }
    // The whole log, up to the last line of a graceful stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s.logs().contains("keyward stopped") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logs = s.logs();
    assert!(logs.contains("listening on"), "no server log captured");
    assert!(
        logs.contains("keyward stopped"),
        "the server did not stop gracefully:\n{logs}"
    );

    let mut leaks = Vec::new();
    for x in &seen.0 {
        for needle in [x.value.as_str(), x.random_part()] {
            for (name, bytes) in &stored {
                if contains(bytes, needle.as_bytes()) {
                    leaks.push(format!("{} ({}) in {name}", x.origin, x.redacted()));
                }
            }
            for (name, text) in [
                ("the server log", &logs),
                ("the CLI's stderr", &cli_stderr),
                ("API responses", &shown),
            ] {
                if text.contains(needle) {
                    leaks.push(format!("{} ({}) in {name}", x.origin, x.redacted()));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "plaintext secrets at rest:\n{}",
        leaks.join("\n")
    );

    // The search looks in the right places: what must be stored is found there.
    let found = |needle: &[u8]| stored.iter().any(|(_, b)| contains(b, needle));
    for x in &seen.0 {
        if x.current {
            assert!(
                found(x.redacted().as_bytes()),
                "{}: redacted value {} not found in {:?}",
                x.origin,
                x.redacted(),
                stored.iter().map(|(n, _)| n).collect::<Vec<_>>()
            );
        }
        if x.hash_stored {
            let hash = x.sha256();
            let ok = if sqlite {
                found(&hash)
            } else {
                found(format!("\\\\x{}", hex::encode(hash)).as_bytes())
            };
            assert!(
                ok,
                "{} ({}): SHA-256 {} not found in the database",
                x.origin,
                x.redacted(),
                hex::encode(hash)
            );
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
