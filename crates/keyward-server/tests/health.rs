//! Probes, request ids, the OpenAPI document and OpenAI-shaped fallbacks.

mod common;

use common::Server;

#[test]
fn probes_request_ids_and_openapi() {
    let s = Server::start();
    let r = s.call("GET", "/healthz", None, None);
    assert_eq!(r.status, 200);
    let r = s.call("GET", "/readyz", None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ready");
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("req_") && id.len() == 28, "{id}");

    let r = s.call("GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/v1/organization/projects",
        "/v1/organization/projects/{project_id}",
        "/v1/organization/projects/{project_id}/archive",
        "/v1/organization/projects/{project_id}/api_keys",
        "/v1/organization/projects/{project_id}/api_keys/{key_id}",
        "/v1/organization/projects/{project_id}/api_keys/{key_id}/rotate",
        "/v1/organization/admin_api_keys",
        "/v1/organization/admin_api_keys/{key_id}",
        "/v1/organization/audit_logs",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }

    let r = s.call("GET", "/v1/nothing-here", None, None);
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    let r = s.call("PUT", "/healthz", None, None);
    assert_eq!(r.status, 405);
    assert!(r.body["error"]["message"].is_string());
}
