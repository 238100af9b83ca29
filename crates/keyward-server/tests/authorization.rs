//! Who may do what on the management API: other accounts' objects answer
//! 404 (never 403) and stay as they were, project keys reach their own
//! project only and within their permissions, bad or missing keys get 401
//! without echoing the key, and the operator's cap on active keys holds,
//! even under concurrent creates.

mod common;

use std::sync::{Arc, Barrier};

use common::{create_key, id, ids, key_path, keys_path, ok, secret, Reply, Server};
use keyward_core::key::PlainKey;
use keyward_core::KeyKind;
use serde_json::{json, Value};

/// Every key of a project, revoked ones included.
fn all_keys(s: &Server, admin: &str, project: &str) -> Value {
    ok(s.get(
        &format!("{}?include_revoked=true&limit=100", keys_path(project)),
        admin,
    ))
}

fn assert_not_found(r: &Reply, what: &str) {
    assert_eq!(r.status, 404, "{what}: {}", r.body);
    assert_eq!(r.body["error"]["code"], "not_found", "{what}: {}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert!(r.body.get("value").is_none(), "{what}: {}", r.body);
}

fn assert_insufficient(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(
        r.body["error"]["code"], "insufficient_permissions",
        "{what}: {}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient permissions"),
        "{what}: {}",
        r.body
    );
    assert!(r.body.get("value").is_none(), "{what}: {}", r.body);
}

/// OpenAI's mask, computed independently: 8 characters, `*`s, the last 4.
fn masked(key: &str) -> String {
    let n = key.chars().count();
    assert!(n > 12);
    let head: String = key.chars().take(8).collect();
    let tail: String = key.chars().skip(n - 4).collect();
    format!("{head}{}{tail}", "*".repeat(n - 12))
}

fn assert_invalid_key(r: &Reply, presented: &str) {
    assert_eq!(r.status, 401, "{presented}: {}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_api_key", "{}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert!(r.body["error"]["param"].is_null());
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Incorrect API key provided: "),
        "{message}"
    );
    assert!(message.contains(&masked(presented)), "{message}");
    let text = r.body.to_string();
    assert!(!text.contains(presented), "the key is echoed: {text}");
    let middle = &presented[8..presented.len() - 4];
    assert!(!text.contains(middle), "the key's middle is echoed: {text}");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
}

// ---------------------------------------------------- other accounts: 404

