//! The `keyward` command line end to end: every command runs the real binary
//! on the same store as a running server, and what it prints is checked
//! against what the server then accepts or refuses.

mod common;

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{key_path, keys_path, ok, run, run_with_stdin, Db, Server, PASSWORD};
use serde_json::{json, Value};

const EMAIL: &str = "owner@example.com";
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A data dir and database with nothing in them, and no server.
struct EmptyStore {
    dir: tempfile::TempDir,
    db: Db,
}

impl EmptyStore {
    fn new() -> EmptyStore {
        EmptyStore {
            dir: tempfile::tempdir().unwrap(),
            db: Db::fresh(),
        }
    }

    fn cli(&self) -> Command {
        common::cli_for(self.dir.path().to_path_buf(), self.db.url())
    }
}

/// A server, its operator's admin key and the operator's Default project.
fn setup() -> (Server, String, String) {
    let s = Server::start();
    let admin = s.create_operator(EMAIL);
    let project = s.default_project(&admin);
    (s, admin, project)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command succeeded; its stdout.
fn success(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}; stdout: {}",
        out.status.code(),
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

/// The command failed with exit code 2 and a message on stderr; returns it.
fn usage_error(out: Output) -> String {
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2; stderr: {err}; stdout: {}",
        stdout(&out)
    );
    assert!(!err.trim().is_empty(), "exit 2 without a message on stderr");
    assert!(
        stdout(&out).trim().is_empty(),
        "a failed command printed on stdout: {}",
        stdout(&out)
    );
    err
}

/// CRC-32 (IEEE 802.3), written out here so the format is checked
/// independently of the product's implementation.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base62_6(mut n: u64) -> String {
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).unwrap()
}

/// `prefix` + 40 base62 characters + their 6-character CRC-32 checksum.
fn assert_key_format(key: &str, prefix: &str) {
    assert_eq!(
        key.len(),
        prefix.len() + 46,
        "wrong length {}: {key}",
        key.len()
    );
    let body = key
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{key} does not start with {prefix}"));
    assert!(
        body.bytes().all(|b| ALPHABET.contains(&b)),
        "{key} has characters outside 0-9A-Za-z"
    );
    let (random, check) = body.split_at(40);
    assert_eq!(
        check,
        base62_6(u64::from(crc32(random.as_bytes()))),
        "{key}: the checksum does not match"
    );
}

fn redacted(secret: &str) -> String {
    format!("{}...{}", &secret[..10], &secret[secret.len() - 4..])
}

/// `text` contains neither the secret nor its random part.
fn assert_no_secret(text: &str, secret: &str) {
    let prefix_len = secret.len() - 46;
    let random = &secret[prefix_len..prefix_len + 40];
    assert!(!text.contains(secret), "the secret appears in: {text}");
    assert!(
        !text.contains(random),
        "the secret's random part appears in: {text}"
    );
}

/// The only line of stdout, which must be a project key.
fn single_project_key(out: &str) -> String {
    assert!(out.ends_with('\n'), "stdout does not end a line: {out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stdout, got {out:?}");
    assert_eq!(lines[0], lines[0].trim(), "stray whitespace: {out:?}");
    assert_key_format(lines[0], "sk-kw-");
    assert_eq!(lines[0].len(), 52);
    lines[0].to_owned()
}

fn cli_create(s: &Server, args: &[&str]) -> (String, String) {
    let out = run(s.cli().args(["keys", "create"]).args(args));
    let err = stderr(&out);
    let secret = single_project_key(&success(out));
    assert_no_secret(&err, &secret);
    (secret, err)
}

fn cli_create_json(s: &Server, args: &[&str]) -> Value {
    let out = success(run(s.cli().args(["keys", "create", "--json"]).args(args)));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The key id of the (only) key whose redacted value is `redacted`.
fn id_of(s: &Server, admin: &str, project: &str, secret: &str) -> String {
    let list = ok(s.get(
        &format!("{}?include_revoked=true&limit=100", keys_path(project)),
        admin,
    ));
    let found: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["redacted_value"] == redacted(secret))
        .collect();
    assert_eq!(found.len(), 1, "{list}");
    found[0]["id"].as_str().unwrap().to_owned()
}

