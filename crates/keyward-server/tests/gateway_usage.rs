//! Usage and costs APIs, `keyward usage --csv` and `/metrics`, after real
//! calls through the gateway.

mod common;

use std::time::{Duration, Instant};

use common::upstream::gateway;
use common::Server;
use serde_json::{json, Value};

fn chat(s: &Server, key: &str) {
    let r = s.post(
        "/v1/chat/completions",
        key,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Polls `path` until `done` holds: the ledger is written off the request path.
fn eventually(s: &Server, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.get(path, key);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        if done(&r.body) || Instant::now() > deadline {
            return r.body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn results(page: &Value) -> Vec<Value> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn usage_costs_cli_and_metrics_agree_with_the_calls_made() {
    let s = gateway();
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let new_key = |body: Value| {
        let r = s.post(
            &format!("/v1/organization/projects/{project}/api_keys"),
            &admin,
            body,
        );
        (
            r.body["value"].as_str().unwrap().to_owned(),
            r.body["id"].as_str().unwrap().to_owned(),
        )
    };
    let (a, a_id) = new_key(json!({"name": "a"}));
    let (b, b_id) = new_key(json!({"name": "b"}));
    for _ in 0..3 {
        chat(&s, &a);
    }
    chat(&s, &b);
    let start = keyward_core::time::now_unix() - 3600;

    let path = format!("/v1/organization/usage/completions?start_time={start}&group_by[]=api_key_id&bucket_width=1h");
    let page = eventually(&s, &path, &admin, |p| {
        results(p)
            .iter()
            .map(|r| r["num_model_requests"].as_i64().unwrap())
            .sum::<i64>()
            == 4
    });
    assert_eq!(page["object"], "page");
    let rows = results(&page);
    let of = |id: &str| {
        rows.iter()
            .find(|r| r["api_key_id"] == id)
            .unwrap_or_else(|| panic!("no row for {id}: {page}"))
    };
    assert_eq!(of(&a_id)["num_model_requests"], 3);
    assert_eq!(of(&a_id)["input_tokens"], 30);
    assert_eq!(of(&a_id)["output_tokens"], 60);
    assert_eq!(of(&b_id)["num_model_requests"], 1);
    assert_eq!(of(&a_id)["object"], "organization.usage.completions.result");

    // One-minute buckets and a model filter see the same requests.
    let path = format!(
        "/v1/organization/usage/completions?start_time={start}&bucket_width=1m&limit=61&models[]=m"
    );
    let total: i64 = results(&s.get(&path, &admin).body)
        .iter()
        .map(|r| r["num_model_requests"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 4);
    let path = format!(
        "/v1/organization/usage/completions?start_time={start}&bucket_width=1h&models[]=other"
    );
    assert!(results(&s.get(&path, &admin).body).is_empty());

    // Costs: 4 calls of 30 tokens at $1000 per million = $0.12.
    let path = format!("/v1/organization/costs?start_time={start}&group_by[]=line_item");
    let costs = results(&s.get(&path, &admin).body);
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert_eq!(costs[0]["line_item"], "m");
    assert!(
        (costs[0]["amount"]["value"].as_f64().unwrap() - 0.12).abs() < 1e-9,
        "{costs:?}"
    );
    assert_eq!(costs[0]["amount"]["currency"], "usd");

    // A project key sees its own project's usage; without the usage scope it may not.
    let path = format!("/v1/organization/usage/completions?start_time={start}");
    assert_eq!(s.get(&path, &a).status, 200);
    let (no_usage, _) =
        new_key(json!({"permissions": {"mode": "restricted", "chat_completions": "write"}}));
    let r = s.get(&path, &no_usage);
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"]["code"], "insufficient_permissions");

    // Another account sees none of it, and cannot name this project.
    let other = s.create_operator("other@example.com");
    assert!(results(&s.get(&path, &other).body).is_empty());
    let r = s.get(&format!("{path}&project_ids[]={project}"), &other);
    assert_eq!(r.status, 404);

    // Bad parameters name themselves.
    for (query, param) in [
        (
            format!("start_time={start}&bucket_width=2d"),
            "bucket_width",
        ),
        (format!("start_time={start}&group_by[]=colour"), "group_by"),
        ("bucket_width=1d".to_owned(), "start_time"),
        (format!("start_time={start}&limit=0"), "limit"),
        (format!("start_time={start}&page=soon"), "page"),
    ] {
        let r = s.get(
            &format!("/v1/organization/usage/completions?{query}"),
            &admin,
        );
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["error"]["param"], param, "{query}");
    }
    let r = s.get(
        &format!("/v1/organization/costs?start_time={start}&bucket_width=1h"),
        &admin,
    );
    assert_eq!(r.status, 400);

    // The CLI reports the same numbers as CSV.
    let out = common::run(s.cli().args(["usage", "--csv", "--since", "1d"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("date,project_id,api_key_id,model,requests,input_tokens,output_tokens,cost_usd")
    );
    let row_a = csv
        .lines()
        .find(|l| l.contains(&a_id))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(row_a.ends_with(",m,3,30,60,0.090000"), "{row_a}");

    // Metrics count the calls and never show a key.
    let metrics = s.call("GET", "/metrics", None, None);
    let text = metrics.body.as_str().unwrap().to_owned();
    assert!(
        text.contains(r#"keyward_gateway_requests_total{endpoint="chat.completions",model="m",status="200"} 4"#),
        "{text}"
    );
    assert!(text.contains("keyward_gateway_request_duration_seconds_bucket"));
    assert!(text.contains("keyward_ledger_queue_depth"));
    assert!(!text.contains(&a) && !text.contains(&b) && !text.contains(&admin));
}
