//! Every management endpoint end to end against the real binary: projects,
//! project keys, admin keys and the audit log.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{create_key, ids, key_path, keys_path, ok, Reply, Server};
use serde_json::{json, Value};

const EMAIL: &str = "owner@example.com";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A server, its operator's admin key and the operator's Default project.
fn setup() -> (Server, String, String) {
    let s = Server::start();
    let admin = s.create_operator(EMAIL);
    let project = s.default_project(&admin);
    (s, admin, project)
}

fn create_project(s: &Server, admin: &str, name: &str) -> Value {
    ok(s.post("/v1/organization/projects", admin, json!({ "name": name })))
}

/// A Unix-seconds timestamp taken during this test (not milliseconds).
fn assert_recent(v: &Value) {
    let t = v
        .as_i64()
        .unwrap_or_else(|| panic!("not an integer time: {v}"));
    assert!(
        (now() - t).abs() <= 120,
        "{t} is not a recent Unix-seconds time"
    );
}

fn redacted(secret: &str) -> String {
    format!("{}...{}", &secret[..10], &secret[secret.len() - 4..])
}

/// The body contains neither the secret nor its random part.
fn assert_no_secret(body: &Value, secret: &str) {
    let text = body.to_string();
    assert!(!text.contains(secret), "the secret appears in {text}");
    let random = &secret[secret.len() - 46..];
    assert!(
        !text.contains(random),
        "the secret's body appears in {text}"
    );
}

/// The 401 every unusable key gets, with the key shown masked only.
fn assert_bad_key(r: &Reply, secret: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_api_key", "{}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert_no_secret(&r.body, secret);
}

/// A project key works on the management API (reading usage, which every
/// `all` key may do) and on the gateway.
fn assert_key_works(s: &Server, secret: &str, _project: &str) {
    let r = s.get("/v1/organization/usage/completions?start_time=0", secret);
    assert_eq!(
        r.status, 200,
        "management API refused a live key: {}",
        r.body
    );
    let r = s.get("/v1/models", secret);
    assert_eq!(r.status, 200, "gateway refused a live key: {}", r.body);
}

/// A project key is refused everywhere with 401 invalid_api_key.
fn assert_key_refused(s: &Server, secret: &str, project: &str) {
    assert_bad_key(&s.get(&keys_path(project), secret), secret);
    assert_bad_key(&s.get("/v1/models", secret), secret);
}

// ---------------------------------------------------------------- projects

#[test]
fn projects_list_newest_first_and_paginate() {
    let (s, admin, default) = setup();
    let mut created = vec![default.clone()];
    for i in 1..=4 {
        let p = create_project(&s, &admin, &format!("p{i}"));
        created.push(p["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let all = ok(s.get("/v1/organization/projects", &admin));
    assert_eq!(all["object"], "list");
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], newest_first[0].as_str());
    assert_eq!(all["last_id"], newest_first[4].as_str());
    assert_eq!(all["data"][0]["name"], "p4");
    assert_eq!(all["data"][4]["name"], "Default project");

    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            None => "/v1/organization/projects?limit=2".to_owned(),
            Some(a) => format!("/v1/organization/projects?limit=2&after={a}"),
        };
        let page = ok(s.get(&path, &admin));
        let page_ids = ids(&page);
        pages += 1;
        assert!(!page_ids.is_empty() && page_ids.len() <= 2, "{page}");
        assert_eq!(page["first_id"], page_ids[0].as_str());
        assert_eq!(page["last_id"], page_ids.last().unwrap().as_str());
        walked.extend(page_ids.iter().cloned());
        if page["has_more"] == false {
            break;
        }
        assert_eq!(page_ids.len(), 2);
        after = Some(page["last_id"].as_str().unwrap().to_owned());
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(walked, newest_first);

    let one = ok(s.get("/v1/organization/projects?limit=5", &admin));
    assert_eq!(ids(&one).len(), 5);
    assert_eq!(one["has_more"], false);
    let one = ok(s.get("/v1/organization/projects?limit=4", &admin));
    assert_eq!(one["has_more"], true);

    // Past the last item: an empty page.
    let last = &newest_first[4];
    let empty = ok(s.get(&format!("/v1/organization/projects?after={last}"), &admin));
    assert_eq!(empty["data"], json!([]));
    assert_eq!(empty["has_more"], false);
    assert!(empty["first_id"].is_null() && empty["last_id"].is_null());
}

