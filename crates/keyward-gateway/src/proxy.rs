//! The model endpoints: authenticate, check, forward, relay, meter.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use keyward_core::UsageEvent;
use keyward_core::{time::now_unix, Access, EndpointGroup};
use keyward_service::ActiveKey;
use serde_json::json;

use crate::admission::{admit, needs_prompt_tokens, put_rate_headers, Admission};
use crate::catalog::{Route, Transport};
use crate::error::{ApiError, ApiErrorKind};
use crate::header_text::HeaderText;
use crate::meter::LedgerSlot;
use crate::request::{self, Endpoint};
use crate::request_id::RequestId;
use crate::sse::{usage_of, Usage, UsageTap};
use crate::telemetry;
use crate::upstream::{self, BodyUntil, Lease};
use crate::Gateway;

pub async fn chat_completions(State(gw): State<Gateway>, req: Request) -> Response {
    serve(gw, Endpoint::ChatCompletions, req).await
}

pub async fn completions(State(gw): State<Gateway>, req: Request) -> Response {
    serve(gw, Endpoint::Completions, req).await
}

pub async fn embeddings(State(gw): State<Gateway>, req: Request) -> Response {
    serve(gw, Endpoint::Embeddings, req).await
}

/// Answers a call to a model endpoint, whatever carries its body: axum's
/// boxed body through the router, hyper's own from `ModelEndpoints`.
pub(crate) async fn serve<B>(
    gw: Gateway,
    endpoint: Endpoint,
    req: axum::http::Request<B>,
) -> Response
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    proxy(gw, endpoint, req).await.unwrap_or_else(refused)
}