#[test]
fn another_accounts_projects_and_keys_answer_404_and_stay_unchanged() {
    let s = Server::start();
    let a = s.create_operator("alice@example.com");
    let b = s.create_operator("bob@example.com");
    let pa = s.default_project(&a);
    let pb = s.default_project(&b);
    assert_ne!(pa, pb);
    let ka = create_key(&s, &a, &pa, json!({"name": "alice's"}));
    let kb = create_key(&s, &b, &pb, json!({"name": "bob's"}));
    let kb_id = id(&kb);
    let kb_secret = secret(&kb);
    let b_project_before = ok(s.get(&format!("/v1/organization/projects/{pb}"), &b));
    let b_keys_before = all_keys(&s, &b, &pb);

    // A sees only A's project.
    assert_eq!(
        ids(&ok(s.get("/v1/organization/projects", &a))),
        vec![pa.clone()]
    );

    // B's project, through every project endpoint.
    let project = format!("/v1/organization/projects/{pb}");
    assert_not_found(&s.get(&project, &a), "retrieve B's project");
    assert_not_found(
        &s.post(&project, &a, json!({"name": "taken over"})),
        "rename B's project",
    );
    assert_not_found(
        &s.post(&format!("{project}/archive"), &a, json!({})),
        "archive B's project",
    );
    assert_not_found(&s.get(&keys_path(&pb), &a), "list B's keys");
    assert_not_found(
        &s.post(&keys_path(&pb), &a, json!({"name": "planted"})),
        "create a key in B's project",
    );
    assert_not_found(
        &s.get(
            &format!("/v1/organization/audit_logs?project_ids[]={pb}"),
            &a,
        ),
        "B's audit log",
    );

    // B's key id under B's path and under A's own project path.
    for base in [&pb, &pa] {
        let path = key_path(base, &kb_id);
        assert_not_found(&s.get(&path, &a), &format!("GET {path}"));
        assert_not_found(
            &s.post(
                &path,
                &a,
                json!({"name": "renamed by A", "allowed_ips": ["10.0.0.0/8"]}),
            ),
            &format!("update {path}"),
        );
        assert_not_found(
            &s.post(
                &format!("{path}/rotate"),
                &a,
                json!({"grace_period_seconds": 0}),
            ),
            &format!("rotate {path}"),
        );
        assert_not_found(&s.delete(&path, &a), &format!("DELETE {path}"));
    }
    // A's key id under B's project path, asked by A.
    assert_not_found(
        &s.get(&key_path(&pb, &id(&ka)), &a),
        "A's key under B's path",
    );

    // The 404s for foreign and for nonexistent objects look alike.
    let foreign = s.get(&key_path(&pa, &kb_id), &a);
    let missing = s.get(&key_path(&pa, "key_000000000000000000000000"), &a);
    assert_eq!(foreign.status, missing.status);
    assert_eq!(foreign.body["error"]["code"], missing.body["error"]["code"]);

    // Nothing changed for B.
    assert_eq!(
        ok(s.get(&format!("/v1/organization/projects/{pb}"), &b)),
        b_project_before
    );
    assert_eq!(all_keys(&s, &b, &pb), b_keys_before);
    assert_eq!(ids(&b_keys_before), vec![kb_id.clone()]);
    let r = s.get(
        "/v1/organization/usage/completions?start_time=0",
        &kb_secret,
    );
    assert_eq!(r.status, 200, "B's key stopped working: {}", r.body);
    assert_eq!(s.get("/v1/models", &kb_secret).status, 200);
    let audit = ok(s.get(
        &format!("/v1/organization/audit_logs?project_ids[]={pb}&limit=100"),
        &b,
    ));
    for e in audit["data"].as_array().unwrap() {
        assert!(
            e["type"] == "project.created" || e["type"] == "api_key.created",
            "unexpected change in B's project: {e}"
        );
    }
    // A's unfiltered audit log shows nothing of B's.
    let a_audit = ok(s.get("/v1/organization/audit_logs?limit=100", &a));
    assert!(!a_audit.to_string().contains(&pb), "{a_audit}");
    assert!(!a_audit.to_string().contains(&kb_id), "{a_audit}");
}

#[test]
fn another_accounts_admin_keys_answer_404() {
    let s = Server::start();
    let a = s.create_operator("alice@example.com");
    let b = s.create_operator("bob@example.com");
    let b_keys = ok(s.get("/v1/organization/admin_api_keys", &b));
    let b_key_id = b_keys["data"][0]["id"].as_str().unwrap().to_owned();

    let a_keys = ok(s.get("/v1/organization/admin_api_keys", &a));
    assert_eq!(ids(&a_keys).len(), 1);
    assert!(!ids(&a_keys).contains(&b_key_id));

    let path = format!("/v1/organization/admin_api_keys/{b_key_id}");
    assert_not_found(&s.get(&path, &a), "B's admin key");
    assert_not_found(&s.delete(&path, &a), "delete B's admin key");
    assert_eq!(
        ok(s.get("/v1/organization/projects", &b))["object"],
        "list",
        "B's admin key stopped working"
    );
    assert_eq!(ok(s.get("/v1/organization/admin_api_keys", &b)), b_keys);

    // An admin key's id under a project path is not a project key.
    let pa = s.default_project(&a);
    assert_not_found(
        &s.get(&key_path(&pa, &b_key_id), &a),
        "admin key as project key",
    );
    let own = ids(&a_keys)[0].clone();
    assert_not_found(
        &s.delete(&key_path(&pa, &own), &a),
        "own admin key under a project path",
    );
    assert_eq!(s.get("/v1/organization/projects", &a).status, 200);
}

// --------------------------------------------------------- project keys

