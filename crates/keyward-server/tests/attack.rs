//! Attacks on the rules of `docs/authorization.md`, each tried from outside
//! against the real binary: keys made by keys that try to grow past their
//! makers, change keys they did not make, outlive their makers or spend
//! around them; keys without the `keys` scope that manage keys anyway; a key
//! used from outside its IP allow-list; numbers out of range; reservations
//! that ignore `n`; a client that hangs up to dodge metering; a member who
//! keeps their keys after leaving; a late commit the change feed skips; and
//! an exposure report that notifies twice.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use common::browser::{shown_secret, Browser};
use common::{create_key, id, ids, key_path, keys_path, ok, secret, Reply, Server, PASSWORD};
use keyward_core::time::now_unix;
use reqwest::StatusCode;
use serde_json::{json, Value};

// ------------------------------------------------------------- harness

/// How long the model `slow` of [`upstream`] takes to answer.
const SLOW: Duration = Duration::from_millis(1500);

/// An OpenAI-compatible upstream in the test process: every chat completion
/// uses 10 prompt and 20 completion tokens; `slow` answers after [`SLOW`].
/// Also returns how many calls it has received.
fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/v1/chat/completions",
                post(move |Json(body): Json<Value>| async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if body["model"] == "slow" {
                        tokio::time::sleep(SLOW).await;
                    }
                    Json(json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
                    }))
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), calls)
}

/// A server whose models `m` and `slow` are served by `upstream`, both at
/// $1000 per million tokens either way (one call of 30 tokens: $0.03) and
/// at most 1000 output tokens.
fn gateway_on(upstream: SocketAddr) -> Server {
    Server::start_with_config(
        &format!(
            r#"
[[upstreams]]
name = "fake"
base_url = "http://{upstream}/v1"
timeout = "5s"

[[models]]
id = "m"
upstream = "fake"
input_price_per_mtok = 1000.0
output_price_per_mtok = 1000.0
max_output_tokens = 1000

[[models]]
id = "slow"
upstream = "fake"
input_price_per_mtok = 1000.0
output_price_per_mtok = 1000.0
max_output_tokens = 1000
"#
        ),
        &[],
    )
}

fn gateway() -> Server {
    gateway_on(upstream().0)
}

/// An operator account: its admin key and its Default project.
fn owner(s: &Server) -> (String, String) {
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    (admin, project)
}

/// A chat call on `m` with `max_tokens: 20`, changed by `changes`: each of
/// its fields replaces the default's, and `null` removes it.
fn chat_with(s: &Server, key: &str, changes: Value) -> Reply {
    s.post("/v1/chat/completions", key, chat_body(changes))
}

