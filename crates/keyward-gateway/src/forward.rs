//! Calls that name an object an upstream keeps (a response, a file, a
//! batch) rather than a model: sent to the upstream that holds it, with the
//! upstream's own credential, and answered whole.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::catalog::{HttpUpstream, Transport, Upstream};
use crate::error::ApiError;
use crate::proxy::{upstream_fault, Fault};
use crate::upstream;

/// An upstream's whole answer.
pub(crate) struct Forwarded {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl IntoResponse for Forwarded {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, self.content_type.unwrap_or_else(json));
        response
    }
}

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

/// A request to `http` with its credential; the content type is JSON's
/// unless another is given.
pub(crate) fn request(
    http: &HttpUpstream,
    method: Method,
    uri: hyper::Uri,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Result<hyper::Request<Full<Bytes>>, ApiError> {
    let mut call = hyper::Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        call = call.header(header::CONTENT_TYPE, ct);
    }
    if let Some(auth) = &http.authorization {
        call = call.header(header::AUTHORIZATION, auth.clone());
    }
    call.body(Full::new(body)).map_err(|_| ApiError::internal())
}

/// Sends `method path` (after the upstream's base URL, query included)
/// with `body` to `upstream` and reads its answer within its timeout.
pub(crate) async fn forward(
    upstream: &Upstream,
    method: Method,
    path: &str,
    body: Bytes,
    content_type: Option<HeaderValue>,
) -> Result<Forwarded, ApiError> {
    let Transport::Http(http) = &upstream.transport else {
        return Err(ApiError::not_found(format!(
            "The provider `{}` keeps no objects.",
            upstream.name
        )));
    };
    let uri = http
        .path_to(path)
        .ok_or_else(|| ApiError::invalid(None, "The id in the URL is not valid."))?;
    let mut call = hyper::Request::builder().method(method).uri(uri);
    if !body.is_empty() || content_type.is_some() {
        call = call.header(
            header::CONTENT_TYPE,
            content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
        );
    }
    if let Some(auth) = &http.authorization {
        call = call.header(header::AUTHORIZATION, auth.clone());
    }
    let call = call
        .body(Full::new(body))
        .map_err(|_| ApiError::internal())?;
    let deadline = tokio::time::Instant::now() + http.timeout;
    let read = async {
        let (answer, lease) = upstream::send(&http.origin, call)
            .await
            .map_err(|e| upstream_fault(&upstream.name, Fault::Unreachable(&*e)))?;
        let (parts, body) = answer.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| upstream_fault(&upstream.name, Fault::Unreachable(&e)))?
            .to_bytes();
        lease.release();
        Ok(Forwarded {
            status: parts.status,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            body,
        })
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| Err(upstream_fault(&upstream.name, Fault::Timeout)))
}