/// Counts a refusal by its kind, then answers it.
fn refused(e: ApiError) -> Response {
    telemetry::request_refused(e.kind().refusal_reason());
    let unread_body = matches!(e.status().as_u16(), 401 | 403 | 413);
    let mut response = e.into_response();
    if unread_body {
        // Refused before its body was read: the connection cannot be
        // reused, so say so instead of leaving the client to find out.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `GET /v1/models`: the models the calling key may use.
pub async fn list_models(
    State(gw): State<Gateway>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (parts, _) = req.into_parts();
    let key = caller(&gw, &parts, EndpointGroup::Models, Access::Read).await?;
    let data: Vec<_> = gw
        .catalog
        .visible(|m| key.model_allowed(m))
        .map(|r| model_object(r))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{model}`.
pub async fn retrieve_model(
    State(gw): State<Gateway>,
    Path(model): Path<String>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (parts, _) = req.into_parts();
    let key = caller(&gw, &parts, EndpointGroup::Models, Access::Read).await?;
    let route = gw
        .catalog
        .route(&model, |m| key.model_allowed(m))
        .ok_or_else(|| ApiError::model_not_found(&model))?;
    Ok(Json(model_object(route)))
}

fn model_object(route: &Route) -> serde_json::Value {
    json!({"id": route.id, "object": "model", "created": 0, "owned_by": route.upstream.name})
}

/// The key behind the request's bearer token, with `needed` access to
/// `group`, used from an address its allow-list permits.
pub(crate) async fn caller(
    gw: &Gateway,
    parts: &Parts,
    group: EndpointGroup,
    needed: Access,
) -> Result<std::sync::Arc<ActiveKey>, ApiError> {
    let token = bearer(&parts.headers).ok_or_else(ApiError::missing_key)?;
    let active = gw.keys.authenticate(token).await?;
    if !active.allows(group, needed) {
        return Err(ApiError::missing_scope(
            &group.scope(needed),
            "Check that your restricted API key has the necessary permissions.",
        ));
    }
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !active.ip_allowed(ip) {
        return Err(ApiError::ip_not_allowed());
    }
    Ok(active)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a finished request reports to the ledger and settles.
struct Pending {
    gw: Gateway,
    /// The call's place in the ledger's queue.
    slot: Option<LedgerSlot>,
    admission: Admission,
    request_id: String,
    key: std::sync::Arc<ActiveKey>,
    route: std::sync::Arc<Route>,
    endpoint: Endpoint,
    started: Instant,
    /// The prompt's estimated tokens, used when the upstream never reports usage.
    prompt_estimate: i64,
    /// The output the upstream may produce (the reservation's worst case),
    /// charged when the client left before the answer was read.
    output_allowance: i64,
    recorded: bool,
}

/// The status recorded for a call whose client closed the connection before
/// its answer was complete (nginx's convention).
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

impl Drop for Pending {
    /// The client went away after the upstream was called but before the
    /// answer was read (the request's future was dropped): the upstream
    /// may bill the whole generation, so the call is recorded as 499 with
    /// the prompt estimate and the whole output allowance, and the
    /// reservation settled to that, not released at zero.
    fn drop(&mut self) {
        if !self.recorded {
            let usage = Usage {
                prompt_tokens: self.prompt_estimate,
                completion_tokens: self.output_allowance,
            };
            self.record(client_closed(), usage);
        }
    }
}

impl Pending {
    fn record(&mut self, status: StatusCode, usage: Usage) {
        self.recorded = true;
        let cost = self
            .route
            .price
            .cost(usage.prompt_tokens, usage.completion_tokens);
        let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        let elapsed = self.started.elapsed();
        telemetry::request_finished(
            self.endpoint.as_str(),
            &self.route.id,
            status.as_u16(),
            elapsed,
        );
        self.admission.settle(&self.gw, tokens, cost);
        let key = &self.key.key;
        let (Some(project_id), Some(slot)) = (key.project_id.clone(), self.slot.take()) else {
            return;
        };
        self.gw.meter.record(
            slot,
            UsageEvent {
                // Recorded once: the id is not needed after.
                request_id: std::mem::take(&mut self.request_id),
                key_id: key.id.clone(),
                project_id,
                user_id: key.owner_id.clone(),
                model: self.route.id.clone(),
                endpoint: self.endpoint,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cost,
                status: status.as_u16(),
                latency_ms: elapsed.as_millis() as i64,
                created_at: now_unix(),
            },
        );
    }
}

async fn proxy<B>(
    gw: Gateway,
    endpoint: Endpoint,
    req: axum::http::Request<B>,
) -> Result<Response, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let key = caller(&gw, &parts, endpoint.group(), Access::Write).await?;
    let raw = Limited::new(body, gw.max_body_bytes)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| ApiError::unreadable_body(&*e, gw.max_body_bytes))?;
    let head = request::parse(endpoint, &raw, needs_prompt_tokens(&key))?;
    let route = gw
        .catalog
        .route(&head.model, |m| key.model_allowed(m))
        .ok_or_else(|| ApiError::model_not_found(&head.model))?
        .clone();
    head.check_output_limit(route.max_output_tokens)?;
    let (upstream_body, strip_usage) =
        request::upstream_body(&raw, &head, route.rename.as_deref())?;
    // A place in the ledger's queue before anything is spent: a call that
    // could not be billed is not made.
    let Ok(slot) = gw.meter.reserve().await else {
        let refusal = ApiError::ledger_unavailable();
        telemetry::request_refused(refusal.kind().refusal_reason());
        let mut response = refusal.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(response);
    };
    let admission = match admit(&gw, &key, &route, &head, raw.len()).await {
        Ok(a) => a,
        Err(response) => return Ok(response),
    };
    let tightest = admission.tightest;
    let mut pending = Pending {
        gw: gw.clone(),
        slot: Some(slot),
        admission,
        request_id: parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        key,
        route: route.clone(),
        endpoint,
        started,
        prompt_estimate: i64::try_from(head.prompt_estimate(raw.len())).unwrap_or(i64::MAX),
        output_allowance: i64::try_from(head.output_allowance(route.max_output_tokens))
            .unwrap_or(i64::MAX),
        recorded: false,
    };

    let Answer {
        status,
        content_type,
        retry_after,
        body,
    } = match call_upstream(&route, endpoint, upstream_body).await {
        Ok(a) => a,
        Err(err) => {
            pending.record(err.status(), Usage::default());
            return Err(err);
        }
    };
    let is_stream = head.stream && status.is_success();
    let mut response = if is_stream {
        let relay = Relay {
            inner: body.into_stream(),
            tap: UsageTap::new(strip_usage),
            pending: Some(pending),
            finished: false,
        };
        Response::new(Body::from_stream(relay))
    } else {
        let bytes = match body.read(&route).await {
            Ok(b) => b,
            Err(err) => {
                pending.record(err.status(), Usage::default());
                return Err(err);
            }
        };
        pending.record(status, usage_of(&bytes).unwrap_or_default());
        Response::new(Body::from(bytes))
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // Room for all of them at once, `x-request-id` included, instead of
    // growing the map twice on the way.
    headers.reserve(12);
    headers.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    if is_stream {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some(wait) = retry_after {
        headers.insert(header::RETRY_AFTER, wait);
    }
    let mut text = HeaderText::new();
    put_rate_headers(&tightest, &mut text);
    text.number(&OPENAI_PROCESSING_MS, started.elapsed().as_millis() as u64);
    text.write_to(headers);
    Ok(response)
}

/// Built once: a header name given as a string is parsed on every insert.
static OPENAI_PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");

/// An upstream's answer, before its body is read.
struct Answer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    retry_after: Option<HeaderValue>,
    body: AnswerBody,
}

enum AnswerBody {
    /// An HTTP upstream's body, which must arrive by `deadline`, and the
    /// connection it arrives on.
    Http {
        body: Incoming,
        deadline: tokio::time::Instant,
        lease: Lease,
    },
    InProcess(BoxStream<'static, Bytes>),
}

impl AnswerBody {
    fn into_stream(self) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        match self {
            AnswerBody::Http {
                body,
                deadline,
                lease,
            } => BodyUntil::new(body, deadline, lease).boxed(),
            AnswerBody::InProcess(s) => s.map(Ok).boxed(),
        }
    }

    async fn read(self, route: &Route) -> Result<Bytes, ApiError> {
        match self {
            AnswerBody::Http {
                body,
                deadline,
                lease,
            } => match tokio::time::timeout_at(deadline, body.collect()).await {
                Ok(Ok(collected)) => {
                    lease.release();
                    Ok(collected.to_bytes())
                }
                Ok(Err(e)) => Err(upstream_error(route, Fault::Unreachable(&e))),
                Err(_) => Err(upstream_error(route, Fault::Timeout)),
            },
            AnswerBody::InProcess(s) => Ok(s.collect::<Vec<Bytes>>().await.concat().into()),
        }
    }
}

/// Sends the request to the route's upstream, over HTTP or in process.
async fn call_upstream(route: &Route, endpoint: Endpoint, body: Bytes) -> Result<Answer, ApiError> {
    match &route.upstream.transport {
        Transport::Http(http) => {
            let mut call = hyper::Request::post(http.path(endpoint)).header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(auth) = &http.authorization {
                call = call.header(header::AUTHORIZATION, auth.clone());
            }
            let call = call
                .body(Full::new(body))
                .map_err(|_| ApiError::internal())?;
            let deadline = tokio::time::Instant::now() + http.timeout;
            let (r, lease) =
                match tokio::time::timeout_at(deadline, upstream::send(&http.origin, call)).await {
                    Ok(Ok(answered)) => answered,
                    Ok(Err(e)) => return Err(upstream_error(route, Fault::Unreachable(&*e))),
                    Err(_) => return Err(upstream_error(route, Fault::Timeout)),
                };
            let (parts, body) = r.into_parts();
            Ok(Answer {
                status: parts.status,
                content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
                retry_after: parts.headers.get(header::RETRY_AFTER).cloned(),
                body: AnswerBody::Http {
                    body,
                    deadline,
                    lease,
                },
            })
        }
        Transport::InProcess(model) => {
            let r = model.call(endpoint, body).await;
            Ok(Answer {
                status: r.status,
                content_type: Some(r.content_type),
                retry_after: r.retry_after.map(HeaderValue::from),
                body: AnswerBody::InProcess(r.body),
            })
        }
    }
}

/// Why an upstream call failed.
enum Fault<'e> {
    Timeout,
    Unreachable(&'e dyn std::error::Error),
}

fn upstream_error(route: &Route, fault: Fault<'_>) -> ApiError {
    let name = &route.upstream.name;
    match fault {
        Fault::Timeout => {
            telemetry::upstream_error(name, "timeout");
            ApiError::new(
                ApiErrorKind::UpstreamTimeout,
                format!("The upstream `{name}` did not answer in time. Try again; if it persists, tell the operator."),
            )
        }
        Fault::Unreachable(e) => {
            telemetry::upstream_error(name, "unreachable");
            tracing::warn!(upstream = %name, error = %ErrorChain(e), "upstream call failed");
            ApiError::new(
                ApiErrorKind::UpstreamUnreachable,
                format!("The upstream `{name}` could not be reached. Try again; if it persists, tell the operator."),
            )
        }
    }
}

/// An error with its causes, `: `-separated (hyper's own message alone
/// says little, e.g. "client error (Connect)").
struct ErrorChain<'e>(&'e dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// The upstream's SSE stream on its way to the client. Dropped early (the
/// client went away), it drops the upstream call with it and still records
/// what was used.
struct Relay {
    inner: BoxStream<'static, Result<Bytes, std::io::Error>>,
    tap: UsageTap,
    pending: Option<Pending>,
    finished: bool,
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = self.tap.feed(chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.finished = true;
                    self.settle(StatusCode::BAD_GATEWAY);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    let rest = self.tap.finish();
                    self.settle(StatusCode::OK);
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(rest)));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Relay {
    fn settle(&mut self, status: StatusCode) {
        if let Some(mut p) = self.pending.take() {
            // Without the upstream's count (the stream was cut short),
            // estimate: the prompt as admitted, one token per event.
            // A client that read up to `[DONE]` got the whole stream, even
            // if it hung up before the upstream closed.
            let status = if self.tap.done && status.as_u16() == 499 {
                StatusCode::OK
            } else {
                status
            };
            let usage = self.tap.usage.unwrap_or(Usage {
                prompt_tokens: p.prompt_estimate,
                completion_tokens: self.tap.events,
            });
            p.record(status, usage);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client closed the connection before the stream ended.
        self.settle(client_closed());
    }
}