fn chat_body(changes: Value) -> Value {
    let mut body = json!({
        "model": "m",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    });
    for (k, v) in changes.as_object().expect("changes are an object") {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

fn chat(s: &Server, key: &str) -> Reply {
    chat_with(s, key, json!({}))
}

/// Every key of a project, revoked ones included.
fn all_keys(s: &Server, admin: &str, project: &str) -> Value {
    ok(s.get(
        &format!("{}?include_revoked=true&limit=100", keys_path(project)),
        admin,
    ))
}

fn key_count(s: &Server, admin: &str, project: &str) -> usize {
    ids(&all_keys(s, admin, project)).len()
}

/// Whether an error's `param` names `field`: exactly, or as part of a path
/// (`rate_limits.requests_per_minute` is named by `requests_per_minute`,
/// by `rate_limits` and by itself; `allowed_ips` by `allowed_ips[1]`).
fn names(r: &Reply, field: &str) -> bool {
    let param = r.body["error"]["param"].as_str().unwrap_or("");
    let first = field.split('.').next().unwrap();
    let last = field.rsplit('.').next().unwrap();
    param == field
        || param == first
        || param == last
        || param.ends_with(&format!(".{last}"))
        || param.starts_with(&format!("{field}["))
        || param.starts_with(&format!("{field}."))
}

fn is_invalid(r: &Reply, field: &str) -> bool {
    r.status == 400 && r.body["error"]["type"] == "invalid_request_error" && names(r, field)
}

fn assert_insufficient(r: &Reply, what: &str) {
    assert_eq!(
        r.status, 401,
        "{what}: expected 401 insufficient_permissions, got {}",
        r.body
    );
    assert_eq!(
        r.body["error"]["code"], "insufficient_permissions",
        "{what}: {}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("keys."),
        "{what}: the message should name the missing keys scope: {}",
        r.body
    );
    assert!(r.body.get("value").is_none(), "{what}: {}", r.body);
}

fn assert_invalid_key(r: &Reply, what: &str) {
    assert_eq!(
        r.status, 401,
        "{what}: expected 401 invalid_api_key, got {}",
        r.body
    );
    assert_eq!(
        r.body["error"]["code"], "invalid_api_key",
        "{what}: {}",
        r.body
    );
}

fn assert_insufficient_quota(r: &Reply, what: &str) {
    assert_eq!(
        r.status, 429,
        "{what}: expected 429 insufficient_quota, got {}",
        r.body
    );
    assert_eq!(
        r.body["error"]["code"], "insufficient_quota",
        "{what}: {}",
        r.body
    );
}

/// Checks that go on after a failure, so that one run lists every hole.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn invalid(&mut self, r: &Reply, field: &str, what: &str) {
        if !is_invalid(r, field) || r.body.get("value").is_some() {
            self.0.push(format!(
                "{what}: expected 400 invalid_request_error naming `{field}`, got {} {}",
                r.status, r.body
            ));
        }
    }

    fn status(&mut self, r: &Reply, status: u16, what: &str) {
        if r.status != status {
            self.0.push(format!(
                "{what}: expected {status}, got {} {}",
                r.status, r.body
            ));
        }
    }

    fn check(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if !holds {
            self.0.push(what());
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// The endpoint groups of a key's permissions.
const GROUPS: [&str; 5] = ["models", "chat_completions", "embeddings", "usage", "keys"];

/// A key's access to `group` as docs/authorization.md tabulates it:
/// 0 none, 1 read, 2 write.
fn access(permissions: &Value, group: &str) -> u8 {
    match permissions["mode"].as_str() {
        Some("all") => match group {
            "keys" => 0,
            "usage" => 1,
            _ => 2,
        },
        Some("read_only") => u8::from(group != "keys"),
        Some("restricted") => match permissions[group].as_str() {
            Some("write") => 2,
            Some("read") => 1,
            _ => 0,
        },
        other => panic!("unknown permissions mode {other:?} in {permissions}"),
    }
}

/// The first group on which `child` reaches further than `parent`.
fn broader_group(child: &Value, parent: &Value) -> Option<&'static str> {
    GROUPS
        .into_iter()
        .find(|g| access(child, g) > access(parent, g))
}

/// Polls `f` until it holds or `limit` has passed.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ------------------------------------------------- delegation only narrows

/// Permissions of a maker that may make keys and read models.
fn maker_permissions() -> Value {
    json!({"mode": "restricted", "keys": "write", "models": "read"})
}

#[test]
fn a_key_made_by_a_key_copies_every_bound_of_its_maker_it_is_not_given() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let expires_at = now_unix() + 3600;
    let parent = create_key(
        &s,
        &admin,
        &project,
        json!({
            "name": "maker",
            "permissions": maker_permissions(),
            "allowed_ips": ["127.0.0.0/8"],
            "monthly_budget_usd": 1,
            "expires_at": expires_at,
            "rate_limits": {"requests_per_minute": 10},
        }),
    );
    assert_eq!(parent["expires_at"], expires_at);
    let maker = secret(&parent);

    let check = |child: &Value, what: &str| {
        assert_eq!(
            child["allowed_ips"],
            json!(["127.0.0.0/8"]),
            "{what}: allowed_ips not copied: {child}"
        );
        assert_eq!(
            child["monthly_budget_usd"].as_f64(),
            Some(1.0),
            "{what}: budget not copied: {child}"
        );
        assert_eq!(
            child["expires_at"], parent["expires_at"],
            "{what}: expiry not copied: {child}"
        );
        assert_eq!(
            child["rate_limits"], parent["rate_limits"],
            "{what}: rate limits not copied: {child}"
        );
        assert_eq!(
            child["rate_limits"]["requests_per_minute"], 10,
            "{what}: {child}"
        );
        assert_eq!(child["allowed_models"], parent["allowed_models"], "{what}");
        assert_eq!(
            broader_group(&child["permissions"], &parent["permissions"]),
            None,
            "{what}: permissions broader than the maker's: {child}"
        );
        assert_eq!(child["created_by"], id(&parent).as_str(), "{what}: {child}");
        // Stored as shown.
        let stored = ok(s.get(&key_path(&project, &id(child)), &admin));
        for field in [
            "permissions",
            "allowed_ips",
            "allowed_models",
            "expires_at",
            "rate_limits",
            "monthly_budget_usd",
        ] {
            assert_eq!(stored[field], child[field], "{what}: stored {field}");
        }
    };

    // Only permissions given: every other bound is the maker's.
    let r = s.post(
        &keys_path(&project),
        &maker,
        json!({"name": "given permissions", "permissions": maker_permissions()}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    check(&r.body, "child given only permissions");

    // Nothing given at all: the permissions are copied too (not `all`).
    let r = s.post(&keys_path(&project), &maker, json!({}));
    assert_eq!(
        r.status, 200,
        "a key-made key with an empty body should copy its maker's settings: {}",
        r.body
    );
    check(&r.body, "child of {}");
    assert_eq!(r.body["permissions"], parent["permissions"], "{}", r.body);
}

#[test]
fn a_key_cannot_make_a_key_wider_than_itself_in_any_dimension() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let expires_at = now_unix() + 3600;
    let parent = create_key(
        &s,
        &admin,
        &project,
        json!({
            "name": "maker",
            "permissions": maker_permissions(),
            "allowed_models": ["m"],
            "allowed_ips": ["127.0.0.0/8"],
            "monthly_budget_usd": 1,
            "expires_at": expires_at,
            "rate_limits": {"requests_per_minute": 10},
        }),
    );
    let maker = secret(&parent);
    let before = key_count(&s, &admin, &project);

    // Each asks for one dimension wider and gives the maker's permissions,
    // so that nothing else differs.
    let with = |field: &str, value: Value| {
        let mut body = json!({"name": "wider", "permissions": maker_permissions()});
        body[field] = value;
        body
    };
    let cases = [
        (
            json!({"permissions": {"mode": "restricted", "keys": "write", "models": "read", "chat_completions": "write"}}),
            "permissions",
        ),
        (json!({"permissions": {"mode": "all"}}), "permissions"),
        (
            with("allowed_models", json!(["m", "slow"])),
            "allowed_models",
        ),
        (with("allowed_ips", json!(["0.0.0.0/0"])), "allowed_ips"),
        (
            with("allowed_ips", json!(["127.0.0.1/32", "10.0.0.0/8"])),
            "allowed_ips",
        ),
        (with("allowed_ips", json!(["::/0"])), "allowed_ips"),
        (with("expires_at", json!(expires_at + 60)), "expires_at"),
        (
            with("rate_limits", json!({"requests_per_minute": 11})),
            "rate_limits.requests_per_minute",
        ),
        (with("monthly_budget_usd", json!(2)), "monthly_budget_usd"),
        (
            with("monthly_budget_usd", json!(1.000001)),
            "monthly_budget_usd",
        ),
    ];
    let mut findings = Findings::default();
    for (body, field) in cases {
        let r = s.post(&keys_path(&project), &maker, body.clone());
        findings.invalid(&r, field, &format!("create {body}"));
    }
    let after = key_count(&s, &admin, &project);
    findings.check(after == before, || {
        format!("refused creates stored keys: {before} keys before, {after} after")
    });
    findings.assert_none();

    // Equal bounds are not wider.
    let r = s.post(
        &keys_path(&project),
        &maker,
        json!({
            "name": "equal",
            "permissions": maker_permissions(),
            "allowed_models": ["m"],
            "allowed_ips": ["127.0.0.1/32"],
            "monthly_budget_usd": 1,
            "expires_at": expires_at,
            "rate_limits": {"requests_per_minute": 10},
        }),
    );
    assert_eq!(r.status, 200, "bounds equal to the maker's: {}", r.body);
}

#[test]
fn a_key_cannot_widen_itself_but_may_narrow_itself() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let expires_at = now_unix() + 3600;
    let key = create_key(
        &s,
        &admin,
        &project,
        json!({
            "name": "self",
            "permissions": maker_permissions(),
            "allowed_ips": ["127.0.0.0/8"],
            "monthly_budget_usd": 1,
            "expires_at": expires_at,
            "rate_limits": {"requests_per_minute": 10},
        }),
    );
    let k = secret(&key);
    let own = key_path(&project, &id(&key));
    let before = ok(s.get(&own, &admin));

    let cases = [
        (json!({"allowed_ips": null}), "allowed_ips"),
        (json!({"allowed_ips": ["0.0.0.0/0"]}), "allowed_ips"),
        (json!({"monthly_budget_usd": null}), "monthly_budget_usd"),
        (json!({"monthly_budget_usd": 5}), "monthly_budget_usd"),
        (json!({"expires_at": null}), "expires_at"),
        (json!({"expires_at": expires_at + 3600}), "expires_at"),
        (
            json!({"rate_limits": null}),
            "rate_limits.requests_per_minute",
        ),
        (
            json!({"rate_limits": {"requests_per_minute": null}}),
            "rate_limits.requests_per_minute",
        ),
        (
            json!({"rate_limits": {"requests_per_minute": 20}}),
            "rate_limits.requests_per_minute",
        ),
        (
            json!({"permissions": {"mode": "restricted", "keys": "write", "models": "write"}}),
            "permissions",
        ),
    ];
    let mut findings = Findings::default();
    for (body, field) in cases {
        let r = s.post(&own, &k, body.clone());
        findings.invalid(&r, field, &format!("update itself with {body}"));
        let now = ok(s.get(&own, &admin));
        findings.check(now == before, || {
            format!("after {body} the key is changed:\n  before {before}\n  after  {now}")
        });
    }
    findings.assert_none();

    // Narrowing is fine.
    let r = s.post(&own, &k, json!({"monthly_budget_usd": 0.5}));
    assert_eq!(r.status, 200, "narrowing its own budget: {}", r.body);
    assert_eq!(
        r.body["monthly_budget_usd"].as_f64(),
        Some(0.5),
        "{}",
        r.body
    );
    let r = s.post(&own, &k, json!({"rate_limits": {"requests_per_minute": 5}}));
    assert_eq!(r.status, 200, "narrowing its own rate limit: {}", r.body);
    let now = ok(s.get(&own, &admin));
    assert_eq!(now["monthly_budget_usd"].as_f64(), Some(0.5), "{now}");
    assert_eq!(now["rate_limits"]["requests_per_minute"], 5, "{now}");
    assert_eq!(now["allowed_ips"], before["allowed_ips"], "{now}");
    assert_eq!(now["expires_at"], before["expires_at"], "{now}");
}

#[test]
fn a_key_cannot_update_rotate_or_revoke_keys_it_did_not_make() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let narrow = json!({"mode": "restricted", "models": "read"});
    let writer = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "writer", "permissions": maker_permissions()}),
    );
    let w = secret(&writer);
    // A sibling made by the admin, no broader than the writer.
    let sibling = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "sibling", "permissions": narrow}),
    );
    // A cousin: made by another key-writing key.
    let other_writer = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "other writer", "permissions": maker_permissions()}),
    );
    let cousin = create_key(
        &s,
        &secret(&other_writer),
        &project,
        json!({"name": "cousin", "permissions": narrow}),
    );
    let own_child = create_key(
        &s,
        &w,
        &project,
        json!({"name": "own child", "permissions": narrow}),
    );

    for (label, target) in [
        ("sibling", &sibling),
        ("cousin", &cousin),
        ("other writer", &other_writer),
    ] {
        let path = key_path(&project, &id(target));
        let before = ok(s.get(&path, &admin));
        assert_insufficient(
            &s.post(
                &path,
                &w,
                json!({"name": "hijacked", "allowed_ips": ["192.0.2.0/24"]}),
            ),
            &format!("update the {label}"),
        );
        assert_insufficient(
            &s.post(
                &format!("{path}/rotate"),
                &w,
                json!({"grace_period_seconds": 0}),
            ),
            &format!("rotate the {label}"),
        );
        assert_insufficient(&s.delete(&path, &w), &format!("revoke the {label}"));
        assert_eq!(
            ok(s.get(&path, &admin)),
            before,
            "the {label} was changed by a key that did not make it"
        );
        let r = s.get("/v1/models", &secret(target));
        assert_eq!(r.status, 200, "the {label} stopped working: {}", r.body);
    }

    // Its own child and itself it may change.
    let r = s.post(
        &key_path(&project, &id(&own_child)),
        &w,
        json!({"name": "renamed child"}),
    );
    assert_eq!(r.status, 200, "rename its own child: {}", r.body);
    let r = s.post(
        &key_path(&project, &id(&writer)),
        &w,
        json!({"name": "renamed itself"}),
    );
    assert_eq!(r.status, 200, "rename itself: {}", r.body);
}

