//! Bad input to the management API: each mistake answers 400 (413 for an
//! oversized body) in OpenAI's error shape with `param` naming the field,
//! never a 500, and leaves nothing half-written behind.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{ids, key_path, keys_path, ok, Reply, Server};
use serde_json::{json, Value};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A request with any body, sent as JSON.
fn send(s: &Server, method: &str, path: &str, key: &str, body: impl Into<String>) -> Reply {
    let resp = s
        .client
        .request(method.parse().unwrap(), format!("{}{}", s.base, path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.into())
        .send()
        .expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

/// OpenAI's error shape, every member present.
fn assert_error_shape(r: &Reply, what: &str) {
    let err = r.body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an error object: {}", r.body));
    for field in ["message", "type", "param", "code"] {
        assert!(
            err.contains_key(field),
            "{what}: no `{field}` in {}",
            r.body
        );
    }
    let message = err["message"].as_str().unwrap_or_default();
    assert!(!message.trim().is_empty(), "{what}: empty message");
    assert_eq!(err["type"], "invalid_request_error", "{what}: {}", r.body);
    assert!(r.body.get("value").is_none(), "{what}: {}", r.body);
}

/// 400 naming `param` (or no param when `None`).
fn assert_400(r: &Reply, param: Option<&str>, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.body);
    assert_error_shape(r, what);
    match param {
        Some(p) => assert_eq!(r.body["error"]["param"], p, "{what}: {}", r.body),
        None => assert!(r.body["error"]["param"].is_null(), "{what}: {}", r.body),
    }
}

/// 400 whose `param` names `field`, possibly with a path inside it
/// (`allowed_ips[0]`, `rate_limits.requests_per_minute`).
fn assert_400_about(r: &Reply, field: &str, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.body);
    assert_error_shape(r, what);
    let param = r.body["error"]["param"].as_str().unwrap_or_default();
    assert!(
        param.contains(field),
        "{what}: param `{param}` does not name `{field}`: {}",
        r.body
    );
}

struct Fixture {
    s: Server,
    admin: String,
    project: String,
    key: String,
}

fn setup() -> Fixture {
    setup_with(&[])
}

fn setup_with(env: &[(&str, &str)]) -> Fixture {
    let s = Server::start_with(env);
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let key = ok(s.post(&keys_path(&project), &admin, json!({"name": "existing"})));
    let key = key["id"].as_str().unwrap().to_owned();
    Fixture {
        s,
        admin,
        project,
        key,
    }
}

impl Fixture {
    /// Everything a bad request could have half-written.
    fn snapshot(&self) -> Value {
        let s = &self.s;
        json!({
            "projects": ok(s.get("/v1/organization/projects?include_archived=true&limit=100", &self.admin)),
            "keys": ok(s.get(&format!("{}?include_revoked=true&limit=100", keys_path(&self.project)), &self.admin)),
            "admin_keys": ok(s.get("/v1/organization/admin_api_keys?limit=100", &self.admin)),
            "audit": ids(&ok(s.get("/v1/organization/audit_logs?limit=100", &self.admin))),
        })
    }

    fn keys(&self) -> String {
        keys_path(&self.project)
    }

    fn key(&self) -> String {
        key_path(&self.project, &self.key)
    }

    fn rotate(&self) -> String {
        format!("{}/rotate", self.key())
    }

    fn project_path(&self) -> String {
        format!("/v1/organization/projects/{}", self.project)
    }

    /// Every endpoint that takes a JSON body.
    fn body_endpoints(&self) -> Vec<(&'static str, String)> {
        vec![
            ("POST", self.keys()),
            ("POST", self.key()),
            ("POST", self.rotate()),
            ("POST", "/v1/organization/projects".to_owned()),
            ("POST", self.project_path()),
            ("POST", "/v1/organization/admin_api_keys".to_owned()),
        ]
    }
}

