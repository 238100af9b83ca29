//! Gives every request an id (`req_…`), sent back in `x-request-id` and
//! carried by the request's tracing span.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The id of the request being served, in its extensions: the gateway
/// records it in the usage ledger.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub async fn assign(mut req: Request, next: Next) -> Response {
    let mut random = [0u8; 24];
    keyward_core::base62::fill_random(&mut random);
    let id = format!("req_{}", std::str::from_utf8(&random).unwrap_or_default());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