#[test]
fn all_and_read_only_keys_cannot_touch_keys_but_all_keys_read_usage_and_call_models() {
    let s = gateway();
    let (admin, project) = owner(&s);
    let target = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "target", "permissions": {"mode": "restricted", "models": "read"}}),
    );
    let all = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "all", "permissions": {"mode": "all"}}),
    );
    let read_only = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "read only", "permissions": {"mode": "read_only"}}),
    );
    let before = all_keys(&s, &admin, &project);
    let tp = key_path(&project, &id(&target));

    for (mode, key) in [("all", secret(&all)), ("read_only", secret(&read_only))] {
        assert_insufficient(
            &s.get(&keys_path(&project), &key),
            &format!("{mode} lists keys"),
        );
        assert_insufficient(&s.get(&tp, &key), &format!("{mode} retrieves a key"));
        assert_insufficient(
            &s.post(
                &keys_path(&project),
                &key,
                json!({"name": "made", "permissions": {"mode": "restricted", "models": "read"}}),
            ),
            &format!("{mode} creates a key"),
        );
        assert_insufficient(
            &s.post(&tp, &key, json!({"name": "renamed"})),
            &format!("{mode} updates a key"),
        );
        assert_insufficient(
            &s.post(
                &format!("{tp}/rotate"),
                &key,
                json!({"grace_period_seconds": 0}),
            ),
            &format!("{mode} rotates a key"),
        );
        assert_insufficient(&s.delete(&tp, &key), &format!("{mode} revokes a key"));
    }
    assert_eq!(
        all_keys(&s, &admin, &project),
        before,
        "keys changed by keys without the keys scope"
    );
    assert_eq!(s.get("/v1/models", &secret(&target)).status, 200);

    // What `all` does cover.
    let start = now_unix() - 3600;
    let a = secret(&all);
    let r = s.get(
        &format!("/v1/organization/usage/completions?start_time={start}"),
        &a,
    );
    assert_eq!(r.status, 200, "an all key reads usage: {}", r.body);
    let r = s.get(&format!("/v1/organization/costs?start_time={start}"), &a);
    assert_eq!(r.status, 200, "an all key reads costs: {}", r.body);
    let r = chat(&s, &a);
    assert_eq!(r.status, 200, "an all key calls a model: {}", r.body);
    let r = s.get(
        &format!("/v1/organization/usage/completions?start_time={start}"),
        &secret(&read_only),
    );
    assert_eq!(r.status, 200, "a read-only key reads usage: {}", r.body);
}