#[test]
fn malformed_json_is_400_on_every_endpoint() {
    let f = setup();
    let before = f.snapshot();
    // Each breaks before any complete field name, so the syntax is the
    // first thing wrong whatever fields the endpoint takes.
    for body in [
        "not json",
        "{",
        r#"{"na"#,
        "{'name': 'a'}",
        "{,}",
        "{\"name\u{1}\": 1}",
        "\u{0}",
    ] {
        for (method, path) in f.body_endpoints() {
            let r = send(&f.s, method, &path, &f.admin, body);
            assert_400(&r, None, &format!("{method} {path} with {body:?}"));
            let message = r.body["error"]["message"].as_str().unwrap();
            assert!(message.contains("JSON"), "{message}");
        }
    }
    // Broken after a valid field, where that field is accepted.
    for body in [r#"{"name":"#, r#"{"name": "a",}"#, r#"{"name": "a" "b"}"#] {
        for path in [f.keys(), f.key(), "/v1/organization/projects".to_owned()] {
            let r = send(&f.s, "POST", &path, &f.admin, body);
            assert_400(&r, None, &format!("POST {path} with {body:?}"));
        }
    }
    // The helper for static bodies agrees; bytes that are not UTF-8 too.
    let r = f.s.raw("POST", &f.keys(), &f.admin, b"{\"name\": ");
    assert_400(&r, None, "raw");
    let r = f.s.raw("POST", &f.keys(), &f.admin, b"\xff\xfe{}");
    assert_400(&r, None, "not UTF-8");
    let r =
        f.s.raw("POST", &f.keys(), &f.admin, b"{\"name\": \"\xff\"}");
    assert_eq!(r.status, 400, "UTF-8 error inside a string: {}", r.body);
    assert_error_shape(&r, "UTF-8 error inside a string");
    assert_eq!(f.snapshot(), before);
}

/// A JSON object followed by anything else is not a JSON body.
#[test]
fn trailing_data_after_the_json_object_is_400() {
    let f = setup();
    let before = f.snapshot();
    for body in [
        r#"{"name":"a"} trailing"#,
        r#"{"name":"a"}{"name":"b"}"#,
        r#"{"name":"a"}]"#,
    ] {
        for path in [f.keys(), f.key(), "/v1/organization/projects".to_owned()] {
            let r = send(&f.s, "POST", &path, &f.admin, body);
            assert_400(&r, None, &format!("POST {path} with {body:?}"));
        }
    }
    assert_eq!(f.snapshot(), before);
}

#[test]
fn json_that_is_not_an_object_is_400() {
    let f = setup();
    let before = f.snapshot();
    for body in ["[1, 2]", "\"name\"", "42", "true", "null"] {
        for (method, path) in f.body_endpoints() {
            let r = send(&f.s, method, &path, &f.admin, body);
            assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.body);
            assert_error_shape(&r, body);
        }
    }
    assert_eq!(f.snapshot(), before);
}

#[test]
fn wrong_types_name_the_field() {
    let f = setup();
    let before = f.snapshot();
    let keys = f.keys();
    let key = f.key();
    let cases: Vec<(String, Value, &str)> = vec![
        (keys.clone(), json!({"name": 5}), "name"),
        (keys.clone(), json!({"name": ["a"]}), "name"),
        (
            keys.clone(),
            json!({"expires_at": "tomorrow"}),
            "expires_at",
        ),
        (keys.clone(), json!({"expires_at": 1.5e9}), "expires_at"),
        (
            keys.clone(),
            json!({"allowed_models": "m"}),
            "allowed_models",
        ),
        (
            keys.clone(),
            json!({"allowed_models": [1]}),
            "allowed_models",
        ),
        (
            keys.clone(),
            json!({"allowed_ips": "10.0.0.0/8"}),
            "allowed_ips",
        ),
        (
            keys.clone(),
            json!({"rate_limits": {"requests_per_minute": "60"}}),
            "requests_per_minute",
        ),
        (keys.clone(), json!({"rate_limits": 60}), "rate_limits"),
        (
            keys.clone(),
            json!({"monthly_budget_usd": "5"}),
            "monthly_budget_usd",
        ),
        (keys.clone(), json!({"permissions": "all"}), "permissions"),
        (
            keys.clone(),
            json!({"permissions": {"mode": "root"}}),
            "permissions",
        ),
        (
            keys.clone(),
            json!({"permissions": {"mode": "restricted", "models": "admin"}}),
            "permissions",
        ),
        (key.clone(), json!({"name": false}), "name"),
        (key.clone(), json!({"allowed_ips": [true]}), "allowed_ips"),
        (key.clone(), json!({"expires_at": "never"}), "expires_at"),
        (
            f.rotate(),
            json!({"grace_period_seconds": "3600"}),
            "grace_period_seconds",
        ),
        (
            f.rotate(),
            json!({"grace_period_seconds": 1.5}),
            "grace_period_seconds",
        ),
        (
            f.rotate(),
            json!({"grace_period_seconds": null}),
            "grace_period_seconds",
        ),
        (
            "/v1/organization/projects".to_owned(),
            json!({"name": 1}),
            "name",
        ),
        (
            "/v1/organization/projects".to_owned(),
            json!({"name": null}),
            "name",
        ),
        ("/v1/organization/projects".to_owned(), json!({}), "name"),
        (f.project_path(), json!({"name": {}}), "name"),
        (
            "/v1/organization/admin_api_keys".to_owned(),
            json!({"expires_at": "soon"}),
            "expires_at",
        ),
    ];
    for (path, body, field) in cases {
        let r = f.s.post(&path, &f.admin, body.clone());
        assert_400_about(&r, field, &format!("POST {path} {body}"));
    }
    assert_eq!(f.snapshot(), before);
}