/// A management route every `all` key may call (reading usage).
const USAGE: &str = "/v1/organization/usage/completions?start_time=0";

/// The key is accepted by the management API.
fn assert_works(s: &Server, secret: &str, _project: &str) {
    let r = s.get(USAGE, secret);
    assert_eq!(r.status, 200, "a live key was refused: {}", r.body);
}

fn assert_refused(s: &Server, secret: &str, _project: &str) {
    let r = s.get(USAGE, secret);
    assert_eq!(r.status, 401, "a dead key was accepted: {}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_api_key", "{}", r.body);
}

#[test]
fn admin_create_prints_one_admin_key_that_works() {
    let s = Server::start();
    let out = run_with_stdin(
        s.cli()
            .args(["admin", "create", "--email", EMAIL, "--password-stdin"]),
        PASSWORD,
    );
    let err = stderr(&out);
    let printed = success(out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stdout: {printed:?}");
    let admin = lines[0];
    assert_eq!(admin.len(), 57);
    assert_key_format(admin, "sk-kwadmin-");
    assert_no_secret(&err, admin);
    assert!(!err.contains(PASSWORD), "the password was echoed: {err}");

    // It manages the account: the Default project and the admin key itself.
    let projects = ok(s.get("/v1/organization/projects", admin));
    let names: Vec<&str> = projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Default project"], "{projects}");
    let keys = ok(s.get("/v1/organization/admin_api_keys", admin));
    assert_eq!(keys["data"].as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys["data"][0]["redacted_value"], redacted(admin));
    assert_eq!(keys["data"][0]["owner"]["user"]["email"], EMAIL);
    assert_no_secret(&keys.to_string(), admin);

    // A key that was never printed is refused, so the 200s above mean something.
    let r = s.get(
        "/v1/organization/projects",
        "sk-kwadmin-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd0omAup",
    );
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn admin_create_with_a_short_password_exits_2_and_creates_nothing() {
    let store = EmptyStore::new();
    let out = run_with_stdin(
        store
            .cli()
            .args(["admin", "create", "--email", EMAIL, "--password-stdin"]),
        "short",
    );
    let err = usage_error(out);
    assert!(err.contains("password"), "{err}");
    assert!(err.contains("12"), "the message should say how long: {err}");

    // Nothing was half-written: there is still no project to put keys in,
    // and a proper password for the same email works afterwards.
    let err = usage_error(run(store.cli().args(["keys", "create"])));
    assert!(err.contains("keyward admin create"), "{err}");
    let out = run_with_stdin(
        store
            .cli()
            .args(["admin", "create", "--email", EMAIL, "--password-stdin"]),
        PASSWORD,
    );
    let admin = success(out);
    assert_key_format(admin.trim(), "sk-kwadmin-");
}

#[test]
fn admin_create_needs_password_stdin() {
    let store = EmptyStore::new();
    let err = usage_error(run(store.cli().args(["admin", "create", "--email", EMAIL])));
    assert!(err.contains("--password-stdin"), "{err}");
}

#[test]
fn keys_create_prints_the_secret_alone_and_it_authenticates() {
    let (s, admin, project) = setup();
    let (secret, err) = cli_create(&s, &["--name", "ci deploy"]);
    assert!(!err.is_empty(), "expected a note on stderr");
    assert_works(&s, &secret, &project);

    // The server knows it by its name, with the redacted value only.
    let id = id_of(&s, &admin, &project, &secret);
    let key = ok(s.get(&key_path(&project, &id), &admin));
    assert_eq!(key["name"], "ci deploy", "{key}");
    assert_eq!(key["permissions"]["mode"], "all", "{key}");
    assert!(key.get("value").is_none(), "{key}");
    assert_no_secret(&key.to_string(), &secret);
    assert!(err.contains(&id), "stderr should name the key id: {err}");

    // Each call makes a different key.
    let (other, _) = cli_create(&s, &[]);
    assert_ne!(other, secret);
    assert_works(&s, &other, &project);
}

#[test]
fn keys_create_json_has_value_id_and_redacted_value() {
    let (s, admin, project) = setup();
    let created = cli_create_json(&s, &["--name", "json key"]);
    let secret = created["value"].as_str().expect("value").to_owned();
    assert_key_format(&secret, "sk-kw-");
    let id = created["id"].as_str().expect("id");
    assert!(id.starts_with("key_"), "{created}");
    assert_eq!(created["redacted_value"], redacted(&secret), "{created}");
    assert_eq!(created["name"], "json key");
    assert_eq!(created["object"], "organization.project.api_key");
    assert!(created["created_at"].as_i64().unwrap() >= now() - 120);
    assert!(created["expires_at"].is_null(), "{created}");

    assert_works(&s, &secret, &project);
    let key = ok(s.get(&key_path(&project, id), &admin));
    assert_eq!(key["id"], created["id"]);
    assert_eq!(key["redacted_value"], created["redacted_value"]);
}

#[test]
fn keys_create_in_a_project_by_id_and_by_name() {
    let (s, admin, default) = setup();
    let second = ok(s.post(
        "/v1/organization/projects",
        &admin,
        json!({ "name": "Second" }),
    ));
    let second = second["id"].as_str().unwrap().to_owned();

    let by_id = cli_create_json(&s, &["--project", &second]);
    let by_name = cli_create_json(&s, &["--project", "Second"]);
    let default_key = cli_create_json(&s, &[]);
    for (created, project, other) in [
        (&by_id, &second, &default),
        (&by_name, &second, &default),
        (&default_key, &default, &second),
    ] {
        let id = created["id"].as_str().unwrap();
        let secret = created["value"].as_str().unwrap();
        assert_eq!(ok(s.get(&key_path(project, id), &admin))["id"], id);
        let r = s.get(&key_path(other, id), &admin);
        assert_eq!(
            r.status, 404,
            "key {id} is in the wrong project: {}",
            r.body
        );
        assert_works(&s, secret, project);
        // A project key reaches its own project only.
        let r = s.get(&keys_path(other), secret);
        assert_eq!(r.status, 404, "{}", r.body);
    }

    let err = usage_error(run(s.cli().args([
        "keys",
        "create",
        "--project",
        "No Such Project",
    ])));
    assert!(err.contains("No Such Project"), "{err}");
    let err = usage_error(run(s.cli().args([
        "keys",
        "create",
        "--project",
        "proj_000000000000000000000000",
    ])));
    assert!(err.contains("proj_000000000000000000000000"), "{err}");
    // Neither mistake created a key.
    let list = ok(s.get(&format!("{}?limit=100", keys_path(&second)), &admin));
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn keys_create_expires_in() {
    let (s, admin, project) = setup();
    let before = now();
    let created = cli_create_json(&s, &["--expires-in", "30d"]);
    let after = now();
    let expires = created["expires_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no expires_at: {created}"));
    assert!(
        expires >= before + 30 * 86_400 && expires <= after + 30 * 86_400,
        "expires_at {expires} is not 30 days after {before}..{after}"
    );
    assert_works(&s, created["value"].as_str().unwrap(), &project);
    let stored = ok(s.get(&key_path(&project, created["id"].as_str().unwrap()), &admin));
    assert_eq!(stored["expires_at"], expires);

    let (plain, _) = cli_create(&s, &["--expires-in", "12h"]);
    let id = id_of(&s, &admin, &project, &plain);
    let stored = ok(s.get(&key_path(&project, &id), &admin));
    let expires = stored["expires_at"].as_i64().unwrap();
    assert!((expires - (now() + 12 * 3600)).abs() <= 120, "{stored}");

    let err = usage_error(run(s.cli().args([
        "keys",
        "create",
        "--expires-in",
        "banana",
    ])));
    assert!(err.contains("--expires-in"), "{err}");
    assert!(err.contains("banana"), "{err}");
    assert!(
        err.contains("30d") && err.contains("duration"),
        "the message should show the duration format: {err}"
    );
    // Expiring now, or a name over 256 characters, is a mistake too.
    let err = usage_error(run(s.cli().args(["keys", "create", "--expires-in", "0"])));
    assert!(err.contains("future"), "{err}");
    let long = "x".repeat(257);
    let err = usage_error(run(s.cli().args(["keys", "create", "--name", &long])));
    assert!(err.contains("256"), "{err}");
    let list = ok(s.get(&format!("{}?limit=100", keys_path(&project)), &admin));
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn keys_list_shows_keys_redacted_never_secret() {
    let (s, admin, project) = setup();
    let (first, _) = cli_create(&s, &["--name", "first key"]);
    let (second, _) = cli_create(&s, &["--name", "second key"]);
    let first_id = id_of(&s, &admin, &project, &first);
    let second_id = id_of(&s, &admin, &project, &second);

    let table = success(run(s.cli().args(["keys", "list"])));
    for (secret, id, name) in [
        (&first, &first_id, "first key"),
        (&second, &second_id, "second key"),
    ] {
        assert_no_secret(&table, secret);
        let line = table
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} is not listed:\n{table}"));
        assert!(line.contains(&redacted(secret)), "{line}");
        assert!(line.contains(name), "{line}");
        assert!(line.contains("active"), "{line}");
    }
    // Newest first.
    let at = |id: &str| table.find(id).unwrap();
    assert!(at(&second_id) < at(&first_id), "{table}");

    let json = success(run(s.cli().args(["keys", "list", "--json"])));
    assert_no_secret(&json, &first);
    assert_no_secret(&json, &second);
    let listed: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let listed = listed.as_array().unwrap_or_else(|| panic!("{listed}"));
    let ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second_id.as_str(), first_id.as_str()]);
    for k in listed {
        assert!(k.get("value").is_none(), "{k}");
        let r = k["redacted_value"].as_str().unwrap();
        assert!(r == redacted(&first) || r == redacted(&second), "{k}");
    }

    // A revoked key leaves the list, and comes back, marked, on request.
    success(run(s.cli().args(["keys", "revoke", &first_id])));
    let table = success(run(s.cli().args(["keys", "list"])));
    assert!(!table.contains(&first_id), "{table}");
    assert!(table.contains(&second_id), "{table}");
    let table = success(run(s.cli().args(["keys", "list", "--include-revoked"])));
    let line = table.lines().find(|l| l.contains(&first_id)).unwrap();
    assert!(line.contains("revoked"), "{line}");
    assert_no_secret(&table, &first);
}