// ------------------------------------------------ a child dies with its maker

/// A chain of keys, each made by the one before; the first by the admin.
/// Every key may call models; all but the last may make keys, the last may
/// read them.
fn lineage(s: &Server, admin: &str, project: &str, depth: usize) -> Vec<Value> {
    let mut chain: Vec<Value> = Vec::new();
    for i in 0..depth {
        let keys = if i + 1 == depth { "read" } else { "write" };
        let maker = chain.last().map_or(admin.to_owned(), secret);
        chain.push(create_key(
            s,
            &maker,
            project,
            json!({
                "name": format!("generation {i}"),
                "permissions": {"mode": "restricted", "keys": keys, "chat_completions": "write"},
            }),
        ));
    }
    chain
}

/// The key works, on the gateway and on the management API.
fn assert_alive(s: &Server, project: &str, key: &str, what: &str) {
    let r = chat(s, key);
    assert_eq!(r.status, 200, "{what} calls a model: {}", r.body);
    let r = s.get(&keys_path(project), key);
    assert_eq!(r.status, 200, "{what} lists keys: {}", r.body);
}

fn assert_dead(s: &Server, project: &str, key: &str, what: &str) {
    assert_invalid_key(&chat(s, key), &format!("{what} calls a model"));
    assert_invalid_key(
        &s.get(&keys_path(project), key),
        &format!("{what} lists keys"),
    );
}

#[test]
fn a_key_made_by_a_key_dies_with_any_key_above_it() {
    let s = gateway();
    let (admin, project) = owner(&s);

    // The maker revoked by the admin.
    let chain = lineage(&s, &admin, &project, 2);
    let child = secret(&chain[1]);
    assert_alive(&s, &project, &child, "the child");
    ok(s.delete(&key_path(&project, &id(&chain[0])), &admin));
    assert_dead(&s, &project, &child, "a child whose maker was revoked");

    // The maker reported exposed.
    let chain = lineage(&s, &admin, &project, 2);
    let child = secret(&chain[1]);
    assert_alive(&s, &project, &child, "the child");
    let r = s.call(
        "POST",
        "/v1/keys/report",
        None,
        Some(json!({"keys": [secret(&chain[0])], "source": "attack test"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["label"], "true_positive", "{}", r.body);
    assert_dead(
        &s,
        &project,
        &child,
        "a child whose maker was reported exposed",
    );

    // The grandchild, when the top is revoked.
    let chain = lineage(&s, &admin, &project, 3);
    let grandchild = secret(&chain[2]);
    assert_alive(&s, &project, &grandchild, "the grandchild");
    assert_eq!(chat(&s, &secret(&chain[1])).status, 200);
    ok(s.delete(&key_path(&project, &id(&chain[0])), &admin));
    assert_dead(
        &s,
        &project,
        &grandchild,
        "a grandchild whose top was revoked",
    );
    assert_invalid_key(
        &chat(&s, &secret(&chain[1])),
        "the middle key whose maker was revoked",
    );
}

// ------------------------------------------- a child spends against its maker

#[test]
fn keys_made_by_a_key_spend_and_are_rate_limited_against_their_maker() {
    let s = gateway();
    let (admin, project) = owner(&s);
    let maker_permissions =
        json!({"mode": "restricted", "keys": "write", "chat_completions": "write"});
    let caller_permissions = json!({"mode": "restricted", "chat_completions": "write"});

    // Budget: the maker has $0.05; each child has $0.05 of its own.
    let maker = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "maker", "permissions": maker_permissions, "monthly_budget_usd": 0.05}),
    );
    let child = || {
        secret(&create_key(
            &s,
            &secret(&maker),
            &project,
            json!({"permissions": caller_permissions, "monthly_budget_usd": 0.05}),
        ))
    };
    let (a, b) = (child(), child());
    // A spends until its own budget stops it: $0.03 a call, so at least
    // $0.03 and (with the one call the book lets overshoot) at most $0.06.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = chat(&s, &a);
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert_insufficient_quota(&r, "child A over its own budget");
            break;
        }
        assert_eq!(r.status, 200, "child A: {}", r.body);
    }
    assert_eq!(
        statuses.last(),
        Some(&429),
        "child A never stopped: {statuses:?}"
    );
    assert_eq!(statuses[0], 200, "{statuses:?}");
    // The maker's $0.05 is spent (or cannot fit another call): B, with its
    // own $0.05 untouched, is refused.
    let r = chat(&s, &b);
    assert_insufficient_quota(
        &r,
        &format!("child B after child A spent its maker's budget (A's calls: {statuses:?})"),
    );

    // Rate: the maker allows 2 requests a minute, smoothed to one per 30 s
    // (a burst of ceil(2/60) = 1); so does each child. One call from each
    // child makes two for the maker within 30 s.
    let maker = create_key(
        &s,
        &admin,
        &project,
        json!({
            "name": "rate maker",
            "permissions": maker_permissions,
            "rate_limits": {"requests_per_minute": 2},
        }),
    );
    let child = || {
        secret(&create_key(
            &s,
            &secret(&maker),
            &project,
            json!({"permissions": caller_permissions, "rate_limits": {"requests_per_minute": 2}}),
        ))
    };
    let (a, b) = (child(), child());
    let r = chat(&s, &a);
    assert_eq!(r.status, 200, "child A's first call: {}", r.body);
    let r = chat(&s, &b);
    assert_eq!(
        r.status, 429,
        "child B's first call, the maker's second within its 30 s interval: {}",
        r.body
    );
    assert_eq!(r.body["error"]["code"], "rate_limit_exceeded", "{}", r.body);
}