#[test]
fn keys_write_project_key_manages_only_its_own_project() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let own = s.default_project(&admin);
    let other = ok(s.post(
        "/v1/organization/projects",
        &admin,
        json!({"name": "other"}),
    ));
    let other = other["id"].as_str().unwrap().to_owned();
    let other_key = create_key(&s, &admin, &other, json!({"name": "other's"}));
    let writer = create_key(
        &s,
        &admin,
        &own,
        json!({"name": "writer", "permissions": {"mode": "restricted", "keys": "write"}}),
    );
    let w = secret(&writer);

    // Its own project: list, create, retrieve, update, rotate, delete.
    let listed = ok(s.get(&keys_path(&own), &w));
    assert_eq!(ids(&listed), vec![id(&writer)]);
    let r = s.post(
        &keys_path(&own),
        &w,
        json!({"name": "child", "permissions": {"mode": "restricted", "keys": "read"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let child = r.body;
    assert!(secret(&child).starts_with("sk-kw-"));
    assert_eq!(child["created_by"], id(&writer).as_str());
    let cp = key_path(&own, &id(&child));
    assert_eq!(ok(s.get(&cp, &w))["name"], "child");
    assert_eq!(ok(s.post(&cp, &w, json!({"name": "kid"})))["name"], "kid");
    let rotated = ok(s.post(&format!("{cp}/rotate"), &w, json!({})));
    assert_ne!(secret(&rotated), secret(&child));
    assert_eq!(ok(s.delete(&cp, &w))["deleted"], true);
    assert_eq!(ids(&ok(s.get(&keys_path(&own), &w))), vec![id(&writer)]);

    // Another project of the same account: 404, and nothing created there.
    assert_not_found(&s.get(&keys_path(&other), &w), "list other project");
    assert_not_found(
        &s.post(
            &keys_path(&other),
            &w,
            json!({"permissions": {"mode": "restricted", "keys": "read"}}),
        ),
        "create in other project",
    );
    for base in [&other, &own] {
        let path = key_path(base, &id(&other_key));
        assert_not_found(&s.get(&path, &w), &path);
        assert_not_found(&s.post(&path, &w, json!({"name": "x"})), &path);
        assert_not_found(&s.post(&format!("{path}/rotate"), &w, json!({})), &path);
        assert_not_found(&s.delete(&path, &w), &path);
    }
    assert_eq!(ids(&all_keys(&s, &admin, &other)), vec![id(&other_key)]);
    assert_eq!(
        ok(s.get(&key_path(&other, &id(&other_key)), &admin))["name"],
        "other's"
    );
    assert_eq!(s.get("/v1/models", &secret(&other_key)).status, 200);

    // Account-level endpoints: 401 insufficient_permissions.
    assert_insufficient(&s.get("/v1/organization/projects", &w), "list projects");
    assert_insufficient(
        &s.post("/v1/organization/projects", &w, json!({"name": "mine"})),
        "create project",
    );
    assert_insufficient(
        &s.get(&format!("/v1/organization/projects/{own}"), &w),
        "retrieve own project",
    );
    assert_insufficient(
        &s.post(
            &format!("/v1/organization/projects/{own}/archive"),
            &w,
            json!({}),
        ),
        "archive own project",
    );
    assert_insufficient(&s.get("/v1/organization/admin_api_keys", &w), "admin keys");
    assert_insufficient(
        &s.post("/v1/organization/admin_api_keys", &w, json!({})),
        "create admin key",
    );
    assert_insufficient(&s.get("/v1/organization/audit_logs", &w), "audit logs");
    // Nothing was created by those refusals.
    let projects = ok(s.get("/v1/organization/projects?include_archived=true", &admin));
    assert_eq!(ids(&projects).len(), 2);
    assert!(projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "active"));
    assert_eq!(
        ids(&ok(s.get("/v1/organization/admin_api_keys", &admin))).len(),
        1
    );
}

#[test]
fn a_key_without_keys_scope_cannot_reach_the_keys_api() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let k = create_key(
        &s,
        &admin,
        &project,
        json!({"permissions": {"mode": "restricted", "models": "read", "chat_completions": "write"}}),
    );
    let r = s.get(&keys_path(&project), &secret(&k));
    assert_insufficient(&r, "list without keys scope");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keys.read"),
        "{}",
        r.body
    );
    let r = s.post(&keys_path(&project), &secret(&k), json!({}));
    assert_insufficient(&r, "create without keys scope");
    assert_eq!(ids(&all_keys(&s, &admin, &project)), vec![id(&k)]);
    // It still calls models.
    assert_eq!(s.get("/v1/models", &secret(&k)).status, 200);
}