#[test]
fn project_create_retrieve_rename() {
    let (s, admin, _) = setup();
    let p = create_project(&s, &admin, "  Research  ");
    let id = p["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("proj_"), "{id}");
    assert_eq!(p["object"], "organization.project");
    assert_eq!(p["name"], "Research");
    assert_eq!(p["status"], "active");
    assert!(p["archived_at"].is_null());
    assert_recent(&p["created_at"]);

    let got = ok(s.get(&format!("/v1/organization/projects/{id}"), &admin));
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["name"], "Research");
    assert_eq!(got["created_at"], p["created_at"]);

    let renamed = ok(s.post(
        &format!("/v1/organization/projects/{id}"),
        &admin,
        json!({"name": "Research & Development"}),
    ));
    assert_eq!(renamed["name"], "Research & Development");
    assert_eq!(renamed["id"], id.as_str());
    let got = ok(s.get(&format!("/v1/organization/projects/{id}"), &admin));
    assert_eq!(got["name"], "Research & Development");
    let listed = ok(s.get("/v1/organization/projects", &admin));
    assert_eq!(listed["data"][0]["name"], "Research & Development");

    // An empty name is refused and changes nothing.
    let r = s.post(
        &format!("/v1/organization/projects/{id}"),
        &admin,
        json!({"name": "   "}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["param"], "name");
    let got = ok(s.get(&format!("/v1/organization/projects/{id}"), &admin));
    assert_eq!(got["name"], "Research & Development");

    // A well-formed id that does not exist.
    let r = s.get(
        "/v1/organization/projects/proj_000000000000000000000000",
        &admin,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "not_found");
}

#[test]
fn archive_is_idempotent_and_stops_the_projects_keys() {
    let (s, admin, _) = setup();
    let p = create_project(&s, &admin, "doomed");
    let id = p["id"].as_str().unwrap().to_owned();
    let key = create_key(&s, &admin, &id, json!({"name": "k"}));
    let secret = key["value"].as_str().unwrap().to_owned();
    assert_key_works(&s, &secret, &id);

    let archive = format!("/v1/organization/projects/{id}/archive");
    let a = ok(s.post(&archive, &admin, json!({})));
    assert_eq!(a["status"], "archived");
    assert_eq!(a["id"], id.as_str());
    assert_recent(&a["archived_at"]);

    // Idempotent: the same archive time, no error.
    std::thread::sleep(Duration::from_millis(1100));
    let again = ok(s.call("POST", &archive, Some(&admin), None));
    assert_eq!(again["status"], "archived");
    assert_eq!(again["archived_at"], a["archived_at"]);
    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=project.archived",
        &admin,
    ));
    assert_eq!(
        ids(&audit).len(),
        1,
        "archiving twice audited twice: {audit}"
    );

    // Its keys stop working at once.
    assert_key_refused(&s, &secret, &id);

    // No new keys there; nothing half-created.
    let r = s.post(&keys_path(&id), &admin, json!({"name": "late"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["error"]["message"].is_string());
    assert!(r.body.get("value").is_none());
    let listed = ok(s.get(&keys_path(&id), &admin));
    assert_eq!(ids(&listed), vec![key["id"].as_str().unwrap().to_owned()]);

    // Hidden from the default list, shown with include_archived.
    let listed = ok(s.get("/v1/organization/projects", &admin));
    assert!(!ids(&listed).contains(&id), "{listed}");
    let listed = ok(s.get("/v1/organization/projects?include_archived=true", &admin));
    assert!(ids(&listed).contains(&id), "{listed}");
    let got = ok(s.get(&format!("/v1/organization/projects/{id}"), &admin));
    assert_eq!(got["status"], "archived");
}

// ------------------------------------------------------------ project keys

#[test]
fn created_key_shows_its_secret_once_and_never_again() {
    let (s, admin, project) = setup();
    let r = s.post(&keys_path(&project), &admin, json!({"name": "ci"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let k = r.body;
    let secret = k["value"].as_str().unwrap().to_owned();
    let id = k["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-kw-") && !secret.starts_with("sk-kwadmin-"));
    assert_eq!(secret.len(), 52);
    assert!(id.starts_with("key_"), "{id}");

    // The object's shape.
    assert_eq!(k["object"], "organization.project.api_key");
    assert_eq!(k["name"], "ci");
    assert_eq!(k["redacted_value"], redacted(&secret).as_str());
    assert_recent(&k["created_at"]);
    assert!(k["last_used_at"].is_null());
    assert!(k["expires_at"].is_null());
    assert_eq!(k["permissions"], json!({"mode": "all"}));
    assert_eq!(k["project_id"], project.as_str());
    assert_eq!(k["owner"]["type"], "user");
    let user = &k["owner"]["user"];
    assert_eq!(user["object"], "organization.user");
    assert!(user["id"].as_str().unwrap().starts_with("user_"), "{user}");
    assert_eq!(user["email"], EMAIL);
    assert_eq!(user["name"], "owner");
    assert_eq!(user["role"], "owner");
    assert_recent(&user["created_at"]);
    assert!(k["revoked_at"].is_null() && k["revoke_reason"].is_null());

    // Retrieve and list: the same fields, never the secret.
    let got = s.get(&key_path(&project, &id), &admin);
    assert_eq!(got.status, 200, "{}", got.body);
    assert!(got.body.get("value").is_none(), "{}", got.body);
    assert_no_secret(&got.body, &secret);
    let mut expected = k.clone();
    expected.as_object_mut().unwrap().remove("value");
    assert_eq!(got.body, expected);

    let listed = ok(s.get(&keys_path(&project), &admin));
    assert_eq!(listed["object"], "list");
    assert_no_secret(&listed, &secret);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["data"][0].get("value").is_none());
    assert_eq!(listed["data"][0], expected);

    // Nor in the audit log.
    let audit = ok(s.get("/v1/organization/audit_logs", &admin));
    assert_no_secret(&audit, &secret);

    // The secret works.
    assert_key_works(&s, &secret, &project);
}

#[test]
fn created_key_settings_round_trip() {
    let (s, admin, project) = setup();
    let expires = now() + 86_400;
    let k = create_key(
        &s,
        &admin,
        &project,
        json!({
            "name": "full",
            "permissions": {"mode": "restricted", "models": "read", "keys": "write"},
            "expires_at": expires,
            "allowed_models": ["gpt-4o-mini", "m"],
            "allowed_ips": ["10.1.2.3/8", "127.0.0.1"],
            "rate_limits": {"requests_per_minute": 60, "tokens_per_minute": 1000},
            "monthly_budget_usd": 12.5
        }),
    );
    let got = ok(s.get(&key_path(&project, k["id"].as_str().unwrap()), &admin));
    for v in [&k, &got] {
        assert_eq!(v["expires_at"], expires);
        assert_eq!(v["permissions"]["mode"], "restricted");
        assert_eq!(v["permissions"]["models"], "read");
        assert_eq!(v["permissions"]["keys"], "write");
        assert_eq!(v["permissions"]["embeddings"], "none");
        assert_eq!(v["allowed_models"], json!(["gpt-4o-mini", "m"]));
        assert_eq!(v["allowed_ips"], json!(["10.0.0.0/8", "127.0.0.1/32"]));
        assert_eq!(v["rate_limits"]["requests_per_minute"], 60);
        assert_eq!(v["rate_limits"]["tokens_per_minute"], 1000);
        assert!(v["rate_limits"]["max_concurrent_requests"].is_null());
        assert_eq!(v["monthly_budget_usd"], 12.5);
    }
}

#[test]
fn keys_list_newest_first_and_paginate() {
    let (s, admin, project) = setup();
    let mut created = Vec::new();
    for i in 0..5 {
        let k = create_key(&s, &admin, &project, json!({"name": format!("k{i}")}));
        created.push(k["id"].as_str().unwrap().to_owned());
    }
    created.reverse();

    let all = ok(s.get(&keys_path(&project), &admin));
    assert_eq!(ids(&all), created);
    assert_eq!(all["data"][0]["name"], "k4");
    assert_eq!(all["first_id"], created[0].as_str());
    assert_eq!(all["last_id"], created[4].as_str());
    assert_eq!(all["has_more"], false);

    let p1 = ok(s.get(&format!("{}?limit=2", keys_path(&project)), &admin));
    assert_eq!(ids(&p1), created[..2]);
    assert_eq!(p1["has_more"], true);
    assert_eq!(p1["last_id"], created[1].as_str());
    let p2 = ok(s.get(
        &format!("{}?limit=2&after={}", keys_path(&project), created[1]),
        &admin,
    ));
    assert_eq!(ids(&p2), created[2..4]);
    assert_eq!(p2["has_more"], true);
    let p3 = ok(s.get(
        &format!("{}?limit=2&after={}", keys_path(&project), created[3]),
        &admin,
    ));
    assert_eq!(ids(&p3), created[4..]);
    assert_eq!(p3["has_more"], false);
    assert_eq!(p3["first_id"], created[4].as_str());
    assert_eq!(p3["last_id"], created[4].as_str());

    // A page of exactly the remaining items has no more.
    let p = ok(s.get(
        &format!("{}?limit=3&after={}", keys_path(&project), created[1]),
        &admin,
    ));
    assert_eq!(ids(&p), created[2..]);
    assert_eq!(p["has_more"], false);

    // A key of another project does not list here.
    let other = create_project(&s, &admin, "other");
    let other_id = other["id"].as_str().unwrap();
    create_key(&s, &admin, other_id, json!({"name": "elsewhere"}));
    let all = ok(s.get(&keys_path(&project), &admin));
    assert_eq!(ids(&all), created);
    assert_eq!(ids(&ok(s.get(&keys_path(other_id), &admin))).len(), 1);
}

#[test]
fn update_key_settings_and_clear_them_with_null() {
    let (s, admin, project) = setup();
    let k = create_key(&s, &admin, &project, json!({"name": "before"}));
    let id = k["id"].as_str().unwrap().to_owned();
    let path = key_path(&project, &id);
    let expires = now() + 3600;

    let u = ok(s.post(
        &path,
        &admin,
        json!({
            "name": "after",
            "expires_at": expires,
            "allowed_models": ["gpt-4o", "m"],
            "allowed_ips": ["10.1.2.3/8", "203.0.113.7"],
            "rate_limits": {"requests_per_minute": 60, "tokens_per_minute": 1000, "max_concurrent_requests": 2},
            "monthly_budget_usd": 12.5
        }),
    ));
    let got = ok(s.get(&path, &admin));
    for v in [&u, &got] {
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["name"], "after");
        assert_eq!(v["expires_at"], expires);
        assert_eq!(v["allowed_models"], json!(["gpt-4o", "m"]));
        assert_eq!(v["allowed_ips"], json!(["10.0.0.0/8", "203.0.113.7/32"]));
        assert_eq!(
            v["rate_limits"],
            json!({"requests_per_minute": 60, "tokens_per_minute": 1000, "max_concurrent_requests": 2})
        );
        assert_eq!(v["monthly_budget_usd"], 12.5);
        assert_eq!(v["redacted_value"], k["redacted_value"]);
        assert!(v.get("value").is_none());
    }

    // One limit cleared; the others and every other field stay.
    let u = ok(s.post(
        &path,
        &admin,
        json!({"rate_limits": {"requests_per_minute": null}}),
    ));
    assert!(u["rate_limits"]["requests_per_minute"].is_null(), "{u}");
    assert_eq!(u["rate_limits"]["tokens_per_minute"], 1000);
    assert_eq!(u["rate_limits"]["max_concurrent_requests"], 2);
    assert_eq!(u["name"], "after");
    assert_eq!(u["monthly_budget_usd"], 12.5);

    // An empty body changes nothing.
    let same = ok(s.post(&path, &admin, json!({})));
    assert_eq!(same, u);

    // Everything cleared with null.
    let u = ok(s.post(
        &path,
        &admin,
        json!({
            "expires_at": null,
            "allowed_models": null,
            "allowed_ips": null,
            "rate_limits": null,
            "monthly_budget_usd": null
        }),
    ));
    let got = ok(s.get(&path, &admin));
    for v in [&u, &got] {
        assert!(v["expires_at"].is_null(), "{v}");
        assert!(v["allowed_models"].is_null(), "{v}");
        assert!(v["allowed_ips"].is_null(), "{v}");
        assert!(v["rate_limits"]["requests_per_minute"].is_null(), "{v}");
        assert!(v["rate_limits"]["tokens_per_minute"].is_null(), "{v}");
        assert!(v["rate_limits"]["max_concurrent_requests"].is_null(), "{v}");
        assert!(v["monthly_budget_usd"].is_null(), "{v}");
        assert_eq!(v["name"], "after");
    }

    // Permissions can be narrowed by an admin.
    let u = ok(s.post(&path, &admin, json!({"permissions": {"mode": "read_only"}})));
    assert_eq!(u["permissions"], json!({"mode": "read_only"}));

    // Each change is audited.
    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.updated",
        &admin,
    ));
    assert!(ids(&audit).len() >= 4, "{audit}");
    assert!(audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["target"]["id"] == id.as_str()));
}