// --------------------------------------------------------- IP allow-lists

#[test]
fn a_key_outside_its_ip_allow_list_is_refused_on_management_routes_too() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let key = create_key(
        &s,
        &admin,
        &project,
        json!({
            "name": "elsewhere",
            "permissions": {"mode": "restricted", "keys": "write", "usage": "read", "models": "read"},
            "allowed_ips": ["203.0.113.0/24"],
        }),
    );
    let k = secret(&key);
    let before = key_count(&s, &admin, &project);
    let start = now_unix() - 3600;
    let attempts = [
        ("list keys", s.get(&keys_path(&project), &k)),
        ("retrieve itself", s.get(&key_path(&project, &id(&key)), &k)),
        (
            "create a key",
            s.post(
                &keys_path(&project),
                &k,
                json!({"permissions": {"mode": "restricted", "usage": "read"}}),
            ),
        ),
        (
            "usage",
            s.get(
                &format!("/v1/organization/usage/completions?start_time={start}"),
                &k,
            ),
        ),
        (
            "costs",
            s.get(&format!("/v1/organization/costs?start_time={start}"), &k),
        ),
        ("notifications", s.get("/v1/organization/notifications", &k)),
        ("models", s.get("/v1/models", &k)),
    ];
    let mut findings = Findings::default();
    for (what, r) in &attempts {
        findings.check(
            r.status == 403 && r.body["error"]["code"] == "ip_not_allowed",
            || {
                format!(
                    "{what} from 127.0.0.1: expected 403 ip_not_allowed, got {} {}",
                    r.status, r.body
                )
            },
        );
    }
    let after = key_count(&s, &admin, &project);
    findings.check(after == before, || {
        format!("a key outside its allow-list created keys: {before} before, {after} after")
    });
    findings.assert_none();
}

// ------------------------------------------------------------ numbers

#[test]
fn numbers_out_of_range_are_refused_with_400_naming_the_param() {
    let s = gateway();
    let (admin, project) = owner(&s);
    let key = create_key(&s, &admin, &project, json!({"name": "caller"}));
    let k = secret(&key);
    let mut findings = Findings::default();

    // Usage and costs: a client that gives up after 5 s, so that a server
    // busy with a huge range shows as a finding, not a hung test.
    let patient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let get = |path: &str| -> Result<Reply, String> {
        let started = Instant::now();
        let resp = patient
            .get(format!("{}{path}", s.base))
            .bearer_auth(&admin)
            .send()
            .map_err(|e| format!("{path}: no answer after {:?}: {e}", started.elapsed()))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap_or_default();
        Ok(Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        })
    };
    let start = now_unix() - 3600;
    for endpoint in [
        "/v1/organization/usage/completions",
        "/v1/organization/costs",
    ] {
        let cases = [
            (
                "start_time=9223372036854775000&end_time=9223372036854775807".to_owned(),
                "start_time",
            ),
            ("start_time=9223372036854775000".to_owned(), "start_time"),
            ("start_time=253402300800".to_owned(), "start_time"),
            ("start_time=-1".to_owned(), "start_time"),
            ("start_time=-9223372036854775808".to_owned(), "start_time"),
            ("start_time=1000&end_time=500".to_owned(), "end_time"),
            ("start_time=0&end_time=253402300800".to_owned(), "end_time"),
            (format!("start_time={start}&limit=0"), "limit"),
            (format!("start_time={start}&limit=100000"), "limit"),
            (format!("start_time={start}&limit=-1"), "limit"),
            (format!("start_time={start}&page=-1"), "page"),
            (
                format!("start_time={start}&page=9223372036854775807"),
                "page",
            ),
        ];
        for (query, field) in cases {
            let path = format!("{endpoint}?{query}");
            match get(&path) {
                Ok(r) => findings.invalid(&r, field, &format!("GET {path}")),
                Err(e) => findings.0.push(e),
            }
        }
        match get(&format!("{endpoint}?start_time={start}")) {
            Ok(r) => findings.status(&r, 200, &format!("GET {endpoint} in range")),
            Err(e) => findings.0.push(e),
        }
    }
    let path =
        format!("/v1/organization/usage/completions?start_time={start}&bucket_width=1m&limit=1441");
    match get(&path) {
        Ok(r) => findings.invalid(&r, "limit", &format!("GET {path}")),
        Err(e) => findings.0.push(e),
    }
    let alive = patient
        .get(format!("{}/healthz", s.base))
        .send()
        .map(|r| r.status());
    findings.check(matches!(alive, Ok(StatusCode::OK)), || {
        format!("/healthz after the usage queries: {alive:?}")
    });

    // Model calls: `m` produces at most 1000 output tokens.
    for field in ["max_tokens", "max_completion_tokens"] {
        for bad in [
            json!(9223372036854775807u64),
            json!(18446744073709551615u64),
            json!(0),
            json!(-1),
            json!(1001),
            json!(1e30),
        ] {
            let r = chat_with(&s, &k, json!({"max_tokens": null, field: bad}));
            findings.invalid(&r, field, &format!("chat with {field}: {bad}"));
        }
        let r = chat_with(&s, &k, json!({"max_tokens": null, field: 1000}));
        findings.status(&r, 200, &format!("chat with {field}: 1000"));
    }
    for bad in [
        json!(0),
        json!(-1),
        json!(129),
        json!(1e30),
        json!(u64::MAX),
    ] {
        let r = chat_with(&s, &k, json!({"n": bad}));
        findings.invalid(&r, "n", &format!("chat with n: {bad}"));
    }
    for good in [1, 128] {
        let r = chat_with(&s, &k, json!({"n": good}));
        findings.status(&r, 200, &format!("chat with n: {good}"));
    }
    for body in [
        json!({"model": "m", "prompt": "hi", "max_tokens": 20, "best_of": 0}),
        json!({"model": "m", "prompt": "hi", "max_tokens": 20, "best_of": 21}),
        json!({"model": "m", "prompt": "hi", "max_tokens": 20, "best_of": 1e30}),
        json!({"model": "m", "prompt": "hi", "max_tokens": 20, "n": 3, "best_of": 2}),
    ] {
        let r = s.post("/v1/completions", &k, body.clone());
        findings.invalid(&r, "best_of", &format!("completion {body}"));
    }

    // Keys.
    let count = key_count(&s, &admin, &project);
    let mut create = |body: Value, field: &str| {
        let r = s.post(&keys_path(&project), &admin, body.clone());
        findings.invalid(&r, field, &format!("create a key with {body}"));
    };
    for bad in [json!(1e300), json!(-1), json!(-0.01), json!(1_000_000_001)] {
        create(json!({"monthly_budget_usd": bad}), "monthly_budget_usd");
    }
    for limit in [
        "requests_per_minute",
        "tokens_per_minute",
        "max_concurrent_requests",
    ] {
        for bad in [json!(-5), json!(0), json!(1e20), json!(1_000_000_001)] {
            create(
                json!({"rate_limits": {limit: bad}}),
                &format!("rate_limits.{limit}"),
            );
        }
    }
    for bad in [
        json!(9223372036854775807i64),
        json!(-1),
        json!(now_unix() - 10),
        json!(now_unix() + 11 * 366 * 86_400),
    ] {
        create(json!({"expires_at": bad}), "expires_at");
    }
    let after = key_count(&s, &admin, &project);
    findings.check(after == count, || {
        format!("refused creates stored keys: {count} before, {after} after")
    });
    let kp = key_path(&project, &id(&key));
    for bad in [json!(9223372036854775807i64), json!(-1), json!(604_801)] {
        let r = s.post(
            &format!("{kp}/rotate"),
            &admin,
            json!({"grace_period_seconds": bad}),
        );
        findings.invalid(
            &r,
            "grace_period_seconds",
            &format!("rotate with grace {bad}"),
        );
    }
    for bad in [json!(-5), json!(1e20)] {
        let r = s.post(
            &kp,
            &admin,
            json!({"rate_limits": {"requests_per_minute": bad}}),
        );
        findings.invalid(
            &r,
            "rate_limits.requests_per_minute",
            &format!("update a key's rpm to {bad}"),
        );
    }
    for limit in [0, 101] {
        let r = s.get(&format!("{}?limit={limit}", keys_path(&project)), &admin);
        findings.invalid(&r, "limit", &format!("list keys with limit={limit}"));
    }
    findings.check(chat(&s, &k).status == 200, || {
        "the key stopped working after refused rotations".into()
    });

    // Projects.
    let pp = format!("/v1/organization/projects/{project}");
    for (body, field) in [
        (
            json!({"rate_limits": {"requests_per_minute": -5}}),
            "rate_limits.requests_per_minute",
        ),
        (
            json!({"rate_limits": {"tokens_per_minute": 1e20}}),
            "rate_limits.tokens_per_minute",
        ),
        (json!({"monthly_budget_usd": -1}), "monthly_budget_usd"),
        (json!({"monthly_budget_usd": 1e300}), "monthly_budget_usd"),
    ] {
        let r = s.post(&pp, &admin, body.clone());
        findings.invalid(&r, field, &format!("update the project with {body}"));
    }
    findings.assert_none();
}

