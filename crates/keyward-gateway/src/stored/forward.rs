//! One call to the upstream that holds files and batches. Unlike a model
//! call there is no route: the path is built from the object's id under
//! the upstream's base URL, and the answer (an OpenAI object, an
//! OpenAI-shaped error, or a file's bytes) is relayed as it came.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::catalog::{Transport, Upstream};
use crate::error::{ApiError, ApiErrorKind};
use crate::telemetry;
use crate::upstream::{self, BodyUntil, Lease};

/// What the caller sends on: method, path under the base URL, body.
pub(super) struct Call<'a> {
    pub method: Method,
    /// E.g. `/files/file-abc/content`.
    pub path: &'a str,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl<'a> Call<'a> {
    /// A call without a body (`GET`, `DELETE`, a cancel).
    pub fn empty(method: Method, path: &'a str) -> Self {
        Call {
            method,
            path,
            content_type: None,
            body: Bytes::new(),
        }
    }
}

/// The upstream's answer, its body not yet read.
pub(super) struct Reply {
    pub status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Incoming,
    deadline: tokio::time::Instant,
    lease: Lease,
    upstream: String,
}

/// Sends `call` to `upstream`, with the upstream's own credential.
pub(super) async fn send(upstream: &Upstream, call: Call<'_>) -> Result<Reply, ApiError> {
    let Transport::Http(http) = &upstream.transport else {
        // The catalog lets only HTTP upstreams hold files; a row naming a
        // local one predates a configuration change.
        return Err(ApiError::unavailable(format!(
            "The upstream `{}` that holds this object no longer serves files and batches. Ask the operator to set `files = true` on an HTTP upstream.",
            upstream.name
        )));
    };
    let uri = http.path_to(call.path).ok_or_else(|| {
        ApiError::invalid(
            Some("id".into()),
            "The id contains characters no object id has.",
        )
    })?;
    let mut request = hyper::Request::builder().method(call.method).uri(uri);
    if let Some(content_type) = call.content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(auth) = &http.authorization {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    let request = request
        .body(Full::new(call.body))
        .map_err(|_| ApiError::internal())?;
    let deadline = tokio::time::Instant::now() + http.timeout;
    let fault = |timed_out: bool| failed(&upstream.name, timed_out);
    let (answer, lease) =
        match tokio::time::timeout_at(deadline, upstream::send(&http.origin, request)).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(e)) => {
                // The error names the address, never the credential.
                tracing::warn!(upstream = %upstream.name, error = %e, "files upstream call failed");
                return Err(fault(false));
            }
            Err(_) => return Err(fault(true)),
        };
    let (parts, body) = answer.into_parts();
    Ok(Reply {
        status: parts.status,
        content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
        body,
        deadline,
        lease,
        upstream: upstream.name.clone(),
    })
}

/// 504 when the upstream did not answer in time, else 502.
fn failed(name: &str, timed_out: bool) -> ApiError {
    let (kind, reason, what) = if timed_out {
        (
            ApiErrorKind::UpstreamTimeout,
            "timeout",
            "did not answer in time",
        )
    } else {
        (
            ApiErrorKind::UpstreamUnreachable,
            "unreachable",
            "could not be reached",
        )
    };
    telemetry::upstream_error(name, reason);
    ApiError::new(
        kind,
        format!("The upstream `{name}` {what}. Try again; if it persists, tell the operator."),
    )
}

impl Reply {
    /// The whole body, for an answer Keyward reads (objects, errors).
    pub async fn read(self) -> Result<Answer, ApiError> {
        match tokio::time::timeout_at(self.deadline, self.body.collect()).await {
            Ok(Ok(collected)) => {
                self.lease.release();
                Ok(Answer {
                    status: self.status,
                    content_type: self.content_type,
                    body: collected.to_bytes(),
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.upstream, error = %e, "files upstream answer cut off");
                Err(failed(&self.upstream, false))
            }
            Err(_) => Err(failed(&self.upstream, true)),
        }
    }

    /// The answer relayed as it arrives (a file's content can be large).
    pub fn relay(self) -> Response {
        let stream = BodyUntil::new(self.body, self.deadline, self.lease);
        respond(self.status, self.content_type, Body::from_stream(stream))
    }
}

/// An upstream answer read whole.
pub(super) struct Answer {
    pub status: StatusCode,
    content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl Answer {
    /// The body as a JSON object, when the call succeeded and it is one.
    pub fn object(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        if !self.status.is_success() {
            return None;
        }
        match serde_json::from_slice(&self.body).ok()? {
            serde_json::Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The answer, as the upstream gave it.
    pub fn relay(self) -> Response {
        respond(self.status, self.content_type, Body::from(self.body))
    }
}

fn respond(status: StatusCode, content_type: Option<HeaderValue>, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    response
}