#[test]
fn delete_revokes_for_good_and_is_idempotent() {
    let (s, admin, project) = setup();
    let keep = create_key(&s, &admin, &project, json!({"name": "keep"}));
    let k = create_key(&s, &admin, &project, json!({"name": "doomed"}));
    let id = k["id"].as_str().unwrap().to_owned();
    let secret = k["value"].as_str().unwrap().to_owned();
    assert_key_works(&s, &secret, &project);

    let expected =
        json!({"object": "organization.project.api_key.deleted", "id": id, "deleted": true});
    let d = ok(s.delete(&key_path(&project, &id), &admin));
    assert_eq!(d, expected);
    // The very next request with it is refused.
    assert_key_refused(&s, &secret, &project);
    // Deleting again answers the same.
    let d = ok(s.delete(&key_path(&project, &id), &admin));
    assert_eq!(d, expected);
    assert_key_refused(&s, &secret, &project);

    // Gone from the default list; listed as revoked on request.
    let listed = ok(s.get(&keys_path(&project), &admin));
    assert_eq!(ids(&listed), vec![keep["id"].as_str().unwrap().to_owned()]);
    let listed = ok(s.get(
        &format!("{}?include_revoked=true", keys_path(&project)),
        &admin,
    ));
    assert_eq!(ids(&listed).len(), 2);
    let revoked = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id.as_str())
        .expect("revoked key listed");
    assert_eq!(revoked["revoke_reason"], "user");
    assert_recent(&revoked["revoked_at"]);
    assert_no_secret(&listed, &secret);

    // Retrieve still shows it, revoked.
    let got = ok(s.get(&key_path(&project, &id), &admin));
    assert_eq!(got["revoke_reason"], "user");

    // Revoking twice wrote one audit entry.
    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.revoked",
        &admin,
    ));
    assert_eq!(ids(&audit).len(), 1, "{audit}");
    assert_eq!(audit["data"][0]["target"]["id"], id.as_str());

    // A revoked key cannot be rotated back to life.
    let r = s.post(
        &format!("{}/rotate", key_path(&project, &id)),
        &admin,
        json!({}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.get("value").is_none());
    assert_key_refused(&s, &secret, &project);

    // The other key is untouched.
    assert_key_works(&s, keep["value"].as_str().unwrap(), &project);
}