#[test]
fn keys_revoke_stops_the_key_at_the_server_and_is_idempotent() {
    let (s, admin, project) = setup();
    let (secret, _) = cli_create(&s, &[]);
    let (bystander, _) = cli_create(&s, &[]);
    let id = id_of(&s, &admin, &project, &secret);
    assert_works(&s, &secret, &project);

    let out = run(s.cli().args(["keys", "revoke", &id]));
    let err = stderr(&out);
    success(out);
    assert!(err.contains(&id), "{err}");
    assert_refused(&s, &secret, &project);
    assert_works(&s, &bystander, &project);
    let key = ok(s.get(&key_path(&project, &id), &admin));
    assert_eq!(key["id"], id.as_str());

    // Again: still fine, still revoked.
    success(run(s.cli().args(["keys", "revoke", &id])));
    assert_refused(&s, &secret, &project);

    let err = usage_error(run(s.cli().args(["keys", "revoke", "not-an-id"])));
    assert!(err.contains("keyward keys list"), "{err}");
    let err = usage_error(run(s.cli().args([
        "keys",
        "revoke",
        "key_000000000000000000000000",
    ])));
    assert!(!err.is_empty());
    assert_works(&s, &bystander, &project);
}

#[test]
fn keys_revoke_reaches_admin_keys() {
    let (s, admin, project) = setup();
    let spare = ok(s.post(
        "/v1/organization/admin_api_keys",
        &admin,
        json!({ "name": "spare" }),
    ));
    let spare_secret = spare["value"].as_str().unwrap();
    assert_eq!(
        ok(s.get(&keys_path(&project), spare_secret))["object"],
        "list"
    );
    success(run(s.cli().args([
        "keys",
        "revoke",
        spare["id"].as_str().unwrap(),
    ])));
    let r = s.get(&keys_path(&project), spare_secret);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_works(&s, &admin, &project);
}