#[test]
fn a_field_given_twice_is_named() {
    let f = setup();
    let before = f.snapshot();
    for path in [f.keys(), f.key(), "/v1/organization/projects".to_owned()] {
        let r = send(
            &f.s,
            "POST",
            &path,
            &f.admin,
            r#"{"name": "a", "name": "b"}"#,
        );
        assert_400_about(&r, "name", &format!("duplicate name to {path}"));
    }
    assert_eq!(f.snapshot(), before);
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let f = setup();
    let before = f.snapshot();
    let cases: Vec<(String, Value, &str)> = vec![
        (f.keys(), json!({"nmae": "typo"}), "nmae"),
        (f.keys(), json!({"name": "ok", "scopes": ["all"]}), "scopes"),
        (f.keys(), json!({"rate_limits": {"rpm": 5}}), "rpm"),
        (
            f.keys(),
            json!({"permissions": {"mode": "restricted", "modles": "read"}}),
            "permissions",
        ),
        (f.key(), json!({"value": "sk-kw-mine"}), "value"),
        (f.key(), json!({"project_id": "proj_abc"}), "project_id"),
        (f.rotate(), json!({"grace": 60}), "grace"),
        (
            "/v1/organization/projects".to_owned(),
            json!({"name": "p", "color": "red"}),
            "color",
        ),
        (f.project_path(), json!({"title": "p"}), "title"),
        (
            "/v1/organization/admin_api_keys".to_owned(),
            json!({"permissions": {"mode": "all"}}),
            "permissions",
        ),
    ];
    for (path, body, field) in cases {
        let r = f.s.post(&path, &f.admin, body.clone());
        assert_400_about(&r, field, &format!("POST {path} {body}"));
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    // Unknown query parameters too.
    for path in [
        format!("{}?limt=5", f.keys()),
        "/v1/organization/projects?archived=true".to_owned(),
        "/v1/organization/admin_api_keys?include_revoked=true".to_owned(),
        "/v1/organization/audit_logs?event_type=api_key.created".to_owned(),
    ] {
        let r = f.s.get(&path, &f.admin);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_error_shape(&r, &path);
        assert!(r.body["error"]["param"].is_string(), "{path}: {}", r.body);
    }
    assert_eq!(f.snapshot(), before);
}

#[test]
fn names_are_at_most_256_characters() {
    let f = setup();
    let s = &f.s;
    let long = "n".repeat(257);
    let wide = "é".repeat(257);
    let before = f.snapshot();
    for name in [&long, &wide, &"x\u{7}y".to_owned(), &"tab\there".to_owned()] {
        let body = json!({ "name": name });
        assert_400(
            &s.post(&f.keys(), &f.admin, body.clone()),
            Some("name"),
            "create key",
        );
        assert_400(
            &s.post(&f.key(), &f.admin, body.clone()),
            Some("name"),
            "update key",
        );
        assert_400(
            &s.post("/v1/organization/projects", &f.admin, body.clone()),
            Some("name"),
            "create project",
        );
        assert_400(
            &s.post(&f.project_path(), &f.admin, body.clone()),
            Some("name"),
            "rename project",
        );
        assert_400(
            &s.post("/v1/organization/admin_api_keys", &f.admin, body.clone()),
            Some("name"),
            "create admin key",
        );
    }
    // The message says what the limit is, and does not echo 257 characters back.
    let r = s.post(&f.keys(), &f.admin, json!({ "name": long }));
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("256"), "{message}");
    assert_eq!(f.snapshot(), before);

    // 256 characters (also of a two-byte letter) are fine.
    for name in ["n".repeat(256), "é".repeat(256)] {
        let k = ok(s.post(&f.keys(), &f.admin, json!({ "name": name })));
        assert_eq!(k["name"], name.as_str());
        let got = ok(s.get(&key_path(&f.project, k["id"].as_str().unwrap()), &f.admin));
        assert_eq!(got["name"], name.as_str());
        let p = ok(s.post(
            "/v1/organization/projects",
            &f.admin,
            json!({ "name": name }),
        ));
        assert_eq!(p["name"], name.as_str());
    }
    let u = ok(s.post(&f.key(), &f.admin, json!({"name": "n".repeat(256)})));
    assert_eq!(u["name"].as_str().unwrap().chars().count(), 256);
}