#[test]
fn rotate_without_grace_stops_the_old_secret_at_once() {
    let (s, admin, project) = setup();
    let k = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "rot", "allowed_models": ["m"]}),
    );
    let id = k["id"].as_str().unwrap().to_owned();
    let old = k["value"].as_str().unwrap().to_owned();
    assert_key_works(&s, &old, &project);

    let r = s.post(
        &format!("{}/rotate", key_path(&project, &id)),
        &admin,
        json!({"grace_period_seconds": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let new = r.body["value"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with("sk-kw-") && new.len() == 52, "{new}");
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["object"], "organization.project.api_key");
    assert_eq!(r.body["redacted_value"], redacted(&new).as_str());
    assert_eq!(r.body["name"], "rot");
    assert_eq!(r.body["allowed_models"], json!(["m"]));

    assert_key_refused(&s, &old, &project);
    assert_key_works(&s, &new, &project);

    // Still one key, showing the new redacted value and no secret.
    let listed = ok(s.get(&keys_path(&project), &admin));
    assert_eq!(ids(&listed), vec![id.clone()]);
    assert_eq!(listed["data"][0]["redacted_value"], redacted(&new).as_str());
    assert_no_secret(&listed, &new);
    assert_no_secret(&listed, &old);

    // An empty body means no grace too.
    let r = s.call(
        "POST",
        &format!("{}/rotate", key_path(&project, &id)),
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let newer = r.body["value"].as_str().unwrap().to_owned();
    assert_key_refused(&s, &new, &project);
    assert_key_works(&s, &newer, &project);
}

#[test]
fn rotate_with_grace_keeps_the_old_secret_and_bounds_the_grace() {
    let (s, admin, project) = setup();
    let k = create_key(&s, &admin, &project, json!({"name": "rot"}));
    let id = k["id"].as_str().unwrap().to_owned();
    let old = k["value"].as_str().unwrap().to_owned();
    let rotate = format!("{}/rotate", key_path(&project, &id));

    for bad in [604_801, -1, 10_000_000] {
        let r = s.post(&rotate, &admin, json!({"grace_period_seconds": bad}));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.body["error"]["param"], "grace_period_seconds");
        assert!(r.body.get("value").is_none());
    }
    // Nothing rotated by the refusals.
    assert_key_works(&s, &old, &project);
    let got = ok(s.get(&key_path(&project, &id), &admin));
    assert_eq!(got["redacted_value"], redacted(&old).as_str());

    let r = ok(s.post(&rotate, &admin, json!({"grace_period_seconds": 3600})));
    let new = r["value"].as_str().unwrap().to_owned();
    assert_key_works(&s, &new, &project);
    assert_key_works(&s, &old, &project);

    // The longest grace allowed, 7 days, is accepted.
    let r = ok(s.post(&rotate, &admin, json!({"grace_period_seconds": 604_800})));
    let newest = r["value"].as_str().unwrap().to_owned();
    assert_key_works(&s, &newest, &project);
    assert_key_works(&s, &new, &project);

    // Revoking the key ends every secret, graced or not.
    ok(s.delete(&key_path(&project, &id), &admin));
    for secret in [&old, &new, &newest] {
        assert_key_refused(&s, secret, &project);
    }
}

// -------------------------------------------------------------- admin keys

#[test]
fn admin_keys_list_create_retrieve_delete() {
    let (s, admin, _) = setup();
    let listed = ok(s.get("/v1/organization/admin_api_keys", &admin));
    assert_eq!(ids(&listed).len(), 1, "{listed}");
    let first = listed["data"][0].clone();
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["object"], "organization.admin_api_key");
    assert_eq!(first["redacted_value"], redacted(&admin).as_str());
    assert_eq!(first["owner"]["type"], "user");
    assert_eq!(first["owner"]["user"]["email"], EMAIL);
    assert!(first.get("value").is_none());
    assert_no_secret(&listed, &admin);

    let r = s.post(
        "/v1/organization/admin_api_keys",
        &admin,
        json!({"name": "automation"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let secret = r.body["value"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("sk-kwadmin-") && secret.len() == 57,
        "{secret}"
    );
    assert!(id.starts_with("key_"));
    assert_eq!(r.body["object"], "organization.admin_api_key");
    assert_eq!(r.body["name"], "automation");
    assert_eq!(r.body["redacted_value"], redacted(&secret).as_str());
    assert_recent(&r.body["created_at"]);
    assert!(r.body["expires_at"].is_null());

    // The new admin key works.
    let p = s.get("/v1/organization/projects", &secret);
    assert_eq!(p.status, 200, "{}", p.body);

    let got = ok(s.get(&format!("/v1/organization/admin_api_keys/{id}"), &admin));
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["name"], "automation");
    assert!(got.get("value").is_none());
    assert_no_secret(&got, &secret);

    let listed = ok(s.get("/v1/organization/admin_api_keys", &admin));
    assert_eq!(ids(&listed), vec![id.clone(), first_id.clone()]);
    assert_no_secret(&listed, &secret);
    let page = ok(s.get("/v1/organization/admin_api_keys?limit=1", &admin));
    assert_eq!(ids(&page), vec![id.clone()]);
    assert_eq!(page["has_more"], true);
    let page = ok(s.get(
        &format!("/v1/organization/admin_api_keys?limit=1&after={id}"),
        &admin,
    ));
    assert_eq!(ids(&page), vec![first_id.clone()]);
    assert_eq!(page["has_more"], false);

    // Delete: idempotent, and the key is refused from then on.
    let expected =
        json!({"object": "organization.admin_api_key.deleted", "id": id, "deleted": true});
    assert_eq!(
        ok(s.delete(&format!("/v1/organization/admin_api_keys/{id}"), &admin)),
        expected
    );
    assert_bad_key(&s.get("/v1/organization/projects", &secret), &secret);
    assert_bad_key(&s.get("/v1/organization/admin_api_keys", &secret), &secret);
    assert_eq!(
        ok(s.delete(&format!("/v1/organization/admin_api_keys/{id}"), &admin)),
        expected
    );
    let listed = ok(s.get("/v1/organization/admin_api_keys", &admin));
    assert_eq!(ids(&listed), vec![first_id.clone()]);

    // An admin key can revoke itself; then it is refused too.
    let d = ok(s.delete(
        &format!("/v1/organization/admin_api_keys/{first_id}"),
        &admin,
    ));
    assert_eq!(d["deleted"], true);
    assert_bad_key(&s.get("/v1/organization/projects", &admin), &admin);
}

#[test]
fn unknown_admin_key_id_is_404() {
    let (s, admin, project) = setup();
    let path = "/v1/organization/admin_api_keys/key_000000000000000000000000";
    let r = s.get(path, &admin);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "not_found");
    let r = s.delete(path, &admin);
    assert_eq!(r.status, 404, "{}", r.body);
    // A project key's id is not an admin key id.
    let k = create_key(&s, &admin, &project, json!({}));
    let path = format!(
        "/v1/organization/admin_api_keys/{}",
        k["id"].as_str().unwrap()
    );
    let r = s.delete(&path, &admin);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_key_works(&s, k["value"].as_str().unwrap(), &project);
}

#[test]
fn expired_keys_are_refused() {
    let (s, admin, project) = setup();
    let expires = now() + 2;
    let a = ok(s.post(
        "/v1/organization/admin_api_keys",
        &admin,
        json!({"name": "short-lived", "expires_at": expires}),
    ));
    assert_eq!(a["expires_at"], expires);
    let admin2 = a["value"].as_str().unwrap().to_owned();
    let k = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "short-lived", "expires_at": expires}),
    );
    let secret = k["value"].as_str().unwrap().to_owned();
    assert_eq!(
        ok(s.get("/v1/organization/projects", &admin2))["object"],
        "list"
    );
    assert_key_works(&s, &secret, &project);

    std::thread::sleep(Duration::from_millis(3500));

    assert_bad_key(&s.get("/v1/organization/projects", &admin2), &admin2);
    assert_bad_key(&s.get("/v1/organization/admin_api_keys", &admin2), &admin2);
    assert_key_refused(&s, &secret, &project);
    // The long-lived admin key is unaffected.
    ok(s.get("/v1/organization/projects", &admin));
}