/// As on OpenAI's platform, `read_only` (and `all`) keys call models and
/// read usage but do not manage keys: reading the key list takes an
/// explicit `keys` grant.
#[test]
fn read_only_and_all_keys_can_neither_read_nor_change_keys() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let target = create_key(&s, &admin, &project, json!({"name": "target"}));
    let ro = create_key(
        &s,
        &admin,
        &project,
        json!({"name": "reader", "permissions": {"mode": "read_only"}}),
    );
    let before = all_keys(&s, &admin, &project);
    assert_eq!(ids(&before).len(), 2);
    let tp = key_path(&project, &id(&target));

    for (who, r) in [("read_only", secret(&ro)), ("all", secret(&target))] {
        let listed = s.get(&keys_path(&project), &r);
        assert_insufficient(&listed, &format!("{who}: list"));
        assert!(
            listed.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("keys.read"),
            "{}",
            listed.body
        );
        assert_insufficient(&s.get(&tp, &r), &format!("{who}: retrieve"));
        let res = s.post(&keys_path(&project), &r, json!({"name": "sneaky"}));
        assert_insufficient(&res, &format!("{who}: create"));
        assert!(
            res.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("keys.write"),
            "{}",
            res.body
        );
        assert_insufficient(
            &s.post(
                &keys_path(&project),
                &r,
                json!({"permissions": {"mode": "read_only"}}),
            ),
            &format!("{who}: create read-only"),
        );
        assert_insufficient(&s.delete(&tp, &r), &format!("{who}: delete"));
        assert_insufficient(
            &s.post(&format!("{tp}/rotate"), &r, json!({})),
            &format!("{who}: rotate"),
        );
        assert_insufficient(
            &s.post(&tp, &r, json!({"name": "renamed"})),
            &format!("{who}: update"),
        );
        let own = key_path(&project, &id(&ro));
        assert_insufficient(&s.delete(&own, &r), &format!("{who}: delete a key"));
        assert_insufficient(
            &s.post(&own, &r, json!({"permissions": {"mode": "all"}})),
            &format!("{who}: widen a key"),
        );
        // What they may do on the management API: read usage.
        let usage = s.get("/v1/organization/usage/completions?start_time=0", &r);
        assert_eq!(usage.status, 200, "{who}: {}", usage.body);
    }

    // Nothing changed: same keys, same secrets, same settings.
    let after = all_keys(&s, &admin, &project);
    assert_eq!(after, before);
    assert_eq!(s.get("/v1/models", &secret(&target)).status, 200);
    assert_eq!(s.get("/v1/models", &secret(&ro)).status, 200);
}

#[test]
fn project_key_cannot_create_or_grant_anything_broader_than_itself() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let writer = create_key(
        &s,
        &admin,
        &project,
        json!({"permissions": {"mode": "restricted", "keys": "write", "models": "read"}}),
    );
    let w = secret(&writer);
    let before = all_keys(&s, &admin, &project);

    for broader in [
        json!({"permissions": {"mode": "all"}}),
        json!({"permissions": {"mode": "read_only"}}),
        json!({"permissions": {"mode": "restricted", "keys": "write", "models": "write"}}),
        json!({"permissions": {"mode": "restricted", "embeddings": "read"}}),
    ] {
        let r = s.post(&keys_path(&project), &w, broader.clone());
        assert_eq!(r.status, 400, "{broader}: {}", r.body);
        assert_eq!(r.body["error"]["param"], "permissions", "{}", r.body);
        assert!(r.body.get("value").is_none());
    }
    assert_eq!(all_keys(&s, &admin, &project), before);

    // Left out, the permissions are the maker's (a key-made key is a copy
    // of its maker, narrowed by what is given).
    let copy = create_key(&s, &w, &project, json!({}));
    assert_eq!(copy["permissions"], writer["permissions"], "{copy}");

    // Equal or narrower is fine.
    let same = create_key(
        &s,
        &admin,
        &project,
        json!({"permissions": {"mode": "restricted", "keys": "write", "models": "read"}}),
    );
    let narrower = create_key(
        &s,
        &w,
        &project,
        json!({"permissions": {"mode": "restricted", "models": "read"}}),
    );
    assert_eq!(narrower["permissions"]["models"], "read");
    assert_eq!(narrower["permissions"]["keys"], "none");

    // Nor can it widen a key it may change (itself, the keys made under
    // it) by update; a key it did not make it may not change at all.
    for (target, status) in [(id(&writer), 400), (id(&narrower), 400), (id(&same), 401)] {
        let path = key_path(&project, &target);
        let before = ok(s.get(&path, &admin));
        let r = s.post(&path, &w, json!({"permissions": {"mode": "all"}}));
        assert_eq!(r.status, status, "{}", r.body);
        if status == 400 {
            assert_eq!(r.body["error"]["param"], "permissions");
        } else {
            assert_eq!(r.body["error"]["code"], "insufficient_permissions");
        }
        assert_eq!(ok(s.get(&path, &admin)), before);
    }
}

