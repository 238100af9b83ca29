//! Calls that name an object an upstream keeps (a response, a file, a
//! batch) rather than a model: there is no route; the path is built from
//! the object's id under the base URL of the upstream that holds it, and
//! the answer (an OpenAI object, an OpenAI-shaped error, or a file's
//! bytes) is relayed as it came. Also what every HTTP call to an upstream,
//! model calls' included, is built, sent and read with: [`request`],
//! [`dispatch`] and [`read_until`].

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::catalog::{HttpUpstream, Transport, Upstream};
use crate::error::ApiError;
use crate::proxy::{upstream_fault, Fault};
use crate::upstream::{self, BodyUntil, Lease};
use crate::Gateway;
use keyward_core::OwnedObject;
use tokio::time::Instant;

/// What the caller sends on: method, path under the base URL, body.
pub(crate) struct Call<'a> {
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
pub(crate) struct Reply {
    pub status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Incoming,
    deadline: Instant,
    lease: Lease,
    upstream: String,
}

/// Sends `call` to `upstream`, with the upstream's own credential.
pub(crate) async fn send(upstream: &Upstream, call: Call<'_>) -> Result<Reply, ApiError> {
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
    let request = request(http, call.method, uri, call.content_type, call.body)?;
    let (answer, lease, deadline) = dispatch(&upstream.name, http, request).await?;
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

/// Sends a call about an owned object to the upstream that holds it.
/// An upstream 404 means the object is gone there (expired, deleted out
/// of band): the row is forgotten, and the 404 relayed.
pub(crate) async fn send_owned(
    gw: &Gateway,
    row: &OwnedObject,
    call: Call<'_>,
) -> Result<Reply, ApiError> {
    let upstream = gw.catalog.upstream(&row.upstream).ok_or_else(|| {
        ApiError::unavailable(format!(
            "The upstream `{}` that holds {} is no longer configured. Ask the operator to restore it.",
            row.upstream, row.id
        ))
    })?;
    let reply = send(upstream, call).await?;
    if reply.status == axum::http::StatusCode::NOT_FOUND {
        gw.objects.forget(row.kind, &row.id).await?;
    }
    Ok(reply)
}

/// [`send_owned`], its answer read whole.
pub(crate) async fn fetch_owned(
    gw: &Gateway,
    row: &OwnedObject,
    method: Method,
    path: &str,
) -> Result<Answer, ApiError> {
    send_owned(gw, row, Call::empty(method, path))
        .await?
        .read()
        .await
}

/// Sends `request` to `http` (called `name` in errors) within its
/// timeout: the answer's head, the connection it came on, and the
/// deadline its body must arrive by. 504 when it did not answer in time,
/// 502 when it could not be reached.
pub(crate) async fn dispatch(
    name: &str,
    http: &HttpUpstream,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(hyper::Response<Incoming>, Lease, Instant), ApiError> {
    let deadline = Instant::now() + http.timeout;
    match tokio::time::timeout_at(deadline, upstream::send(&http.origin, request)).await {
        Ok(Ok((answer, lease))) => Ok((answer, lease, deadline)),
        Ok(Err(e)) => Err(upstream_fault(name, Fault::Unreachable(&*e))),
        Err(_) => Err(upstream_fault(name, Fault::Timeout)),
    }
}

/// Reads an answer's `body` whole by `deadline`; its connection then goes
/// back to the pool. 504 or 502 (upstream `name`) otherwise.
pub(crate) async fn read_until(
    name: &str,
    body: Incoming,
    deadline: Instant,
    lease: Lease,
) -> Result<Bytes, ApiError> {
    match tokio::time::timeout_at(deadline, body.collect()).await {
        Ok(Ok(collected)) => {
            lease.release();
            Ok(collected.to_bytes())
        }
        Ok(Err(e)) => Err(upstream_fault(name, Fault::Unreachable(&e))),
        Err(_) => Err(upstream_fault(name, Fault::Timeout)),
    }
}

/// A request to `http` with its credential, and `content_type` if given.
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

impl Reply {
    /// The whole body, for an answer Keyward reads (objects, errors).
    pub async fn read(self) -> Result<Answer, ApiError> {
        let body = read_until(&self.upstream, self.body, self.deadline, self.lease).await?;
        Ok(Answer {
            status: self.status,
            content_type: self.content_type,
            body,
        })
    }

    /// The answer relayed as it arrives (a file's content can be large).
    pub fn relay(self) -> Response {
        let stream = BodyUntil::new(self.body, self.deadline, self.lease);
        respond(self.status, self.content_type, Body::from_stream(stream))
    }
}

/// An upstream answer read whole.
pub(crate) struct Answer {
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

/// An answer of `status` with `body`, JSON unless `content_type` says otherwise.
pub(crate) fn respond(
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    response
}