// -------------------------------------------------------------- audit logs

fn own_admin_key_id(s: &Server, admin: &str) -> String {
    let listed = ok(s.get("/v1/organization/admin_api_keys", admin));
    listed["data"][0]["id"].as_str().unwrap().to_owned()
}

#[test]
fn audit_log_records_key_lifecycle_with_actor_and_type() {
    let (s, admin, project) = setup();
    let actor_key = own_admin_key_id(&s, &admin);
    let k = create_key(&s, &admin, &project, json!({"name": "audited"}));
    let id = k["id"].as_str().unwrap().to_owned();
    let first = k["value"].as_str().unwrap().to_owned();
    let r = ok(s.post(
        &format!("{}/rotate", key_path(&project, &id)),
        &admin,
        json!({"grace_period_seconds": 60}),
    ));
    let second = r["value"].as_str().unwrap().to_owned();
    ok(s.delete(&key_path(&project, &id), &admin));

    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.created&event_types[]=api_key.rotated&event_types[]=api_key.revoked",
        &admin,
    ));
    assert_no_secret(&audit, &first);
    assert_no_secret(&audit, &second);
    let entries = audit["data"].as_array().unwrap();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["api_key.revoked", "api_key.rotated", "api_key.created"],
        "{audit}"
    );
    for e in entries {
        assert_eq!(e["object"], "organization.audit_log");
        assert!(e["id"].as_str().unwrap().starts_with("audit_"), "{e}");
        assert_recent(&e["effective_at"]);
        assert_eq!(
            e["actor"],
            json!({"type": "api_key", "api_key": {"id": actor_key}}),
            "{e}"
        );
        assert_eq!(e["project"]["id"], project.as_str());
        assert_eq!(e["target"], json!({"type": "api_key", "id": id}));
        let ty = e["type"].as_str().unwrap();
        assert_eq!(e[ty]["id"], id.as_str(), "{e}");
        assert_eq!(e["ip_address"], "127.0.0.1", "{e}");
    }
    assert_eq!(
        entries[2]["api_key.created"]["data"]["redacted_value"],
        redacted(&first).as_str()
    );
    assert_eq!(entries[2]["api_key.created"]["data"]["name"], "audited");
    assert_eq!(
        entries[1]["api_key.rotated"]["data"]["grace_period_seconds"],
        60
    );
    assert_eq!(
        entries[1]["api_key.rotated"]["data"]["redacted_value"],
        redacted(&second).as_str()
    );
    assert_eq!(entries[0]["api_key.revoked"]["data"]["reason"], "user");

    // Keys created by a project key name that key as the actor.
    let writer = create_key(
        &s,
        &admin,
        &project,
        json!({"permissions": {"mode": "restricted", "keys": "write"}}),
    );
    let writer_id = writer["id"].as_str().unwrap();
    let child = create_key(
        &s,
        writer["value"].as_str().unwrap(),
        &project,
        json!({"permissions": {"mode": "restricted", "keys": "read"}}),
    );
    assert_eq!(child["created_by"], writer_id);
    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.created&limit=1",
        &admin,
    ));
    assert_eq!(audit["data"][0]["target"]["id"], child["id"]);
    assert_eq!(
        audit["data"][0]["actor"],
        json!({"type": "api_key", "api_key": {"id": writer_id}})
    );
}

