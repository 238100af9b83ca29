//! A small OpenAI-compatible upstream inside the test process, standing in
//! for a remote model provider.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::Server;

/// An OpenAI-compatible upstream: every chat completion uses 10 prompt and
/// 20 completion tokens; the model `slow` answers after one second.
pub fn fake_upstream() -> SocketAddr {
    fake_upstream_counted().0
}

/// The same upstream, with a count of the calls it received.
pub fn fake_upstream_counted() -> (SocketAddr, Arc<AtomicUsize>) {
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
                        tokio::time::sleep(Duration::from_secs(1)).await;
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

/// A server whose models are served by the fake upstream. `m` costs
/// $1000 per million tokens either way, so one call (30 tokens) costs $0.03.
pub fn gateway() -> Server {
    gateway_with(fake_upstream(), &[])
}

/// [`gateway`] on a given upstream, with extra environment.
pub fn gateway_with(upstream: SocketAddr, env: &[(&str, &str)]) -> Server {
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

[[models]]
id = "slow"
upstream = "fake"
"#
        ),
        env,
    )
}

/// A `multipart/form-data` body as OpenAI's SDKs send it, with boundary
/// `XyZ`: (content type, body). Each part is (name, file name for a file
/// part, value).
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, filename, value) in parts {
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        if let Some(f) = filename {
            body.extend_from_slice(
                format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    ("multipart/form-data; boundary=XyZ".to_owned(), body)
}

/// The parts of a multipart form, as an upstream reads them:
/// name -> (filename, bytes).
pub fn form(headers: &HeaderMap, body: &[u8]) -> HashMap<String, (Option<String>, Vec<u8>)> {
    let ct = headers["content-type"].to_str().unwrap();
    let boundary = format!("--{}", ct.split("boundary=").nth(1).unwrap());
    let text = String::from_utf8_lossy(body).into_owned();
    let mut parts = HashMap::new();
    for part in text.split(&boundary).skip(1) {
        let Some((head, data)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let attr = |a: &str| {
            head.split(&format!("{a}=\""))
                .nth(1)
                .map(|r| r.split('"').next().unwrap().to_owned())
        };
        let data = data.strip_suffix("\r\n").unwrap_or(data);
        parts.insert(
            attr(" name").unwrap(),
            (attr("filename"), data.as_bytes().to_vec()),
        );
    }
    parts
}