#[test]
fn bad_ids_in_paths_are_400_naming_the_id() {
    let f = setup();
    let s = &f.s;
    let before = f.snapshot();
    let long_project = format!("proj_{}", "a".repeat(100));
    let bad_projects = [
        "proj_bad-id",
        "proj_",
        "key_abcdef",
        "project",
        "proj_abc%20def",
        "proj_%C3%A9",
        long_project.as_str(),
    ];
    for p in bad_projects {
        let base = format!("/v1/organization/projects/{p}");
        let named = Some(json!({"name": "x"}));
        let cases = [
            ("GET", base.clone(), None),
            ("POST", base.clone(), named.clone()),
            ("POST", format!("{base}/archive"), None),
            ("GET", format!("{base}/api_keys"), None),
            ("POST", format!("{base}/api_keys"), named.clone()),
            ("GET", format!("{base}/api_keys/{}", f.key), None),
            ("POST", format!("{base}/api_keys/{}", f.key), named.clone()),
            ("DELETE", format!("{base}/api_keys/{}", f.key), None),
            (
                "POST",
                format!("{base}/api_keys/{}/rotate", f.key),
                Some(json!({"grace_period_seconds": 0})),
            ),
        ];
        for (method, path, body) in cases {
            let r = s.call(method, &path, Some(&f.admin), body);
            assert_400(&r, Some("project_id"), &format!("{method} {path}"));
        }
    }
    let bad_keys = ["key_", "key_bad-id", "proj_abcdef", "sk-kw-abc", "key_a.b"];
    for k in bad_keys {
        let path = key_path(&f.project, k);
        for (method, path) in [
            ("GET", path.clone()),
            ("POST", path.clone()),
            ("DELETE", path.clone()),
            ("POST", format!("{path}/rotate")),
            ("GET", format!("/v1/organization/admin_api_keys/{k}")),
            ("DELETE", format!("/v1/organization/admin_api_keys/{k}")),
        ] {
            let body = (method == "POST").then(|| json!({}));
            let r = s.call(method, &path, Some(&f.admin), body);
            assert_400(&r, Some("key_id"), &format!("{method} {path}"));
        }
    }
    // A bad id in a filter names the filter.
    let r = s.get(
        "/v1/organization/audit_logs?project_ids[]=proj_bad-id",
        &f.admin,
    );
    assert_400_about(&r, "project_ids", "audit project_ids");
    let r = s.get(
        "/v1/organization/audit_logs?event_types[]=DROP%20TABLE",
        &f.admin,
    );
    assert_400_about(&r, "event_types", "audit event_types");
    assert_eq!(f.snapshot(), before);
}

/// Collects what is wrong with a reply instead of stopping at the first,
/// so one run reports every offending parameter.
fn check_400(problems: &mut Vec<String>, r: &Reply, param: &str, what: &str) {
    if r.status != 400 {
        problems.push(format!("{what}: status {} ({})", r.status, r.body));
    } else if r.body["error"]["param"] != param {
        problems.push(format!(
            "{what}: param {} instead of \"{param}\" ({})",
            r.body["error"]["param"], r.body["error"]["message"]
        ));
    }
}

