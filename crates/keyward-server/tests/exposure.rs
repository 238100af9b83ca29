//! Leaked keys die fast: the public report endpoint, GitHub's secret-scanning
//! partner endpoint (real ECDSA P-256 signatures made here), and the notices
//! the owner gets: in the API, by email (a local SMTP sink) and by webhook.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use common::Server;
use hmac::Mac;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// GitHub's public-keys file: `current` is current, `old` is not.
fn github_keys_file(dir: &std::path::Path, current: &SigningKey, old: &SigningKey) -> String {
    let path = dir.join("github-keys.json");
    let body = json!({"public_keys": [
        {"key_identifier": "current-id", "key": pem(current), "is_current": true},
        {"key_identifier": "old-id", "key": pem(old), "is_current": false},
    ]});
    std::fs::write(&path, body.to_string()).unwrap();
    path.display().to_string()
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let sig: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

fn post_github(
    s: &Server,
    key_id: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> common::Reply {
    let mut req = s
        .client
        .post(format!("{}/v1/secret-scanning/github", s.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(id) = key_id {
        req = req.header("Github-Public-Key-Identifier", id);
    }
    if let Some(sig) = signature {
        req = req.header("Github-Public-Key-Signature", sig);
    }
    let resp = req.send().unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    common::Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// An operator with two fresh project keys: (admin key, project, [(secret, id)]).
fn owner_with_keys(s: &Server) -> (String, String, Vec<(String, String)>) {
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let keys = (0..2)
        .map(|i| {
            let r = s.post(
                &format!("/v1/organization/projects/{project}/api_keys"),
                &admin,
                json!({"name": format!("k{i}")}),
            );
            (
                r.body["value"].as_str().unwrap().to_owned(),
                r.body["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (admin, project, keys)
}

fn works(s: &Server, _project: &str, secret: &str) -> bool {
    let r = s.get("/v1/organization/usage/completions?start_time=0", secret);
    match r.status.as_u16() {
        200 => true,
        401 => false,
        other => panic!("unexpected {other}: {}", r.body),
    }
}

#[test]
fn github_partner_endpoint_verifies_signatures_and_revokes() {
    let current = signing_key(7);
    let old = signing_key(9);
    let dir = tempfile::tempdir().unwrap();
    let file = github_keys_file(dir.path(), &current, &old);
    let s = Server::start_with(&[("KEYWARD_GITHUB_PUBLIC_KEYS_FILE", &file)]);
    let (admin, project, keys) = owner_with_keys(&s);
    let (leaked, leaked_id) = &keys[0];
    let (kept, _) = &keys[1];
    let body = json!([
        {"token": leaked, "type": "keyward_api_key", "url": "https://github.com/someone/repo/blob/main/.env", "source": "content"},
        {"token": "sk-kw-thisisnotarealkeybutlookslikeoneXXXXXXXXXXXXXX", "type": "keyward_api_key", "url": "https://github.com/x", "source": "content"},
    ])
    .to_string();

    // Refusals first: nothing may be revoked by them.
    let tampered = body.replace("content", "commit");
    for (id, sig, payload, status) in [
        (
            Some("current-id"),
            Some(sign(&current, body.as_bytes())),
            tampered.as_bytes(),
            401,
        ),
        (
            Some("unknown-id"),
            Some(sign(&current, body.as_bytes())),
            body.as_bytes(),
            401,
        ),
        (
            Some("old-id"),
            Some(sign(&old, body.as_bytes())),
            body.as_bytes(),
            401,
        ),
        (
            Some("current-id"),
            Some(sign(&old, body.as_bytes())),
            body.as_bytes(),
            401,
        ),
        (
            Some("current-id"),
            Some("bm90IGEgc2lnbmF0dXJl".to_owned()),
            body.as_bytes(),
            401,
        ),
        (Some("current-id"), None, body.as_bytes(), 400),
        (
            None,
            Some(sign(&current, body.as_bytes())),
            body.as_bytes(),
            400,
        ),
    ] {
        let r = post_github(&s, id, sig.as_deref(), payload);
        assert_eq!(r.status.as_u16(), status, "{id:?}: {}", r.body);
        assert!(
            works(&s, &project, leaked),
            "a refused request revoked the key"
        );
    }
    let malformed = b"[{\"token\": ";
    let r = post_github(
        &s,
        Some("current-id"),
        Some(&sign(&current, malformed)),
        malformed,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(works(&s, &project, leaked));

    let r = post_github(
        &s,
        Some("current-id"),
        Some(&sign(&current, body.as_bytes())),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answers = r.body.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0]["label"], "true_positive");
    assert_eq!(answers[0]["token_type"], "keyward_api_key");
    assert_eq!(
        answers[0]["token_hash"],
        keyward_core::KeyHash::of(leaked).to_hex()
    );
    assert_eq!(answers[1]["label"], "false_positive");

    // The next management or gateway call with the leaked key is refused; the other key lives.
    assert!(!works(&s, &project, leaked));
    let r = s.get("/v1/models", leaked);
    assert_eq!(r.status, 401);
    assert!(works(&s, &project, kept));
    let r = s.get(
        &format!("/v1/organization/projects/{project}/api_keys/{leaked_id}"),
        &admin,
    );
    assert_eq!(r.body["revoke_reason"], "exposed");

    // The owner's notice names the key and where it was found.
    let r = s.get("/v1/organization/notifications", &admin);
    assert_eq!(r.status, 200);
    let notice = &r.body["data"][0];
    assert_eq!(notice["type"], "api_key.exposed");
    assert_eq!(notice["key"]["id"], leaked_id.as_str());
    assert_eq!(
        notice["found_at"]["url"],
        "https://github.com/someone/repo/blob/main/.env"
    );
    let message = notice["message"].as_str().unwrap();
    assert!(
        message.contains(&keyward_core::key::redact(leaked))
            && message.contains("github.com/someone/repo"),
        "{message}"
    );
    assert!(
        !r.body.to_string().contains(leaked.as_str()),
        "the notice carries the secret"
    );

    // Reporting it again: still a true positive, no second notice.
    let r = post_github(
        &s,
        Some("current-id"),
        Some(&sign(&current, body.as_bytes())),
        body.as_bytes(),
    );
    assert_eq!(r.body[0]["label"], "true_positive");
    assert_eq!(
        s.get("/v1/organization/notifications", &admin).body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn anyone_holding_a_key_can_report_it() {
    let s = Server::start_with(&[("KEYWARD_SECRET_SCANNING__REPORTS_PER_MINUTE_PER_IP", "4")]);
    let (admin, project, keys) = owner_with_keys(&s);
    let (leaked, _) = &keys[0];
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": [leaked, "sk-kw-nope"], "url": "https://pastebin.example/abc", "source": "a kind stranger"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["label"], "true_positive");
    assert_eq!(
        r.body["results"][0]["token_hash"],
        keyward_core::KeyHash::of(leaked).to_hex()
    );
    assert_eq!(r.body["results"][1]["label"], "false_positive");
    assert!(!works(&s, &project, leaked));
    assert!(works(&s, &project, &keys[1].0));
    let notices = s.get("/v1/organization/notifications", &admin).body;
    assert_eq!(notices["data"][0]["found_at"]["source"], "a kind stranger");

    for (body, param) in [
        (json!({"keys": []}), "keys"),
        (json!({"keys": "sk-kw-x"}), "keys"),
        (json!({"key": ["x"]}), "key"),
    ] {
        let r = s.call("POST", "/v1/keys/report", None, Some(body));
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["error"]["param"], param);
    }
    // Four per minute from one address, malformed ones included: the fifth is refused.
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": ["sk-kw-x"]})),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
}

/// A minimal SMTP server that accepts one session and returns what it received.
fn smtp_sink() -> (u16, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(String::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut out = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let _ = out.write_all(b"220 sink ESMTP\r\n");
            let mut in_data = false;
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let reply: &[u8] = if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        b"250 queued\r\n"
                    } else {
                        sink.lock().unwrap().push_str(&line);
                        b""
                    }
                } else {
                    let cmd = line.to_ascii_uppercase();
                    sink.lock().unwrap().push_str(&line);
                    if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if cmd.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = out.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        b"250 ok\r\n"
                    }
                };
                let _ = out.write_all(reply);
                line.clear();
            }
        }
    });
    (port, received)
}

/// Webhook deliveries seen: (body, signature header).
type Deliveries = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP endpoint that records webhook bodies and their signature header.
fn webhook_sink() -> (String, Deliveries) {
    let seen: Deliveries = Arc::default();
    let store = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/hook",
                post(move |headers: HeaderMap, body: String| {
                    let store = store.clone();
                    async move {
                        let sig = headers
                            .get("x-keyward-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        store.lock().unwrap().push((body, sig.to_owned()));
                        "ok"
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}/hook", rx.recv().unwrap()), seen)
}

#[test]
fn the_owner_is_told_by_email_and_webhook() {
    let (smtp_port, mail) = smtp_sink();
    let (hook_url, hooks) = webhook_sink();
    let config = format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "Keyward <keyward@example.com>"
security = "none"

[webhook]
url = "{hook_url}"
secret_env = "TEST_WEBHOOK_SECRET"
"#
    );
    let s = Server::start_with_config(&config, &[("TEST_WEBHOOK_SECRET", "hook-secret-123")]);
    let (_, _, keys) = owner_with_keys(&s);
    let (leaked, leaked_id) = &keys[0];
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": [leaked], "url": "https://example.com/leak"})),
    );
    assert_eq!(r.status, 200);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (mail.lock().unwrap().is_empty() || hooks.lock().unwrap().is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Undo quoted-printable soft line breaks before reading the text.
    let mail = mail
        .lock()
        .unwrap()
        .replace("=\r\n", "")
        .replace("=3D", "=");
    assert!(mail.contains("RCPT TO:<owner@example.com>"), "{mail}");
    assert!(mail.contains("exposed"), "{mail}");
    assert!(mail.contains(&keyward_core::key::redact(leaked)), "{mail}");
    assert!(mail.contains("https://example.com/leak"), "{mail}");
    assert!(
        !mail.contains(leaked.as_str()),
        "the email carries the secret"
    );

    let hooks = hooks.lock().unwrap().clone();
    let (body, signature) = &hooks[0];
    // t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">, made just now.
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("not t=…,v1=…: {signature}"));
    let age = keyward_core::time::now_unix() - t.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "signed {age} s ago");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret-123").unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["type"], "api_key.exposed");
    assert_eq!(payload["details"]["key"]["id"], leaked_id.as_str());
    assert!(!body.contains(leaked.as_str()));
}

#[test]
fn the_github_endpoint_is_throttled_per_address_before_its_signature_is_checked() {
    let current = signing_key(7);
    let dir = tempfile::tempdir().unwrap();
    let file = github_keys_file(dir.path(), &current, &signing_key(9));
    let s = Server::start_with(&[
        ("KEYWARD_GITHUB_PUBLIC_KEYS_FILE", &file),
        (
            "KEYWARD_SECRET_SCANNING__GITHUB_REQUESTS_PER_MINUTE_PER_IP",
            "3",
        ),
    ]);
    let body = b"[]";
    // Three a minute from one address, badly signed ones included.
    let r = post_github(&s, Some("current-id"), Some("bm90IGEgc2lnbmF0dXJl"), body);
    assert_eq!(r.status, 401, "{}", r.body);
    for _ in 0..2 {
        let r = post_github(&s, Some("current-id"), Some(&sign(&current, body)), body);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = post_github(&s, Some("current-id"), Some(&sign(&current, body)), body);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
    assert!(r.headers.contains_key("retry-after"));
    // The public report endpoint has a budget of its own.
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": ["sk-kw-x"]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `tests/readme/webhook_receiver.py`: a receiver that checks deliveries
/// with README.md's snippet, as README shows it.
struct ReadmeReceiver {
    child: std::process::Child,
    port: u16,
    /// What it received: `{"signature", "body", "accepted"}` per POST.
    seen: Arc<Mutex<Vec<Value>>>,
}

impl ReadmeReceiver {
    /// Listens on `port` (0: any free one), checking with `secret`.
    fn start(secret: &str, port: u16) -> ReadmeReceiver {
        Self::start_slow(secret, port, 0.0)
    }

    /// Like [`ReadmeReceiver::start`], answering each POST after `delay` seconds.
    fn start_slow(secret: &str, port: u16, delay: f64) -> ReadmeReceiver {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = std::process::Command::new("python3")
            .arg(root.join("tests/readme/webhook_receiver.py"))
            .arg(root.join("../../README.md"))
            .arg(secret)
            .arg(port.to_string())
            .arg(delay.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the README's webhook receiver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the receiver did not start: {first:?}"));
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        ReadmeReceiver { child, port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits up to `secs` for the `n`-th request to arrive.
    fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while self.seen.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.seen.lock().unwrap().clone()
    }

    /// Posts `body` with `signature` as if `ahead` seconds had passed; the status.
    fn replay(&self, signature: &str, body: &str, ahead: u64) -> u16 {
        reqwest::blocking::Client::new()
            .post(self.url("/hook"))
            .header("x-keyward-signature", signature)
            .header("x-test-clock-ahead", ahead.to_string())
            .body(body.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for ReadmeReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook_config(url: &str) -> String {
    format!(
        r#"
[webhook]
url = "{url}"
secret_env = "TEST_WEBHOOK_SECRET"

[notices]
retry_first = "1s"
"#
    )
}

#[test]
fn a_receiver_running_the_readme_snippet_accepts_deliveries_and_refuses_old_replays() {
    let secret = "whsec-readme-5mins";
    let receiver = ReadmeReceiver::start(secret, 0);
    let s = Server::start_with_config(
        &webhook_config(&receiver.url("/hook")),
        &[("TEST_WEBHOOK_SECRET", secret)],
    );
    let (_, _, keys) = owner_with_keys(&s);
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": [&keys[0].0], "url": "https://example.com/leak"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = receiver.wait_for(1, 15);
    assert_eq!(seen.len(), 1, "no delivery; keyward's log:\n{}", s.logs());
    let delivery = &seen[0];
    assert_eq!(delivery["accepted"], true, "{delivery}");
    let signature = delivery["signature"].as_str().unwrap();
    let body = delivery["body"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap()["details"]["key"]["id"],
        keys[0].1.as_str()
    );

    // Within five minutes a replay still verifies (drop repeats by `id`)…
    assert_eq!(receiver.replay(signature, body, 0), 200);
    assert_eq!(receiver.replay(signature, body, 290), 200);
    // …after them it is refused, and so is any change to the body or the time.
    assert_eq!(receiver.replay(signature, body, 301), 400);
    assert_eq!(
        receiver.replay(signature, &body.replace("leak", "lake"), 0),
        400
    );
    let (t, v1) = signature.split_once(',').unwrap();
    let moved = t.trim_start_matches("t=").parse::<i64>().unwrap() - 60;
    assert_eq!(receiver.replay(&format!("t={moved},{v1}"), body, 0), 400);
    assert_eq!(receiver.replay("", body, 0), 400);
    // Delivered once, and not again.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(receiver.seen.lock().unwrap().len(), 1 + 6);
}

#[test]
fn a_notice_survives_a_restart_while_its_receiver_is_down() {
    let secret = "whsec-restart";
    // A port nobody listens on yet: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = "T0KEYWARD/B0TEST/xoxSECRETPATH";
    let url = format!("http://127.0.0.1:{port}/services/{token}");
    let mut s =
        Server::start_with_config(&webhook_config(&url), &[("TEST_WEBHOOK_SECRET", secret)]);
    let (admin, _, keys) = owner_with_keys(&s);
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": [&keys[0].0]})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !s.logs().contains("will retry") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let logs = s.logs();
    assert!(logs.contains("notice not delivered"), "{logs}");
    // The log names the receiver by scheme and host only: its path holds a token.
    assert!(logs.contains(&format!("http://127.0.0.1:{port}")), "{logs}");
    assert!(
        !logs.contains("SECRETPATH") && !logs.contains(secret),
        "{logs}"
    );
    let (_, last_error, delivered) = &outbox_rows(&s)[0];
    assert!(!delivered);
    assert!(
        last_error.contains(&format!("http://127.0.0.1:{port}"))
            && !last_error.contains("SECRETPATH"),
        "{last_error}"
    );

    s.stop();
    let receiver = ReadmeReceiver::start(secret, port);
    s.restart();
    let seen = receiver.wait_for(1, 20);
    assert_eq!(
        seen.len(),
        1,
        "no delivery after the restart; log:\n{}",
        s.logs()
    );
    assert_eq!(seen[0]["accepted"], true, "{}", seen[0]);
    let body: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["details"]["key"]["id"], keys[0].1.as_str());
    let listed = s.get("/v1/organization/notifications", &admin).body;
    assert_eq!(body["id"], listed["data"][0]["id"]);
    // Delivered rows are marked: nothing is sent again.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(receiver.seen.lock().unwrap().len(), 1);
    assert!(!s.logs().contains("SECRETPATH"));
    // The outbox row holds the notice, delivered, and no secret: not the
    // key, not the webhook's secret, not its URL's token.
    let rows = outbox_rows(&s);
    assert_eq!(rows.len(), 1);
    let (payload, last_error, delivered) = &rows[0];
    assert!(*delivered, "the delivered row is not marked");
    assert!(payload.contains(&keys[0].1), "{payload}");
    for text in [payload, last_error] {
        for secret in [keys[0].0.as_str(), secret, "SECRETPATH"] {
            assert!(!text.contains(secret), "the outbox holds a secret: {text}");
        }
    }
}

/// Every outbox row in the server's database: (payload, last error, delivered).
fn outbox_rows(s: &Server) -> Vec<(String, String, bool)> {
    let url = match s.db.url() {
        Some(url) => url.to_owned(),
        None => format!(
            "sqlite://{}",
            s.data_dir.path().join("keyward.db").display()
        ),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query(
            "SELECT payload, COALESCE(last_error, '') AS last_error, \
             CAST(CASE WHEN delivered_at IS NULL THEN 0 ELSE 1 END AS BIGINT) AS delivered \
             FROM outbox ORDER BY id",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("payload"),
                r.get("last_error"),
                r.get::<i64, _>("delivered") == 1,
            )
        })
        .collect()
    })
}

#[test]
fn replicas_sharing_a_database_deliver_each_notice_once() {
    let secret = "whsec-replicas";
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let s = Server::start_with_config(&webhook_config(&url), &[("TEST_WEBHOOK_SECRET", secret)]);
    // A second `keyward serve` on the same configuration, data and database.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(s.data_dir.path().join("keyward.toml"))
        .arg("--data-dir")
        .arg(s.data_dir.path())
        .env("RUST_LOG", "info")
        .env("KEYWARD_LOCAL_MODEL__ENABLED", "false")
        .env("TEST_WEBHOOK_SECRET", secret)
        .env_remove("KEYWARD_DATABASE_URL");
    if let Some(db) = s.db.url() {
        cmd.env("KEYWARD_DATABASE_URL", db);
    }
    let mut replica = common::spawn(&mut cmd);

    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let leaked: Vec<String> = (0..6)
        .map(|i| {
            let r = s.post(
                &format!("/v1/organization/projects/{project}/api_keys"),
                &admin,
                json!({"name": format!("k{i}")}),
            );
            r.body["value"].as_str().unwrap().to_owned()
        })
        .collect();
    // Reported while the receiver is down: both replicas find the notices
    // due, and keep retrying them every second or two.
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": leaked})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(std::time::Duration::from_secs(3));
    // A slow receiver: each delivery takes a second, during which the
    // other replica polls the outbox and must leave that row alone.
    let receiver = ReadmeReceiver::start_slow(secret, port, 1.0);
    let seen = receiver.wait_for(6, 30);
    std::thread::sleep(std::time::Duration::from_secs(5));
    let seen_now = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), seen.len(), "a notice was sent again");
    let mut ids: Vec<String> = seen_now
        .iter()
        .map(|d| {
            assert_eq!(d["accepted"], true, "{d}");
            serde_json::from_str::<Value>(d["body"].as_str().unwrap()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (ids.len(), seen_now.len()),
        (6, 6),
        "each of the six notices once"
    );
    let _ = replica.child.kill();
    let _ = replica.child.wait();
}

/// GitHub's key URL, played locally: serves whatever JSON it is given and
/// counts the fetches.
struct FakeGithub {
    url: String,
    published: Arc<Mutex<String>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeGithub {
    fn start(published: Value) -> FakeGithub {
        let published = Arc::new(Mutex::new(published.to_string()));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (body, count) = (published.clone(), fetches.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let app = Router::new().route(
                    "/meta/public_keys/secret_scanning",
                    axum::routing::get(move |headers: HeaderMap| {
                        let (body, count) = (body.clone(), count.clone());
                        async move {
                            // As GitHub's API does.
                            assert!(headers.contains_key("user-agent"));
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let text = body.lock().unwrap().clone();
                            ([("content-type", "application/json")], text)
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeGithub {
            url: format!(
                "http://{}/meta/public_keys/secret_scanning",
                rx.recv().unwrap()
            ),
            published,
            fetches,
        }
    }

    fn publish(&self, keys: Value) {
        *self.published.lock().unwrap() = keys.to_string();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn published(keys: &[(&str, &SigningKey, bool)]) -> Value {
    json!({"public_keys": keys
        .iter()
        .map(|(id, key, current)| json!({"key_identifier": id, "key": pem(key), "is_current": current}))
        .collect::<Vec<_>>()})
}

/// A report of `token` in GitHub's format, signed by `key` as `key_id`.
fn github_report(s: &Server, key_id: &str, key: &SigningKey, token: &str) -> common::Reply {
    let body = json!([{"token": token, "type": "keyward_api_key", "url": "https://github.com/x/y", "source": "content"}])
        .to_string();
    post_github(
        s,
        Some(key_id),
        Some(&sign(key, body.as_bytes())),
        body.as_bytes(),
    )
}

#[test]
fn a_github_key_rotation_is_picked_up_without_a_restart() {
    let (first, second) = (signing_key(21), signing_key(22));
    let github = FakeGithub::start(published(&[("first", &first, true)]));
    let s = Server::start_with(&[(
        "KEYWARD_SECRET_SCANNING__GITHUB_PUBLIC_KEYS_URL",
        &github.url,
    )]);
    let (_, _, keys) = owner_with_keys(&s);
    // Fetched at start, with no file at all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.logs().contains("fetched GitHub's secret-scanning keys")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(github.fetches(), 1, "{}", s.logs());
    let r = github_report(&s, "first", &first, &keys[0].0);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[0]["label"], "true_positive");

    // GitHub rotates: the first key is retired, a second one signs. The
    // first request naming it makes Keyward fetch the list again, once.
    github.publish(published(&[
        ("first", &first, false),
        ("second", &second, true),
    ]));
    let r = github_report(&s, "second", &second, &keys[1].0);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[0]["label"], "true_positive");
    assert_eq!(github.fetches(), 2);
    let r = github_report(&s, "first", &first, &keys[1].0);
    assert_eq!(r.status, 401, "the retired key still signs: {}", r.body);

    // Random key ids do not make Keyward hammer GitHub: one fetch a minute.
    for i in 0..5 {
        let r = github_report(&s, &format!("random-{i}"), &second, &keys[1].0);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_signature");
    }
    assert_eq!(github.fetches(), 2, "fetched again within the minute");
}

#[test]
fn the_key_file_serves_when_github_cannot_be_reached() {
    let current = signing_key(7);
    let dir = tempfile::tempdir().unwrap();
    let file = github_keys_file(dir.path(), &current, &signing_key(9));
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{closed}/meta/public_keys/secret_scanning");
    let s = Server::start_with(&[
        ("KEYWARD_GITHUB_PUBLIC_KEYS_FILE", &file),
        ("KEYWARD_SECRET_SCANNING__GITHUB_PUBLIC_KEYS_URL", &url),
    ]);
    let (_, _, keys) = owner_with_keys(&s);
    let r = github_report(&s, "current-id", &current, &keys[0].0);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = github_report(&s, "unknown-id", &current, &keys[1].0);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        s.logs()
            .contains("cannot refresh GitHub's secret-scanning keys"),
        "{}",
        s.logs()
    );

    // With neither a file nor a reachable GitHub, the endpoint says what to do.
    let bare = Server::start_with(&[("KEYWARD_SECRET_SCANNING__GITHUB_PUBLIC_KEYS_URL", &url)]);
    let r = github_report(&bare, "current-id", &current, &keys[0].0);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("github_public_keys_file"),
        "{}",
        r.body
    );
}
