//! Bad input to the gateway: clear 400s naming the field, never a 500, and
//! never an upstream call for a request refused by auth, permissions,
//! validation or limits.

mod common;

use std::sync::atomic::Ordering;

use common::upstream::{fake_upstream_counted, gateway_with};
use serde_json::json;

/// Path, key, body, expected status, error code and param.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<serde_json::Value>,
    u16,
    Option<&'a str>,
    Option<&'a str>,
);

#[test]
fn refused_requests_never_reach_the_upstream() {
    let (upstream, calls) = fake_upstream_counted();
    let s = gateway_with(
        upstream,
        &[("KEYWARD_LIMITS__MAX_REQUEST_BODY_BYTES", "2000")],
    );
    let admin = s.create_operator("owner@example.com");
    let project = s.default_project(&admin);
    let key = |body: serde_json::Value| {
        let r = s.post(
            &format!("/v1/organization/projects/{project}/api_keys"),
            &admin,
            body,
        );
        r.body["value"].as_str().unwrap().to_owned()
    };
    let all = key(json!({}));
    let read_only = key(json!({"permissions": {"mode": "read_only"}}));
    let elsewhere = key(json!({"allowed_ips": ["10.0.0.0/8"]}));
    let only_other_model = key(json!({"allowed_models": ["slow"]}));

    let chat = "/v1/chat/completions";
    let ok_body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let cases: Vec<Case> = vec![
        // (path, key, body, status, code, param)
        (chat, None, Some(ok_body.clone()), 401, None, None),
        (
            chat,
            Some("sk-kw-not-a-real-key"),
            Some(ok_body.clone()),
            401,
            Some("invalid_api_key"),
            None,
        ),
        (
            chat,
            Some(admin.as_str()),
            Some(ok_body.clone()),
            401,
            Some("insufficient_permissions"),
            None,
        ),
        (
            chat,
            Some(read_only.as_str()),
            Some(ok_body.clone()),
            401,
            Some("insufficient_permissions"),
            None,
        ),
        (
            chat,
            Some(elsewhere.as_str()),
            Some(ok_body.clone()),
            403,
            Some("ip_not_allowed"),
            None,
        ),
        (
            chat,
            Some(only_other_model.as_str()),
            Some(ok_body.clone()),
            404,
            Some("model_not_found"),
            Some("model"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})),
            404,
            Some("model_not_found"),
            Some("model"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"messages": [{"role": "user", "content": "hi"}]})),
            400,
            None,
            Some("model"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"model": "m"})),
            400,
            None,
            Some("messages"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"model": "m", "messages": "hi"})),
            400,
            None,
            Some("messages"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"model": 7, "messages": []})),
            400,
            None,
            Some("model"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"model": "m", "messages": [1], "stream": "yes"})),
            400,
            None,
            Some("stream"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(json!({"model": "m", "messages": [1], "max_tokens": -5})),
            400,
            None,
            Some("max_tokens"),
        ),
        (
            "/v1/embeddings",
            Some(all.as_str()),
            Some(json!({"model": "m"})),
            400,
            None,
            Some("input"),
        ),
        (
            "/v1/completions",
            Some(all.as_str()),
            Some(json!({"model": "m"})),
            400,
            None,
            Some("prompt"),
        ),
        (
            chat,
            Some(all.as_str()),
            Some(
                json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(3000)}]}),
            ),
            413,
            Some("request_too_large"),
            None,
        ),
    ];
    for (path, key, body, status, code, param) in cases {
        let r = s.call("POST", path, key, body.clone());
        assert_eq!(r.status.as_u16(), status, "{path} {body:?}: {}", r.body);
        assert!(r.body["error"]["message"].is_string(), "{}", r.body);
        assert!(r.body["error"]["type"].is_string(), "{}", r.body);
        assert!(r.headers.contains_key("x-request-id"));
        if let Some(code) = code {
            assert_eq!(r.body["error"]["code"], code, "{path} {body:?}");
        }
        if let Some(param) = param {
            assert_eq!(r.body["error"]["param"], param, "{path} {body:?}");
        }
        let text = r.body.to_string();
        assert!(
            !text.contains(&all) && !text.contains(&admin),
            "a secret in an error: {text}"
        );
    }
    for raw in [&b"not json"[..], b"[1,2]", b"{\"model\":", b""] {
        let r = s.raw("POST", chat, &all, raw);
        assert_eq!(r.status, 400, "{raw:?}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("JSON"),
            "{}",
            r.body
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a refused request reached the upstream"
    );

    // The same key, asked properly, does reach it.
    let r = s.call("POST", chat, Some(&all), Some(ok_body));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(r.headers.contains_key("openai-processing-ms"));
}