#[test]
fn bad_pagination_is_400_naming_limit_or_after() {
    let f = setup();
    let s = &f.s;
    let lists = [
        "/v1/organization/projects".to_owned(),
        f.keys(),
        "/v1/organization/admin_api_keys".to_owned(),
        "/v1/organization/audit_logs".to_owned(),
    ];
    let mut problems = Vec::new();
    for list in &lists {
        for limit in ["0", "101", "-1", "abc", "1.5", "99999999999999999999"] {
            let path = format!("{list}?limit={limit}");
            let r = s.get(&path, &f.admin);
            assert_ne!(r.status, 500, "{path}: {}", r.body);
            if r.status == 400 {
                assert_error_shape(&r, &path);
            }
            check_400(&mut problems, &r, "limit", &path);
        }
        for after in [
            // Well formed but not in this list.
            "key_000000000000000000000000".to_owned(),
            "proj_000000000000000000000000".to_owned(),
            "audit_000000000000000000000000".to_owned(),
            // Not an id at all.
            "bad-id!".to_owned(),
            "a".repeat(65),
        ] {
            let path = format!("{list}?after={after}");
            let r = s.get(&path, &f.admin);
            assert_ne!(r.status, 500, "{path}: {}", r.body);
            if r.status == 400 {
                assert_error_shape(&r, &path);
            }
            check_400(&mut problems, &r, "after", &path);
        }
        // The bounds themselves are fine.
        for limit in ["1", "100"] {
            let r = s.get(&format!("{list}?limit={limit}"), &f.admin);
            assert_eq!(r.status, 200, "{list}?limit={limit}: {}", r.body);
            assert!(ids(&r.body).len() <= limit.parse().unwrap());
        }
    }
    // An id from another list is not a cursor here.
    let r = s.get(&format!("{}?after={}", f.keys(), f.project), &f.admin);
    check_400(&mut problems, &r, "after", "project id as key cursor");
    let r = s.get(
        &format!("/v1/organization/projects?after={}", f.key),
        &f.admin,
    );
    check_400(&mut problems, &r, "after", "key id as project cursor");
    // Boolean flags take true or false only.
    let r = s.get(&format!("{}?include_revoked=maybe", f.keys()), &f.admin);
    check_400(
        &mut problems,
        &r,
        "include_revoked",
        "include_revoked=maybe",
    );
    let r = s.get("/v1/organization/projects?include_archived=2", &f.admin);
    check_400(&mut problems, &r, "include_archived", "include_archived=2");
    assert!(
        problems.is_empty(),
        "{} bad pagination replies:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn bad_values_are_400_naming_the_field_and_write_nothing() {
    let f = setup();
    let s = &f.s;
    let t = now();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"expires_at": t - 10}), "expires_at"),
        (json!({"expires_at": t}), "expires_at"),
        (json!({"expires_at": 0}), "expires_at"),
        (json!({"expires_at": -1}), "expires_at"),
        (json!({"expires_at": t + 11 * 366 * 86_400}), "expires_at"),
        (json!({"allowed_ips": ["10.0.0.300"]}), "allowed_ips"),
        (json!({"allowed_ips": ["not-an-ip"]}), "allowed_ips"),
        (json!({"allowed_ips": ["10.0.0.0/33"]}), "allowed_ips"),
        (json!({"allowed_ips": [""]}), "allowed_ips"),
        (
            json!({"allowed_ips": ["10.0.0.1", "::1/129"]}),
            "allowed_ips",
        ),
        (json!({"allowed_models": ["gpt 4"]}), "allowed_models"),
        (json!({"allowed_models": [""]}), "allowed_models"),
        (
            json!({"allowed_models": (0..101).map(|i| format!("m{i}")).collect::<Vec<_>>()}),
            "allowed_models",
        ),
        (json!({"monthly_budget_usd": -1}), "monthly_budget_usd"),
        (json!({"monthly_budget_usd": -0.01}), "monthly_budget_usd"),
        (json!({"monthly_budget_usd": 1e300}), "monthly_budget_usd"),
        (
            json!({"rate_limits": {"requests_per_minute": 0}}),
            "requests_per_minute",
        ),
        (
            json!({"rate_limits": {"tokens_per_minute": -5}}),
            "tokens_per_minute",
        ),
        (
            json!({"rate_limits": {"max_concurrent_requests": 2_000_000_000_i64}}),
            "max_concurrent_requests",
        ),
    ];
    let before = f.snapshot();
    let existing = ok(s.get(&f.key(), &f.admin));
    for (body, field) in &cases {
        let r = s.post(&f.keys(), &f.admin, body.clone());
        assert_400_about(&r, field, &format!("create {body}"));
        assert_eq!(f.snapshot(), before, "create {body} left something behind");
        let r = s.post(&f.key(), &f.admin, body.clone());
        assert_400_about(&r, field, &format!("update {body}"));
        assert_eq!(
            ok(s.get(&f.key(), &f.admin)),
            existing,
            "update {body} changed the key"
        );
    }
    // A bad field next to good ones changes none of them.
    let r = s.post(
        &f.key(),
        &f.admin,
        json!({"name": "renamed", "allowed_ips": ["nope"]}),
    );
    assert_400(&r, Some("allowed_ips"), "mixed update");
    assert_eq!(ok(s.get(&f.key(), &f.admin)), existing);

    // Admin keys and project limits check the same way.
    let r = s.post(
        "/v1/organization/admin_api_keys",
        &f.admin,
        json!({"expires_at": t - 1}),
    );
    assert_400(&r, Some("expires_at"), "admin key in the past");
    let r = s.post(
        &f.project_path(),
        &f.admin,
        json!({"monthly_budget_usd": -3}),
    );
    assert_400(&r, Some("monthly_budget_usd"), "project budget");
    let r = s.post(
        &f.project_path(),
        &f.admin,
        json!({"rate_limits": {"requests_per_minute": 0}}),
    );
    assert_400_about(&r, "requests_per_minute", "project rpm");
    let r = s.post(
        &f.rotate(),
        &f.admin,
        json!({"grace_period_seconds": 604_801}),
    );
    assert_400(&r, Some("grace_period_seconds"), "grace");
    assert_eq!(f.snapshot(), before);
}

