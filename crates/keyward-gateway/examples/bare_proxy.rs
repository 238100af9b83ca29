//! The reference point of `bench/gateway`: the least an axum + reqwest
//! proxy can do per request — check the bearer key's SHA-256 against one
//! known hash, forward the body as it came, return the upstream's answer.
//! No limits, budgets, ledger, logs or metrics. Keyward's cost over this is
//! what its features cost.
//!
//!   cargo run --release -p keyward-gateway --example bare_proxy -- LISTEN UPSTREAM_BASE KEY
//!   (e.g. 127.0.0.1:8081 http://127.0.0.1:8080/v1 sk-bench)

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use keyward_core::KeyHash;

#[derive(Clone)]
struct Proxy {
    client: reqwest::Client,
    url: String,
    key: KeyHash,
}

async fn forward(State(proxy): State<Proxy>, headers: HeaderMap, body: Bytes) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.map(KeyHash::of).as_ref() != Some(&proxy.key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let answer = proxy
        .client
        .post(&proxy.url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match answer.bytes().await {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, key] = args.as_slice() else {
        eprintln!("usage: bare_proxy LISTEN UPSTREAM_BASE KEY");
        std::process::exit(2);
    };
    let proxy = Proxy {
        client: reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client"),
        url: format!("{upstream}/chat/completions"),
        key: KeyHash::of(key),
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let app = Router::new()
            .route("/v1/chat/completions", post(forward))
            .with_state(proxy);
        let listener = tokio::net::TcpListener::bind(listen.as_str())
            .await
            .expect("a free address to listen on");
        axum::serve(listener, app).await.expect("the server runs");
    });
}
