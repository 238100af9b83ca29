//! The gateway's limits, budgets and revocation, against the real binary
//! with a small in-test upstream standing in for a remote provider.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::upstream::gateway;
use common::Server;
use serde_json::{json, Value};

/// A project key with `settings`, made through the management API.
fn key_with(s: &Server, settings: Value) -> (String, String) {
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let r = s.post(
        &format!("/v1/organization/projects/{project}/api_keys"),
        &admin,
        settings,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    (
        r.body["value"].as_str().unwrap().to_owned(),
        r.body["id"].as_str().unwrap().to_owned(),
    )
}

fn chat(s: &Server, key: &str, model: &str) -> common::Reply {
    s.post(
        "/v1/chat/completions",
        key,
        json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
    )
}

/// Runs `n` chat calls at once; returns their replies.
fn concurrently(s: &Arc<Server>, key: &str, model: &str, n: usize) -> Vec<common::Reply> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (s, key, model, barrier) =
                (s.clone(), key.to_owned(), model.to_owned(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                chat(&s, &key, &model)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn requests_per_minute_hold_under_tenfold_overload() {
    let s = Arc::new(gateway());
    let (key, _) = key_with(&s, json!({"rate_limits": {"requests_per_minute": 5}}));
    let replies = concurrently(&s, &key, "m", 50);
    let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(
        !ok.is_empty() && ok.len() <= 6,
        "{} of 50 accepted with a limit of 5 per minute",
        ok.len()
    );
    for r in &replies {
        assert_eq!(r.headers["x-ratelimit-limit-requests"], "5");
        assert!(r.headers.contains_key("x-ratelimit-remaining-requests"));
        assert!(r.headers.contains_key("x-ratelimit-reset-requests"));
        if r.status == 429 {
            assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
            let msg = r.body["error"]["message"].as_str().unwrap();
            assert!(
                msg.starts_with("Rate limit reached for m in project proj_"),
                "{msg}"
            );
            assert!(msg.contains("on requests per min (RPM): Limit 5"), "{msg}");
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "retry-after {retry}");
        } else {
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
}

#[test]
fn tokens_per_minute_are_enforced_and_named() {
    let s = gateway();
    let (key, _) = key_with(&s, json!({"rate_limits": {"tokens_per_minute": 150}}));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = chat(&s, &key, "m");
        assert_eq!(r.headers["x-ratelimit-limit-tokens"], "150");
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert_eq!(r.body["error"]["type"], "tokens");
            assert!(r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tokens per min (TPM): Limit 150"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "never limited: {statuses:?}");
    assert!(
        statuses.iter().filter(|&&c| c == 200).count() >= 2,
        "{statuses:?}"
    );
}

#[test]
fn concurrent_requests_are_capped() {
    let s = Arc::new(gateway());
    let (key, _) = key_with(&s, json!({"rate_limits": {"max_concurrent_requests": 2}}));
    let replies = concurrently(&s, &key, "slow", 5);
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        2,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(replies
        .iter()
        .all(|r| r.status == 200 || r.body["error"]["code"] == "rate_limit_exceeded"));
    // The slots are free again once the calls finish.
    assert_eq!(chat(&s, &key, "slow").status, 200);
}

#[test]
fn fifty_concurrent_calls_overshoot_a_small_budget_by_at_most_one_call() {
    const CALL: i64 = 30_000; // micro-dollars: 30 tokens at $1000 per million
    const BUDGET: i64 = 250_000;
    let s = Arc::new(gateway());
    let (key, key_id) = key_with(&s, json!({"monthly_budget_usd": BUDGET as f64 / 1e6}));
    let replies = concurrently(&s, &key, "m", 50);
    let ok = replies.iter().filter(|r| r.status == 200).count() as i64;
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "insufficient_quota");
        assert_eq!(r.body["error"]["type"], "insufficient_quota");
    }
    assert!(
        ok >= 5,
        "only {ok} calls within a budget that fits at least 5"
    );
    assert!(
        ok * CALL <= BUDGET + CALL,
        "{ok} calls spent {} of {BUDGET}",
        ok * CALL
    );
    // Calls one at a time use up what is left, then stop.
    let mut ok = ok;
    loop {
        let r = chat(&s, &key, "m");
        if r.status == 429 {
            assert_eq!(r.body["error"]["code"], "insufficient_quota");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        ok += 1;
        assert!(
            ok * CALL <= BUDGET + CALL,
            "{ok} calls spent {} of {BUDGET}",
            ok * CALL
        );
    }
    assert!(ok * CALL >= BUDGET, "stopped at {} of {BUDGET}", ok * CALL);

    // What the ledger recorded agrees.
    let mut s = Arc::try_unwrap(s).ok().expect("no other handle");
    s.stop();
    let spent = ledger_spend(&s, &key_id);
    assert_eq!(spent, ok * CALL);
}

/// Sum of the key's ledger costs, read from the database after a stop.
fn ledger_spend(s: &Server, key_id: &str) -> i64 {
    // Key ids are base62: nothing to escape.
    let rows: Vec<(i64,)> = s.query(&format!(
        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_ledger WHERE key_id = '{key_id}'"
    ));
    rows[0].0
}

#[test]
fn revoked_keys_stop_at_once_here_and_within_a_second_from_the_cli() {
    let s = gateway();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let make = || {
        let r = s.post(
            &format!("/v1/organization/projects/{project}/api_keys"),
            &admin,
            json!({}),
        );
        (
            r.body["value"].as_str().unwrap().to_owned(),
            r.body["id"].as_str().unwrap().to_owned(),
        )
    };

    let (key, id) = make();
    assert_eq!(chat(&s, &key, "m").status, 200); // now cached
    let r = s.delete(
        &format!("/v1/organization/projects/{project}/api_keys/{id}"),
        &admin,
    );
    assert_eq!(r.status, 200);
    let r = chat(&s, &key, "m");
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "invalid_api_key");

    let (key, id) = make();
    assert_eq!(chat(&s, &key, "m").status, 200);
    let out = common::run(s.cli().args(["keys", "revoke", &id]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    loop {
        let r = chat(&s, &key, "m");
        if r.status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn project_limits_and_budget_cover_all_its_keys() {
    let s = gateway();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let path = format!("/v1/organization/projects/{project}");
    let mut keys = (0..2).map(|_| {
        let r = s.post(&format!("{path}/api_keys"), &admin, json!({}));
        r.body["value"].as_str().unwrap().to_owned()
    });
    let (a, b) = (keys.next().unwrap(), keys.next().unwrap());
    assert_eq!(chat(&s, &a, "m").status, 200); // both keys cached before the change
    assert_eq!(chat(&s, &b, "m").status, 200);

    let r = s.post(
        &path,
        &admin,
        json!({"rate_limits": {"requests_per_minute": 2}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rate_limits"]["requests_per_minute"], 2);
    assert_eq!(r.body["name"], "Default project");
    assert_eq!(chat(&s, &a, "m").status, 200);
    let r = chat(&s, &b, "m");
    assert_eq!(
        r.status, 429,
        "the project's second call within its minute: {}",
        r.body
    );
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "in project {project} on requests per min (RPM): Limit 2"
        )),
        "{msg}"
    );
    assert!(!msg.contains("for key"), "{msg}");

    let r = s.post(
        &path,
        &admin,
        json!({"rate_limits": null, "monthly_budget_usd": 0.05}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rate_limits"]["requests_per_minute"], Value::Null);
    assert_eq!(r.body["monthly_budget_usd"], 0.05);
    // The calls so far cost $0.09: the project's budget is already spent.
    let r = chat(&s, &b, "m");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "insufficient_quota");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this project has spent $0.09"),
        "{}",
        r.body
    );
    let r = s.post(&path, &admin, json!({"monthly_budget_usd": 1.0}));
    assert_eq!(r.status, 200);
    assert_eq!(chat(&s, &a, "m").status, 200);

    for (body, param) in [
        (json!({"monthly_budget_usd": -1}), "monthly_budget_usd"),
        (
            json!({"rate_limits": {"requests_per_minute": 0}}),
            "requests_per_minute",
        ),
        (json!({"rate_limits": {"rpm": 5}}), "rate_limits.rpm"),
        (json!({"name": ""}), "name"),
    ] {
        let r = s.post(&path, &admin, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["param"], param, "{body}");
    }
}