#[test]
fn oversized_body_is_413_and_writes_nothing() {
    let f = setup_with(&[("KEYWARD_LIMITS__MAX_BODY_BYTES", "1000")]);
    let s = &f.s;
    let before = f.snapshot();
    let big = json!({"name": "big", "allowed_models": (0..200).map(|i| format!("model-{i}")).collect::<Vec<_>>()})
        .to_string();
    assert!(big.len() > 1000);
    let padded = format!("{{\"name\": \"{}\"}}", " ".repeat(2000));
    for body in [&big, &padded] {
        for (method, path) in f.body_endpoints() {
            let r = send(s, method, &path, &f.admin, body.clone());
            assert_eq!(r.status, 413, "{method} {path}: {}", r.body);
            assert_error_shape(&r, &path);
            assert_eq!(r.body["error"]["code"], "request_too_large");
        }
    }
    assert_eq!(f.snapshot(), before);

    // Just under the limit is read as usual.
    let fits = json!({"name": "fits", "allowed_models": (0..90).map(|i| format!("m-{i}")).collect::<Vec<_>>()})
        .to_string();
    assert!(fits.len() < 1000 && fits.len() > 600, "{}", fits.len());
    let r = send(s, "POST", &f.keys(), &f.admin, fits);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["allowed_models"].as_array().unwrap().len(), 90);
}

#[test]
fn an_empty_body_means_no_fields() {
    let f = setup();
    let s = &f.s;
    // Every field of a key is optional.
    let r = send(s, "POST", &f.keys(), &f.admin, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["permissions"], json!({"mode": "all"}));
    // A project needs a name.
    let before = f.snapshot();
    let r = send(s, "POST", "/v1/organization/projects", &f.admin, "  ");
    assert_400(&r, Some("name"), "project without a name");
    let r = s.post("/v1/organization/projects", &f.admin, json!({"name": ""}));
    assert_400(&r, Some("name"), "empty project name");
    assert_eq!(f.snapshot(), before);
}