// ---------------------------------------------------- reservations and metering

#[test]
fn n_multiplies_the_budget_reservation() {
    let (addr, calls) = upstream();
    let s = Arc::new(gateway_on(addr));
    let (admin, project) = owner(&s);
    // $0.20: room for several calls of 8 prompt + 20 output tokens ($0.028
    // reserved, $0.03 spent each; four are made here), none for 64 choices
    // of 20 tokens ($1.28).
    let key = secret(&create_key(
        &s,
        &admin,
        &project,
        json!({"name": "budgeted", "monthly_budget_usd": 0.2}),
    ));
    // A first call, alone: it waits for the prompt tokenizer to be built.
    let r = chat(&s, &key);
    assert_eq!(r.status, 200, "{}", r.body);
    // With nothing else in flight the book admits any call while budget is
    // left (so spend overshoots by at most one call); a slow call held in
    // flight makes the worst case decide.
    let holder = {
        let (s, key) = (s.clone(), key.clone());
        std::thread::spawn(move || chat_with(&s, &key, json!({"model": "slow"})))
    };
    assert!(
        within(Duration::from_secs(2), || calls.load(Ordering::SeqCst) == 2),
        "the slow call never reached the upstream"
    );

    let r = chat_with(&s, &key, json!({"n": 1}));
    assert_eq!(r.status, 200, "n: 1 fits the budget: {}", r.body);
    let r = chat_with(&s, &key, json!({"n": 64}));
    let held = !holder.is_finished();
    assert_insufficient_quota(
        &r,
        "n: 64 with max_tokens 20 reserves 1280 output tokens ($1.28) against $0.20",
    );
    assert!(
        held,
        "inconclusive: the slow call ended before the n: 64 call was decided"
    );
    let r = chat_with(&s, &key, json!({"n": 1}));
    assert_eq!(
        r.status, 200,
        "n: 1 still fits after the refusal: {}",
        r.body
    );
    let r = holder.join().unwrap();
    assert_eq!(r.status, 200, "the slow call: {}", r.body);
}

/// A project's rows of the usage ledger, oldest first: `[status,
/// prompt_tokens, completion_tokens, cost_micros]`, read from the server's
/// database (the usage API does not show statuses).
fn ledger(s: &Server, project: &str) -> Vec<[i64; 4]> {
    const SQL: &str = "SELECT CAST(status AS BIGINT), CAST(prompt_tokens AS BIGINT), \
         CAST(completion_tokens AS BIGINT), CAST(cost_micros AS BIGINT) FROM usage_ledger \
         WHERE project_id = $1 ORDER BY seq";
    runtime().block_on(async {
        use sqlx::{Connection, Row};
        match s.db.url() {
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                let rows = sqlx::query(SQL)
                    .bind(project)
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| std::array::from_fn(|i| r.get::<i64, _>(i)))
                    .collect()
            }
            None => {
                let file = s.data_dir.path().join("keyward.db");
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                        .await
                        .unwrap();
                let rows = sqlx::query(SQL)
                    .bind(project)
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| std::array::from_fn(|i| r.get::<i64, _>(i)))
                    .collect()
            }
        }
    })
}