#[test]
fn audit_log_filters_by_type_and_project_and_paginates() {
    let (s, admin, project) = setup();
    let p2 = create_project(&s, &admin, "second");
    let p2 = p2["id"].as_str().unwrap().to_owned();
    let k1 = create_key(&s, &admin, &project, json!({"name": "one"}));
    let k2 = create_key(&s, &admin, &p2, json!({"name": "two"}));
    ok(s.post(
        &format!("{}/rotate", key_path(&p2, k2["id"].as_str().unwrap())),
        &admin,
        json!({}),
    ));
    ok(s.delete(&key_path(&project, k1["id"].as_str().unwrap()), &admin));

    let all = ok(s.get("/v1/organization/audit_logs?limit=100", &admin));
    let all_ids = ids(&all);
    let all_types: HashSet<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "project.created",
        "api_key.created",
        "api_key.rotated",
        "api_key.revoked",
    ] {
        assert!(all_types.contains(t), "{t} missing from {all}");
    }
    assert_eq!(all["has_more"], false);

    // By type.
    let rotated = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.rotated",
        &admin,
    ));
    assert_eq!(ids(&rotated).len(), 1, "{rotated}");
    assert_eq!(rotated["data"][0]["target"]["id"], k2["id"]);
    let created = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.created",
        &admin,
    ));
    assert_eq!(ids(&created).len(), 2, "{created}");
    assert!(created["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "api_key.created"));
    let none = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.no_such_event",
        &admin,
    ));
    assert_eq!(none["data"], json!([]));

    // By project.
    let only2 = ok(s.get(
        &format!("/v1/organization/audit_logs?project_ids[]={p2}"),
        &admin,
    ));
    let entries = only2["data"].as_array().unwrap();
    assert!(entries.len() >= 3, "{only2}");
    assert!(
        entries.iter().all(|e| e["project"]["id"] == p2.as_str()),
        "{only2}"
    );
    let only1 = ok(s.get(
        &format!("/v1/organization/audit_logs?project_ids[]={project}"),
        &admin,
    ));
    assert!(only1["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["project"]["id"] == project.as_str()));
    assert!(ids(&only1).iter().all(|i| !ids(&only2).contains(i)));
    let both = ok(s.get(
        &format!(
            "/v1/organization/audit_logs?project_ids[]={project}&project_ids[]={p2}&limit=100"
        ),
        &admin,
    ));
    assert_eq!(ids(&both).len(), ids(&only1).len() + ids(&only2).len());

    // By type and project together.
    let r = ok(s.get(
        &format!(
            "/v1/organization/audit_logs?project_ids[]={project}&event_types[]=api_key.created"
        ),
        &admin,
    ));
    assert_eq!(ids(&r).len(), 1, "{r}");
    assert_eq!(r["data"][0]["target"]["id"], k1["id"]);

    // Pages of 2 walk the same entries in the same order.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/v1/organization/audit_logs?limit=2".to_owned(),
            Some(a) => format!("/v1/organization/audit_logs?limit=2&after={a}"),
        };
        let page = ok(s.get(&path, &admin));
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        if !page_ids.is_empty() {
            assert_eq!(page["first_id"], page_ids[0].as_str());
            assert_eq!(page["last_id"], page_ids.last().unwrap().as_str());
        }
        walked.extend(page_ids);
        if page["has_more"] == false {
            break;
        }
        after = Some(page["last_id"].as_str().unwrap().to_owned());
        assert!(walked.len() <= all_ids.len(), "pagination does not end");
    }
    assert_eq!(walked, all_ids);
}