#[test]
fn keys_rotate_with_grace_keeps_both_secrets() {
    let (s, admin, project) = setup();
    let (old, _) = cli_create(&s, &["--name", "rotating"]);
    let id = id_of(&s, &admin, &project, &old);

    let out = run(s.cli().args(["keys", "rotate", &id, "--grace", "1h"]));
    let err = stderr(&out);
    let new = single_project_key(&success(out));
    assert_ne!(new, old);
    assert_no_secret(&err, &new);
    assert_no_secret(&err, &old);
    assert_works(&s, &old, &project);
    assert_works(&s, &new, &project);
    // Same key, new secret.
    let key = ok(s.get(&key_path(&project, &id), &admin));
    assert_eq!(key["redacted_value"], redacted(&new), "{key}");
    assert_eq!(key["name"], "rotating");

    // Without --grace the old secret stops at once.
    let out = run(s.cli().args(["keys", "rotate", &id, "--json"]));
    let rotated: Value = serde_json::from_str(&success(out)).unwrap();
    let newest = rotated["value"].as_str().unwrap();
    assert_key_format(newest, "sk-kw-");
    assert_eq!(rotated["id"], id.as_str());
    assert_eq!(rotated["redacted_value"], redacted(newest));
    assert_refused(&s, &new, &project);
    assert_works(&s, newest, &project);
}