fn usage_totals(page: &Value) -> (i64, i64, i64) {
    let mut totals = (0, 0, 0);
    for bucket in page["data"].as_array().expect("a page of buckets") {
        for r in bucket["results"].as_array().unwrap() {
            totals.0 += r["num_model_requests"].as_i64().unwrap_or(0);
            totals.1 += r["input_tokens"].as_i64().unwrap_or(0);
            totals.2 += r["output_tokens"].as_i64().unwrap_or(0);
        }
    }
    totals
}

#[test]
fn a_client_that_leaves_before_the_answer_is_still_metered_and_charged() {
    let (addr, calls) = upstream();
    let s = gateway_on(addr);
    let (admin, project) = owner(&s);
    // $0.02 is less than one call ($0.028 reserved, $0.03 spent): the first
    // call is admitted only as the one call a budget may overshoot by, and
    // once it is charged nothing is left.
    let key = secret(&create_key(
        &s,
        &admin,
        &project,
        json!({"name": "impatient", "monthly_budget_usd": 0.02}),
    ));
    // A call of another project first: it waits for the prompt tokenizer
    // to be built, which would otherwise outlast the impatient client.
    let other = ok(s.post(
        "/v1/organization/projects",
        &admin,
        json!({"name": "warm-up"}),
    ));
    let warm = create_key(
        &s,
        &admin,
        other["id"].as_str().unwrap(),
        json!({"monthly_budget_usd": 1}),
    );
    assert_eq!(chat(&s, &secret(&warm)).status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let start = now_unix() - 60;
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let left = impatient
        .post(format!("{}/v1/chat/completions", s.base))
        .bearer_auth(&key)
        .json(&chat_body(json!({"model": "slow"})))
        .send();
    match left {
        Err(e) => assert!(e.is_timeout(), "the client should time out: {e}"),
        Ok(r) => panic!(
            "the client should have given up before the upstream answered, got {} {:?}",
            r.status(),
            r.text()
        ),
    }
    assert!(
        within(Duration::from_secs(1), || calls.load(Ordering::SeqCst) == 2),
        "the call never reached the upstream"
    );
    // The upstream answers 1.5 s after the call; give the gateway time to
    // settle either way.
    std::thread::sleep(SLOW + Duration::from_millis(1500));

    let path = format!(
        "/v1/organization/usage/completions?start_time={start}&bucket_width=1m&project_ids[]={project}"
    );
    let mut usage = (0, 0, 0);
    within(Duration::from_secs(3), || {
        usage = usage_totals(&ok(s.get(&path, &admin)));
        usage.0 > 0
    });
    let rows = ledger(&s, &project);
    assert_eq!(
        usage.0, 1,
        "the call the client left is not in the usage (requests, input, output: {usage:?}); ledger rows [status, prompt, completion, cost]: {rows:?}"
    );
    assert!(usage.2 > 0, "no output tokens metered: {usage:?}");
    let costs = ok(s.get(
        &format!("/v1/organization/costs?start_time={start}&project_ids[]={project}"),
        &admin,
    ));
    let spent: f64 = costs["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap().clone())
        .map(|r| r["amount"]["value"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(spent > 0.0, "no cost recorded: {costs}");
    assert_eq!(rows.len(), 1, "ledger rows: {rows:?}");
    let [status, prompt, completion, cost] = rows[0];
    assert_eq!(status, 499, "the ledger row's status: {rows:?}");
    assert!(prompt > 0 && completion > 0 && cost > 0, "{rows:?}");

    // The budget was charged: nothing is left for another call.
    let r = chat(&s, &key);
    assert_insufficient_quota(&r, "a call after the left call spent the budget");
}

// -------------------------------------------------------------- membership

#[test]
fn removing_a_member_revokes_their_keys_in_that_project_at_once() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let owners_key = create_key(&s, &admin, &project, json!({"name": "owner's"}));
    let mut owner_browser = Browser::new(&s);
    let page = owner_browser.log_in("owner@example.com", PASSWORD);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let link = owner_browser.invite(&project, "member@example.com", "member");
    let mut member = Browser::new(&s);
    member.join(&link);

    let page = member.create_key(&project, "member's key");
    assert_eq!(page.status, 200, "{}", page.body);
    let member_key = shown_secret(&page);
    assert_eq!(s.get("/v1/models", &member_key).status, 200);

    // The member's user id and key id, as the owner sees them.
    let keys = all_keys(&s, &admin, &project);
    let listed = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["owner"]["user"]["email"] == "member@example.com")
        .unwrap_or_else(|| panic!("the member's key is not listed: {keys}"))
        .clone();
    let member_id = listed["owner"]["user"]["id"].as_str().unwrap().to_owned();
    let key_id = id(&listed);
    let page = owner_browser.get(&format!("/projects?project={project}"));
    let remove = format!("/projects/{project}/members/{member_id}/remove");
    assert!(page.body.contains(&remove), "{}", page.body);

    let page = owner_browser.post(&remove, &[("csrf_token", &page.csrf())]);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

    assert_invalid_key(
        &s.get("/v1/models", &member_key),
        "a removed member's key right after the removal",
    );
    let r = s.get("/v1/models", &secret(&owners_key));
    assert_eq!(r.status, 200, "the owner's key: {}", r.body);
    let listed = ok(s.get(&key_path(&project, &key_id), &admin));
    assert!(listed["revoked_at"].is_i64(), "{listed}");
    assert_eq!(listed["revoke_reason"], "member_removed", "{listed}");
    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.revoked&limit=100",
        &admin,
    ));
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["target"]["id"] == key_id.as_str()),
        "no audit entry for the revoked key: {audit}"
    );

    // Coming back does not bring the key back.
    let link = owner_browser.invite(&project, "member@example.com", "member");
    let page = member.accept(&link);
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_invalid_key(
        &s.get("/v1/models", &member_key),
        "a removed member's key after they were added again",
    );
}

// ------------------------------------------------------------- change feed