/// Rotating a key hands out its new secret, so a restricted key that may
/// rotate a broader key in its project would obtain that key's powers.
#[test]
fn project_key_cannot_obtain_a_broader_keys_secret_by_rotating_it() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let full = create_key(&s, &admin, &project, json!({"name": "full"}));
    let writer = create_key(
        &s,
        &admin,
        &project,
        json!({"permissions": {"mode": "restricted", "keys": "write"}}),
    );
    let path = key_path(&project, &id(&full));
    let r = s.post(
        &format!("{path}/rotate"),
        &secret(&writer),
        json!({"grace_period_seconds": 0}),
    );
    assert_ne!(
        r.status, 200,
        "a keys-only key rotated an all-permissions key and received its new secret: {}",
        r.body
    );
    assert!(r.body.get("value").is_none(), "{}", r.body);
    assert_eq!(s.get("/v1/models", &secret(&full)).status, 200);
}

// ------------------------------------------------------- missing / bad keys

#[test]
fn missing_authorization_is_401() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let paths = [
        ("GET", "/v1/organization/projects".to_owned()),
        ("POST", "/v1/organization/projects".to_owned()),
        ("GET", keys_path(&project)),
        ("POST", keys_path(&project)),
        ("GET", "/v1/organization/admin_api_keys".to_owned()),
        ("GET", "/v1/organization/audit_logs".to_owned()),
    ];
    for (method, path) in &paths {
        let r = s.call(method, path, None, Some(json!({"name": "x"})));
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("You didn't provide an API key"),
            "{message}"
        );
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
        assert!(r.body["error"].as_object().unwrap().contains_key("param"));
        assert!(r.body["error"].as_object().unwrap().contains_key("code"));
    }
    // Other schemes and an empty token count as no key.
    for header in ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer", admin.as_str()] {
        let r = s
            .client
            .get(format!("{}/v1/organization/projects", s.base))
            .header("authorization", header)
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{header}");
        let body: Value = r.json().unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("You didn't provide an API key"),
            "{header}: {message}"
        );
        assert!(!body.to_string().contains(&admin));
    }
    // Nothing was created without a key.
    assert_eq!(
        ids(&ok(s.get("/v1/organization/projects", &admin))).len(),
        1
    );
    assert_eq!(ids(&ok(s.get(&keys_path(&project), &admin))).len(), 0);
}

#[test]
fn malformed_and_unknown_keys_are_401_and_shown_masked() {
    let s = Server::start();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let k = create_key(&s, &admin, &project, json!({}));
    let real = secret(&k);

    // One character changed: the checksum fails.
    let mut typo = real.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    // Well formed, checksum right, but never issued.
    let unknown = PlainKey::generate(KeyKind::Project).expose().to_owned();
    let unknown_admin = PlainKey::generate(KeyKind::Admin).expose().to_owned();
    let mut admin_typo = admin.clone().into_bytes();
    let last = admin_typo.len() - 1;
    admin_typo[last] = if admin_typo[last] == b'0' { b'1' } else { b'0' };
    let admin_typo = String::from_utf8(admin_typo).unwrap();

    let candidates = [
        typo,
        unknown,
        unknown_admin,
        admin_typo,
        format!("{real}x"),
        real[..real.len() - 1].to_owned(),
        "not-a-key-at-all-1234567890".to_owned(),
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
    ];
    for c in &candidates {
        for path in [
            "/v1/organization/projects".to_owned(),
            keys_path(&project),
            "/v1/organization/admin_api_keys".to_owned(),
        ] {
            assert_invalid_key(&s.get(&path, c), c);
        }
        // The gateway tells admin-shaped strings apart before any lookup
        // (admin keys never call models), so only the others apply there.
        if !c.starts_with("sk-kwadmin-") {
            assert_invalid_key(&s.get("/v1/models", c), c);
        }
        let r = s.post(&keys_path(&project), c, json!({"name": "x"}));
        assert_invalid_key(&r, c);
    }
    // A short string is masked entirely.
    let r = s.get("/v1/organization/projects", "abc123");
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "invalid_api_key");
    assert!(!r.body.to_string().contains("abc123"), "{}", r.body);

    // A revoked key gets the same answer.
    ok(s.delete(&key_path(&project, &id(&k)), &admin));
    assert_invalid_key(&s.get(&keys_path(&project), &real), &real);

    // Nothing was created by the refused requests.
    assert_eq!(ids(&all_keys(&s, &admin, &project)), vec![id(&k)]);
}

