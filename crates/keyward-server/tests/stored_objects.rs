//! `/v1/files` and `/v1/batches` through the real server, against a fake
//! files upstream in the test process that records every call it gets:
//! uploads, lists from Keyward's table, retrieve, content, delete; two
//! projects that cannot see, touch or batch each other's objects (and whose
//! attempts never reach the upstream); a completed batch billed exactly
//! once; restricted keys; and the 404 of an installation without a files
//! upstream.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::upstream::{form, multipart};
use common::{create_key, ids, ok, secret, Reply, Server};
use serde_json::{json, Value};

/// What the fake upstream holds, and every (method, path) it was sent.
#[derive(Default)]
struct Held {
    files: HashMap<String, (Value, Vec<u8>)>,
    batches: HashMap<String, Value>,
    seen: Vec<(String, String)>,
    next: u32,
}

type Shared = Arc<Mutex<Held>>;

impl Held {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:06}", self.next)
    }
}

fn now() -> i64 {
    keyward_core::time::now_unix()
}

fn missing(what: &str, id: &str) -> Response {
    let error = json!({"error": {"message": format!("No such {what}: {id}"), "type": "invalid_request_error", "param": "id", "code": null}});
    (StatusCode::NOT_FOUND, Json(error)).into_response()
}

/// A batch moves on at each retrieve: validating -> in_progress ->
/// completed (an output file, and 1000 input tokens of which 200 cached,
/// 500 output); cancel makes it cancelling, and the next retrieve cancelled.
fn advance(held: &mut Held, id: &str) {
    let status = held.batches[id]["status"].as_str().unwrap().to_owned();
    match status.as_str() {
        "validating" => held.batches.get_mut(id).unwrap()["status"] = json!("in_progress"),
        "cancelling" => held.batches.get_mut(id).unwrap()["status"] = json!("cancelled"),
        "in_progress" => {
            let out = held.id("file-out");
            let object = json!({"id": out, "object": "file", "bytes": 9, "created_at": now(), "filename": "batch_output.jsonl", "purpose": "batch_output", "status": "processed"});
            held.files
                .insert(out.clone(), (object, b"answers\n\n".to_vec()));
            let b = held.batches.get_mut(id).unwrap();
            b["status"] = json!("completed");
            b["completed_at"] = json!(now());
            b["output_file_id"] = json!(out);
            b["usage"] = json!({"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 200}, "output_tokens": 500, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1500});
        }
        _ => {}
    }
}

fn files_upstream(
    held: &Shared,
    method: Method,
    rest: &[String],
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut held = held.lock().unwrap();
    let shown = ["/v1/files".to_owned()]
        .into_iter()
        .chain(rest.iter().cloned())
        .collect::<Vec<_>>()
        .join("/");
    held.seen.push((method.to_string(), shown));
    match (method.as_str(), rest) {
        ("POST", []) => {
            let parts = form(headers, body);
            let (filename, data) = parts["file"].clone();
            let purpose = String::from_utf8(parts["purpose"].1.clone()).unwrap();
            let id = held.id("file-");
            let object = json!({"id": id, "object": "file", "bytes": data.len(), "created_at": now(), "filename": filename, "purpose": purpose, "status": "processed"});
            held.files.insert(id, (object.clone(), data));
            Json(object).into_response()
        }
        (_, [id, ..]) if !held.files.contains_key(id) => missing("File object", id),
        ("GET", [id]) => Json(held.files[id].0.clone()).into_response(),
        ("GET", [id, c]) if c == "content" => held.files[id].1.clone().into_response(),
        ("DELETE", [id]) => {
            held.files.remove(id);
            Json(json!({"id": id, "object": "file", "deleted": true})).into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn batches_upstream(held: &Shared, method: Method, rest: &[String], body: &[u8]) -> Response {
    let mut held = held.lock().unwrap();
    let shown = ["/v1/batches".to_owned()]
        .into_iter()
        .chain(rest.iter().cloned())
        .collect::<Vec<_>>()
        .join("/");
    held.seen.push((method.to_string(), shown));
    match (method.as_str(), rest) {
        ("POST", []) => {
            let req: Value = serde_json::from_slice(body).unwrap();
            let id = held.id("batch_");
            let batch = json!({"id": id, "object": "batch", "endpoint": req["endpoint"], "input_file_id": req["input_file_id"], "completion_window": "24h", "status": "validating", "output_file_id": null, "error_file_id": null, "created_at": now(), "model": "m", "usage": null});
            held.batches.insert(id, batch.clone());
            Json(batch).into_response()
        }
        (_, [id, ..]) if !held.batches.contains_key(id) => missing("Batch object", id),
        ("GET", [id]) => {
            advance(&mut held, id);
            Json(held.batches[id].clone()).into_response()
        }
        ("POST", [id, c]) if c == "cancel" => {
            held.batches.get_mut(id).unwrap()["status"] = json!("cancelling");
            Json(held.batches[id].clone()).into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// Starts the fake; returns its address and what it holds.
fn fake() -> (SocketAddr, Shared) {
    let held = Shared::default();
    let state = held.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            // One wildcard per prefix: `{*rest}` is split into segments below.
            let app = Router::new()
                .route("/v1/files", post(files_root))
                .route("/v1/files/{*rest}", get(files_rest).delete(files_rest))
                .route("/v1/batches", post(batches_root))
                .route("/v1/batches/{*rest}", get(batches_rest).post(batches_rest))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), held)
}

fn segments(rest: &str) -> Vec<String> {
    rest.split('/').map(str::to_owned).collect()
}

async fn files_root(
    State(held): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    files_upstream(&held, method, &[], &headers, &body)
}

async fn files_rest(
    State(held): State<Shared>,
    method: Method,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    files_upstream(&held, method, &segments(&rest), &headers, &body)
}

async fn batches_root(State(held): State<Shared>, method: Method, body: Bytes) -> Response {
    batches_upstream(&held, method, &[], &body)
}

async fn batches_rest(
    State(held): State<Shared>,
    method: Method,
    Path(rest): Path<String>,
    body: Bytes,
) -> Response {
    batches_upstream(&held, method, &segments(&rest), &body)
}

/// Keyward in front of the fake; `m` costs $2 / $8 per Mtok, $1 cached.
fn gateway(upstream: SocketAddr) -> Server {
    Server::start_with_config(
        &format!(
            r#"
[[upstreams]]
name = "fake"
base_url = "http://{upstream}/v1"
timeout = "5s"
files = true

[[models]]
id = "m"
upstream = "fake"
input_price_per_mtok = 2.0
cached_input_price_per_mtok = 1.0
output_price_per_mtok = 8.0
"#
        ),
        &[],
    )
}

fn upload(s: &Server, key: &str, name: &str, data: &str, purpose: &str) -> Reply {
    let (content_type, body) = multipart(&[
        ("purpose", None, purpose.as_bytes()),
        ("file", Some(name), data.as_bytes()),
    ]);
    let resp = s
        .client
        .post(format!("{}/v1/files", s.base))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn uploaded(s: &Server, key: &str, name: &str, data: &str, purpose: &str) -> String {
    ok(upload(s, key, name, data, purpose))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn batch(s: &Server, key: &str, file: &str) -> Reply {
    s.post(
        "/v1/batches",
        key,
        json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    )
}

fn assert_not_found(r: Reply) {
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "not_found", "{}", r.body);
}

/// (request_id, endpoint, model, key, project, prompt, completion, cost) of
/// every ledger row, read from the database.
type Row = (String, String, String, String, String, i64, i64, i64);

fn ledger(s: &Server) -> Vec<Row> {
    s.query(
        "SELECT request_id, endpoint, model, key_id, project_id, prompt_tokens, completion_tokens, cost_micros FROM usage_ledger",
    )
}

/// The ledger once `done` holds of it (it is written off the request path).
fn ledger_when(s: &Server, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = ledger(s);
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Setup {
    s: Server,
    held: Shared,
    admin: String,
    project: String,
}

fn setup() -> Setup {
    let (addr, held) = fake();
    let s = gateway(addr);
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    Setup {
        s,
        held,
        admin,
        project,
    }
}

impl Setup {
    fn key(&self, project: &str, body: Value) -> (String, String) {
        common::new_key(&self.s, &self.admin, project, body)
    }

    fn mark(&self) -> usize {
        self.held.lock().unwrap().seen.len()
    }

    fn seen_since(&self, mark: usize) -> Vec<(String, String)> {
        self.held.lock().unwrap().seen[mark..].to_vec()
    }
}

#[test]
fn files_upload_list_retrieve_content_delete() {
    let t = setup();
    let s = &t.s;
    let (key, _) = t.key(&t.project, json!({"name": "files"}));
    let docs: Vec<String> = (0..3)
        .map(|i| {
            uploaded(
                s,
                &key,
                &format!("doc{i}.txt"),
                &format!("content {i}"),
                "user_data",
            )
        })
        .collect();
    let input = uploaded(s, &key, "in.jsonl", "{}", "batch");

    // Newest first by default; paged with `after`; filtered by purpose.
    let all = ok(s.get("/v1/files", &key));
    assert_eq!(
        ids(&all),
        [
            input.clone(),
            docs[2].clone(),
            docs[1].clone(),
            docs[0].clone()
        ]
    );
    assert_eq!(all["object"], "list");
    assert_eq!(
        (all["first_id"].as_str(), all["has_more"].as_bool()),
        (Some(input.as_str()), Some(false))
    );
    let page = ok(s.get("/v1/files?limit=2", &key));
    assert_eq!(
        (ids(&page), page["has_more"].as_bool()),
        (vec![input.clone(), docs[2].clone()], Some(true))
    );
    let next = ok(s.get(&format!("/v1/files?limit=2&after={}", docs[2]), &key));
    assert_eq!(ids(&next), [docs[1].clone(), docs[0].clone()]);
    assert_eq!(
        ids(&ok(s.get("/v1/files?purpose=batch", &key))),
        [input.as_str()]
    );
    assert_eq!(
        ids(&ok(s.get("/v1/files?order=asc&purpose=user_data", &key))),
        docs
    );
    // The list is Keyward's own: the upstream was not asked.
    assert!(t.held.lock().unwrap().seen.iter().all(|(m, _)| m != "GET"));
    for bad in ["limit=0", "limit=10001", "limit=x", "order=up"] {
        let r = s.get(&format!("/v1/files?{bad}"), &key);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(
            r.body["error"]["param"],
            bad.split('=').next().unwrap(),
            "{}",
            r.body
        );
    }

    let got = ok(s.get(&format!("/v1/files/{}", docs[1]), &key));
    assert_eq!(
        (got["filename"].as_str(), got["bytes"].as_i64()),
        (Some("doc1.txt"), Some(9))
    );
    let content = s
        .client
        .get(format!("{}/v1/files/{}/content", s.base, docs[1]))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().unwrap().as_ref(), b"content 1");
    assert_eq!(
        ok(s.delete(&format!("/v1/files/{}", docs[1]), &key))["deleted"],
        true
    );
    assert_not_found(s.get(&format!("/v1/files/{}", docs[1]), &key));
    assert!(!ids(&ok(s.get("/v1/files", &key))).contains(&docs[1]));

    // Not multipart: refused before the upstream.
    let mark = t.mark();
    let r = s.post("/v1/files", &key, json!({"file": "x"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(t.seen_since(mark).is_empty());
    // File management is not metered.
    assert!(ledger(s).is_empty());
}

#[test]
fn projects_neither_see_nor_touch_each_others_files_and_batches() {
    let t = setup();
    let s = &t.s;
    let (a, _) = t.key(&t.project, json!({"name": "a"}));
    let other = ok(s.post("/v1/organization/projects", &t.admin, json!({"name": "B"})));
    let (b, _) = t.key(other["id"].as_str().unwrap(), json!({"name": "b"}));

    let doc = uploaded(s, &a, "a.txt", "A's bytes", "user_data");
    let input = uploaded(s, &a, "a.jsonl", "{}", "batch");
    let batch_id = ok(batch(s, &a, &input))["id"].as_str().unwrap().to_owned();
    let pending = ok(batch(s, &a, &input))["id"].as_str().unwrap().to_owned();

    let mark = t.mark();
    for (method, path) in [
        ("GET", format!("/v1/files/{doc}")),
        ("GET", format!("/v1/files/{doc}/content")),
        ("DELETE", format!("/v1/files/{doc}")),
        ("GET", format!("/v1/batches/{batch_id}")),
        ("POST", format!("/v1/batches/{pending}/cancel")),
    ] {
        let r = s.call(method, &path, Some(&b), None);
        assert_not_found(r);
    }
    let unknown = s.get("/v1/files/file-nobody", &b);
    let foreign = s.get(&format!("/v1/files/{doc}"), &b);
    assert_eq!(
        unknown.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("file-nobody", "")),
        foreign.body["error"]["message"]
            .as_str()
            .map(|m| m.replace(&doc, ""))
    );
    assert_not_found(batch(s, &b, &input));
    assert!(
        t.seen_since(mark).is_empty(),
        "B's attempts reached the upstream: {:?}",
        t.seen_since(mark)
    );

    // B's lists hold only B's; A's id is no cursor for B.
    assert_eq!(ids(&ok(s.get("/v1/files", &b))), Vec::<String>::new());
    assert_eq!(ids(&ok(s.get("/v1/batches", &b))), Vec::<String>::new());
    let own = uploaded(s, &b, "b.txt", "B", "user_data");
    assert_eq!(ids(&ok(s.get("/v1/files", &b))), [own.as_str()]);
    for path in [
        format!("/v1/files?after={doc}"),
        format!("/v1/batches?after={batch_id}"),
    ] {
        let r = s.get(&path, &b);
        assert_eq!(
            (r.status.as_u16(), r.body["error"]["param"].as_str()),
            (400, Some("after")),
            "{}",
            r.body
        );
    }
    assert!(!ids(&ok(s.get("/v1/files", &a))).contains(&own));

    // A's batch completes; its output file is A's alone.
    let done = ok(s.get(&format!("/v1/batches/{batch_id}"), &a));
    let done = if done["status"] == "completed" {
        done
    } else {
        ok(s.get(&format!("/v1/batches/{batch_id}"), &a))
    };
    let out = done["output_file_id"].as_str().unwrap().to_owned();
    let content = s
        .client
        .get(format!("{}/v1/files/{out}/content", s.base))
        .bearer_auth(&a)
        .send()
        .unwrap();
    assert_eq!(content.status(), 200);
    let mark = t.mark();
    assert_not_found(s.get(&format!("/v1/files/{out}/content"), &b));
    assert!(t.seen_since(mark).is_empty());
    assert!(ids(&ok(s.get("/v1/files?purpose=batch_output", &a))).contains(&out));
    // A still has what B tried to delete and cancel.
    assert_eq!(
        ok(s.get(&format!("/v1/files/{doc}"), &a))["id"],
        doc.as_str()
    );
    assert_eq!(
        ok(s.post(&format!("/v1/batches/{pending}/cancel"), &a, json!({})))["status"],
        "cancelling"
    );
}

#[test]
fn a_completed_batch_is_billed_once() {
    let t = setup();
    let s = &t.s;
    let (key, key_id) = t.key(&t.project, json!({"name": "batcher"}));
    let input = uploaded(s, &key, "in.jsonl", "{}", "batch");
    let created = ok(batch(s, &key, &input));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "validating");
    assert_eq!(
        t.seen_since(t.mark() - 1),
        [("POST".to_owned(), "/v1/batches".to_owned())]
    );

    // The list refreshes a batch that may still change (-> in_progress).
    let listed = ok(s.get("/v1/batches", &key));
    assert_eq!(
        (ids(&listed), listed["data"][0]["status"].as_str()),
        (vec![id.clone()], Some("in_progress"))
    );
    // Completed, then seen again by retrieve and list: one ledger row.
    assert_eq!(
        ok(s.get(&format!("/v1/batches/{id}"), &key))["status"],
        "completed"
    );
    assert_eq!(
        ok(s.get(&format!("/v1/batches/{id}"), &key))["status"],
        "completed"
    );
    let mark = t.mark();
    let listed = ok(s.get("/v1/batches?limit=1", &key));
    assert_eq!(listed["data"][0]["status"], "completed");
    assert!(
        t.seen_since(mark).is_empty(),
        "a completed batch was fetched again for the list"
    );

    let rows = ledger_when(s, |rows| !rows.is_empty());
    // 800 input at $2, 200 cached at $1, 500 output at $8 per Mtok.
    let cost = 800 * 2 + 200 + 500 * 8;
    assert_eq!(
        rows,
        [(
            id.clone(),
            "batches".into(),
            "m".into(),
            key_id,
            t.project.clone(),
            1000,
            500,
            cost
        )]
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ledger(s).len(), 1);

    // A cancelled batch bills nothing.
    let other = ok(batch(s, &key, &input))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ok(s.post(&format!("/v1/batches/{other}/cancel"), &key, json!({})))["status"],
        "cancelling"
    );
    assert_eq!(
        ok(s.get(&format!("/v1/batches/{other}"), &key))["status"],
        "cancelled"
    );
    assert_eq!(ids(&ok(s.get("/v1/batches", &key))), [other, id]);
    for bad in ["limit=0", "limit=101"] {
        let r = s.get(&format!("/v1/batches?{bad}"), &key);
        assert_eq!(
            (r.status.as_u16(), r.body["error"]["param"].as_str()),
            (400, Some("limit")),
            "{}",
            r.body
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ledger(s).len(), 1);
}

#[test]
fn restricted_keys_need_the_scopes_of_what_they_do() {
    let t = setup();
    let s = &t.s;
    let (full, _) = t.key(&t.project, json!({"name": "full"}));
    let input = uploaded(s, &full, "in.jsonl", "{}", "batch");
    let (reader, _) = t.key(
        &t.project,
        json!({"name": "reader", "permissions": {"mode": "restricted", "files": "read"}}),
    );
    let (batcher, _) = t.key(&t.project, json!({"name": "batcher", "permissions": {"mode": "restricted", "files": "write", "batch": "write"}}));
    let (chatty, _) = t.key(&t.project, json!({"name": "chatty", "permissions": {"mode": "restricted", "files": "read", "batch": "write", "chat_completions": "write"}}));

    let mark = t.mark();
    assert_eq!(ids(&ok(s.get("/v1/files", &reader))), [input.as_str()]);
    let missing_scope = |r: Reply, scope: &str| {
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(scope),
            "{scope}: {}",
            r.body
        );
    };
    missing_scope(upload(s, &reader, "x.txt", "x", "user_data"), "files.write");
    missing_scope(
        s.delete(&format!("/v1/files/{input}"), &reader),
        "files.write",
    );
    missing_scope(batch(s, &reader, &input), "batch.write");
    missing_scope(s.get("/v1/batches", &reader), "batch.read");
    // May batch, but not call chat completions: may not batch them either.
    missing_scope(batch(s, &batcher, &input), "chat.completions.write");
    let r = s.post(
        "/v1/batches",
        &batcher,
        json!({"input_file_id": input, "endpoint": "/v1/audio/speech", "completion_window": "24h"}),
    );
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["param"].as_str()),
        (400, Some("endpoint")),
        "{}",
        r.body
    );
    let r = s.post(
        "/v1/batches",
        &batcher,
        json!({"endpoint": "/v1/chat/completions"}),
    );
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["param"].as_str()),
        (400, Some("input_file_id")),
        "{}",
        r.body
    );
    assert!(
        t.seen_since(mark).is_empty(),
        "a refused call reached the upstream"
    );

    assert_eq!(ok(batch(s, &chatty, &input))["status"], "validating");
}

#[test]
fn without_a_files_upstream_files_and_batches_are_not_served() {
    let s = common::upstream::gateway();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let key = secret(&create_key(&s, &admin, &project, json!({"name": "k"})));
    for (method, path) in [
        ("GET", "/v1/files"),
        ("GET", "/v1/files/file-1/content"),
        ("DELETE", "/v1/files/file-1"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches/batch_1"),
        ("POST", "/v1/batches/batch_1/cancel"),
    ] {
        let r = s.call(method, path, Some(&key), Some(json!({})));
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("files = true"),
            "{}",
            r.body
        );
    }
}

/// A batch's cost, seen after the call that made it, counts against the
/// creator's budget in the running process: calls after it are refused
/// once it has spent the month's budget.
#[test]
fn a_completed_batch_counts_against_the_budget() {
    let t = setup();
    let s = &t.s;
    // The batch costs 5,800 micro-dollars (see above); the budget is 5,000.
    let (key, _) = t.key(
        &t.project,
        json!({"name": "batcher", "monthly_budget_usd": 0.005}),
    );
    let chat = || {
        s.post(
            "/v1/chat/completions",
            &key,
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}),
        )
    };
    // Before: admitted (the fake upstream has no chat endpoint: its 404).
    assert_eq!(chat().status.as_u16(), 404);
    let input = uploaded(s, &key, "in.jsonl", "{}", "batch");
    let id = ok(batch(s, &key, &input))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        ok(s.get(&format!("/v1/batches/{id}"), &key));
    }
    assert_eq!(
        ok(s.get(&format!("/v1/batches/{id}"), &key))["status"],
        "completed"
    );
    let refused = chat();
    assert_eq!(
        (
            refused.status.as_u16(),
            refused.body["error"]["code"].as_str()
        ),
        (429, Some("insufficient_quota")),
        "{}",
        refused.body
    );
}