/// A second `keyward serve` on the same database as another server.
struct Replica {
    child: Child,
    base: String,
    _data_dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn start(database_url: &str) -> Replica {
        let data_dir = tempfile::tempdir().unwrap();
        let config = data_dir.path().join("keyward.toml");
        std::fs::write(&config, "").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyward"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("RUST_LOG", "info")
            .env("KEYWARD_DATABASE_URL", database_url)
            .env("KEYWARD_LOCAL_MODEL__ENABLED", "false");
        let common::Spawned { child, base, logs } = common::spawn(&mut cmd);
        Replica {
            child,
            base,
            _data_dir: data_dir,
            logs,
        }
    }

    fn models(&self, key: &str) -> StatusCode {
        reqwest::blocking::Client::new()
            .get(format!("{}/v1/models", self.base))
            .bearer_auth(key)
            .send()
            .expect("request to the second server")
            .status()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_revocation_committed_after_a_later_change_still_reaches_another_replica() {
    let s = Server::start();
    let Some(url) = s.db.url().map(str::to_owned) else {
        eprintln!("skipped: needs PostgreSQL (set KEYWARD_TEST_DATABASE_URL)");
        return;
    };
    let (admin, project) = owner(&s);
    let replica = Replica::start(&url);
    let key = create_key(&s, &admin, &project, json!({"name": "cached on B"}));
    let k = secret(&key);
    assert_eq!(replica.models(&k), 200, "B serves the key (and caches it)");
    // Another key B caches, whose revocation shows when B's feed has read it.
    let witness = create_key(&s, &admin, &project, json!({"name": "witness"}));
    assert_eq!(replica.models(&secret(&witness)), 200);

    // Revoke the key in a transaction held open, as a slow writer would:
    // its audit row takes its sequence number now.
    let rt = runtime();
    let mut conn = rt.block_on(async {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute("BEGIN").await.unwrap();
        let now = now_unix();
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1, revoked_by = 'cli', revoke_reason = 'admin', revoke_note = NULL \
             WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id(&key))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, \
             project_id, owner_id, details, source_ip, created_at) \
             VALUES ($1, 'cli', NULL, 'api_key.revoked', 'api_key', $2, $3, $4, $5, NULL, $6)",
        )
        .bind(keyward_core::AuditId::generate().to_string())
        .bind(id(&key))
        .bind(&project)
        .bind(key["owner"]["user"]["id"].as_str().unwrap())
        .bind(
            json!({"reason": "admin", "note": null, "redacted_value": key["redacted_value"]})
                .to_string(),
        )
        .bind(now)
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    });

    // A later change commits first: the witness revoked through A. B's
    // feed reads it (today's feed then moves its cursor past the held
    // revocation's number; a feed that waits at the gap may not refuse the
    // witness yet, and that is fine).
    ok(s.delete(&key_path(&project, &id(&witness)), &admin));
    let passed = within(Duration::from_secs(3), || {
        replica.models(&secret(&witness)) == 401
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        replica.models(&k),
        200,
        "the held revocation is not committed yet"
    );
    rt.block_on(async {
        use sqlx::Executor;
        conn.execute("COMMIT").await.unwrap();
    });

    let mut last = StatusCode::OK;
    let refused = within(Duration::from_secs(2), || {
        last = replica.models(&k);
        last == 401
    });
    let logs = {
        let lines = replica.logs.lock().unwrap();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    assert!(
        refused,
        "B still serves a key revoked 2 s ago (last answer {last}; B had {} the later revocation before the commit); the end of its log:\n{logs}",
        if passed { "applied" } else { "not yet applied" }
    );
    assert_eq!(s.get("/v1/models", &k).status, 401, "A refuses it too");
}

// ---------------------------------------------------------------- exposure

/// Sends `n` reports of `key` at once, each on a connection opened
/// beforehand, as scanners racing each other would; the first lists the
/// key twice. Returns the replies.
fn racing_reports(s: &Server, key: &str, n: usize) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (base, key, barrier) = (s.base.clone(), key.to_owned(), barrier.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let health = client.get(format!("{base}/healthz")).send().unwrap();
                assert_eq!(health.status(), 200);
                let keys = if i == 0 {
                    json!([key, key])
                } else {
                    json!([key])
                };
                barrier.wait();
                let resp = client
                    .post(format!("{base}/v1/keys/report"))
                    .json(&json!({
                        "keys": keys,
                        "url": "https://example.com/leak",
                        "source": format!("scanner {i}"),
                    }))
                    .send()
                    .unwrap();
                Reply {
                    status: resp.status(),
                    headers: resp.headers().clone(),
                    body: resp.json().unwrap_or(Value::Null),
                }
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn an_exposure_report_revokes_the_key_and_notifies_its_owner_exactly_once() {
    let s = Server::start();
    let (admin, project) = owner(&s);
    let mut findings = Findings::default();
    for round in 0..4 {
        let key = create_key(
            &s,
            &admin,
            &project,
            json!({"name": format!("leaky {round}")}),
        );
        let k = secret(&key);
        let key_id = id(&key);
        for r in racing_reports(&s, &k, 8) {
            assert_eq!(r.status, 200, "{}", r.body);
            for result in r.body["results"].as_array().unwrap() {
                assert_eq!(result["label"], "true_positive", "{}", r.body);
            }
        }

        let listed = ok(s.get(&key_path(&project, &key_id), &admin));
        assert!(listed["revoked_at"].is_i64(), "{listed}");
        assert_eq!(listed["revoke_reason"], "exposed", "{listed}");
        assert_invalid_key(&s.get("/v1/models", &k), "the reported key");

        let notices = ok(s.get("/v1/organization/notifications?limit=100", &admin));
        let about_key: Vec<&Value> = notices["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["key"]["id"] == key_id.as_str())
            .collect();
        findings.check(about_key.len() == 1, || {
            format!(
                "key {round}: one revocation, {} notices: {:?}",
                about_key.len(),
                about_key.iter().map(|n| &n["message"]).collect::<Vec<_>>()
            )
        });
        findings.check(
            about_key.iter().all(|n| n["type"] == "api_key.exposed"),
            || format!("key {round}: {notices}"),
        );
    }
    let notices = ok(s.get("/v1/organization/notifications?limit=100", &admin));
    let count = ids(&notices).len();
    findings.check(count == 4, || {
        format!("4 keys reported, {count} notices in all")
    });
    findings.assert_none();
}