// --------------------------------------------------------- active key cap

const CAP: (&str, &str) = ("KEYWARD_LIMITS__MAX_ACTIVE_KEYS_PER_PROJECT", "3");

#[test]
fn active_key_cap_refuses_the_fourth_key_until_one_is_revoked() {
    let s = Server::start_with(&[CAP]);
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let keys: Vec<Value> = (0..3)
        .map(|i| {
            create_key(
                &s,
                &admin,
                &project,
                json!({"name": format!("k{i}"), "permissions": {"mode": "restricted", "keys": "write"}}),
            )
        })
        .collect();

    let r = s.post(&keys_path(&project), &admin, json!({"name": "fourth"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "active_key_limit_reached");
    assert!(r.body["error"]["message"].as_str().unwrap().contains('3'));
    assert!(r.body.get("value").is_none());
    assert_eq!(ids(&all_keys(&s, &admin, &project)).len(), 3);
    let audit = ok(s.get(
        "/v1/organization/audit_logs?event_types[]=api_key.created",
        &admin,
    ));
    assert_eq!(ids(&audit).len(), 3, "a refused key was audited: {audit}");

    // A project key at the cap is refused the same way.
    let r = s.post(
        &keys_path(&project),
        &secret(&keys[0]),
        json!({"name": "by key"}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "active_key_limit_reached");

    // Rotating does not add a key, so it works at the cap.
    ok(s.post(
        &format!("{}/rotate", key_path(&project, &id(&keys[1]))),
        &admin,
        json!({}),
    ));

    // The cap is per project.
    let other = ok(s.post(
        "/v1/organization/projects",
        &admin,
        json!({"name": "other"}),
    ));
    let other = other["id"].as_str().unwrap().to_owned();
    create_key(&s, &admin, &other, json!({}));

    // Revoking one makes room for exactly one.
    ok(s.delete(&key_path(&project, &id(&keys[2])), &admin));
    create_key(&s, &admin, &project, json!({"name": "replacement"}));
    let r = s.post(&keys_path(&project), &admin, json!({"name": "fifth"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "active_key_limit_reached");
    let listed = ok(s.get(&keys_path(&project), &admin));
    assert_eq!(ids(&listed).len(), 3);
    assert_eq!(ids(&all_keys(&s, &admin, &project)).len(), 4);
}

#[test]
fn active_key_cap_holds_under_concurrent_creates() {
    let s = Arc::new(Server::start_with(&[CAP]));
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let n = 10;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (s, admin, project, barrier) =
                (s.clone(), admin.clone(), project.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                s.post(
                    &keys_path(&project),
                    &admin,
                    json!({"name": format!("race{i}")}),
                )
            })
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        created.len(),
        3,
        "statuses: {:?}",
        replies
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>()
    );
    for r in &replies {
        if r.status != 200 {
            assert_eq!(r.status, 409, "{}", r.body);
            assert_eq!(r.body["error"]["code"], "active_key_limit_reached");
        }
    }
    let listed = all_keys(&s, &admin, &project);
    let mut listed_ids = ids(&listed);
    listed_ids.sort();
    let mut created_ids: Vec<String> = created.iter().map(|r| id(&r.body)).collect();
    created_ids.sort();
    assert_eq!(listed_ids, created_ids);
    for r in &created {
        assert_eq!(s.get("/v1/models", &secret(&r.body)).status, 200);
    }
}