#[test]
fn keys_rotate_refuses_a_grace_over_7_days() {
    let (s, admin, project) = setup();
    let (secret, _) = cli_create(&s, &[]);
    let id = id_of(&s, &admin, &project, &secret);
    let err = usage_error(run(s.cli().args(["keys", "rotate", &id, "--grace", "8d"])));
    assert!(err.contains("7 days") || err.contains("7d"), "{err}");
    let err = usage_error(run(s
        .cli()
        .args(["keys", "rotate", &id, "--grace", "soon"])));
    assert!(err.contains("--grace"), "{err}");
    let err = usage_error(run(s.cli().args(["keys", "rotate", "not-an-id"])));
    assert!(err.contains("keyward keys list"), "{err}");
    // Nothing changed: the secret is the same and still works.
    assert_works(&s, &secret, &project);
    let key = ok(s.get(&key_path(&project, &id), &admin));
    assert_eq!(key["redacted_value"], redacted(&secret));

    // 7 days is allowed.
    let new = single_project_key(&success(run(s
        .cli()
        .args(["keys", "rotate", &id, "--grace", "7d"]))));
    assert_works(&s, &secret, &project);
    assert_works(&s, &new, &project);
}

#[test]
fn migrate_exits_zero_and_is_repeatable() {
    let store = EmptyStore::new();
    for _ in 0..2 {
        let out = run(store.cli().arg("migrate"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    if store.db.url().is_none() {
        assert!(
            store.dir.path().join("keyward.db").exists(),
            "migrate did not create the SQLite database"
        );
    }
    // The schema is usable: an account can be created on it.
    let out = run_with_stdin(
        store
            .cli()
            .args(["admin", "create", "--email", EMAIL, "--password-stdin"]),
        PASSWORD,
    );
    assert_key_format(success(out).trim(), "sk-kwadmin-");

    // And on a store a server is using.
    let (s, _, _) = setup();
    let out = run(s.cli().arg("migrate"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn command_line_mistakes_exit_2() {
    let store = EmptyStore::new();
    for args in [
        &["frobnicate"][..],
        &["keys", "frobnicate"],
        &["keys"],
        &["keys", "list", "--bogus"],
        &["keys", "create", "--expires"],
        &["migrate", "--nope"],
        &["keys", "create", "--permissions", "root"],
    ] {
        let out = run(store.cli().args(args));
        assert_eq!(
            out.status.code(),
            Some(2),
            "keyward {args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).trim().is_empty(), "keyward {args:?}");
    }

    let missing = store.dir.path().join("no-such.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        &["migrate", "--config", missing][..],
        &["keys", "list", "--config", missing],
        &["keys", "create", "--config", missing],
    ] {
        let err = usage_error(run(store.cli().args(args)));
        assert!(err.contains("no-such.toml"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    }
}

#[test]
fn key_commands_on_a_store_without_an_account() {
    let store = EmptyStore::new();
    let err = usage_error(run(store.cli().args(["keys", "create"])));
    assert!(err.contains("keyward admin create"), "{err}");
    let err = usage_error(run(store.cli().args(["keys", "create", "--json"])));
    assert!(err.contains("keyward admin create"), "{err}");
    let err = usage_error(run(store.cli().args(["keys", "list"])));
    assert!(err.contains("keyward admin create"), "{err}");
}
