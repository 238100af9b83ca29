//! The model endpoints: authenticate, check, forward, relay, meter.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::FutureExt;
use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;
use keyward_core::{time::now_unix, Access, EndpointGroup};
use keyward_core::{Measure, UsageEvent};
use keyward_service::ActiveKey;
use serde_json::json;

use crate::admission::{admit, needs_prompt_tokens, put_rate_headers, Admission};
use crate::catalog::{Route, Transport};
use crate::error::{ApiError, ApiErrorKind};
use crate::forward;
use crate::header_text::HeaderText;
use crate::meter::LedgerSlot;
use crate::request::{self, Endpoint};
use crate::request_id::RequestId;
use crate::responses;
use crate::sse::{self, usage_of, Usage, UsageTap};
use crate::telemetry;
use crate::translate::StreamTranslator;
use crate::upstream::{BodyUntil, Lease};
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

/// Handlers for the other model endpoints, one per endpoint (the router
/// needs a function each; `ModelEndpoints` usually answers them first).
macro_rules! handlers {
    ($($name:ident => $endpoint:ident),+ $(,)?) => {$(
        pub async fn $name(State(gw): State<Gateway>, req: Request) -> Response {
            serve(gw, Endpoint::$endpoint, req).await
        }
    )+};
}

handlers! {
    responses => Responses,
    moderations => Moderations,
    images_generations => ImagesGenerations,
    images_edits => ImagesEdits,
    images_variations => ImagesVariations,
    audio_speech => AudioSpeech,
    audio_transcriptions => AudioTranscriptions,
    audio_translations => AudioTranslations,
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
    require(&active, group, needed)?;
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !active.ip_allowed(ip) {
        return Err(ApiError::ip_not_allowed());
    }
    Ok(active)
}

/// 401 naming the scope when `key` lacks `needed` access to `group`.
pub(crate) fn require(
    key: &ActiveKey,
    group: EndpointGroup,
    needed: Access,
) -> Result<(), ApiError> {
    if key.allows(group, needed) {
        return Ok(());
    }
    Err(ApiError::missing_scope(
        &group.scope(needed),
        "Check that your restricted API key has the necessary permissions.",
    ))
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
    /// What the call uses in units other than tokens, as asked (images,
    /// characters, an audio estimate, one request).
    units: Measure,
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
            let usage = Usage::tokens(self.prompt_estimate, self.output_allowance);
            self.record(client_closed(), usage, None);
        }
    }
}

impl Pending {
    /// Records the call: `usage` as reported (or estimated), `images` as
    /// counted in the answer (`None`: as many as were asked for).
    fn record(&mut self, status: StatusCode, usage: Usage, images: Option<i64>) {
        self.recorded = true;
        // Units other than tokens are billed when the call was answered
        // (or the client left after the upstream started on it).
        let billed = status.is_success() || status == client_closed();
        let unit = |asked: i64| if billed { asked } else { 0 };
        let measure = Measure {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage.cached_tokens,
            images: images.unwrap_or(unit(self.units.images)),
            characters: unit(self.units.characters),
            audio_ms: if usage.audio_ms > 0 {
                usage.audio_ms
            } else {
                unit(self.units.audio_ms)
            },
            requests: unit(self.units.requests),
        };
        let cost = self.route.price.charge(&measure);
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
    let limit = if endpoint.multipart() {
        gw.max_upload_bytes
    } else {
        gw.max_body_bytes
    };
    let raw = request::read_body(body, limit).await?;
    // A form goes upstream with its own content type (its boundary).
    let form = if endpoint.multipart() {
        let ct = parts.headers.get(header::CONTENT_TYPE);
        let parsed = request::form::parse(endpoint, ct.and_then(|v| v.to_str().ok()), &raw)?;
        Some((parsed, ct.cloned()))
    } else {
        None
    };
    let head = match &form {
        Some((f, _)) => f.head.clone(),
        None => request::parse(endpoint, &raw, needs_prompt_tokens(&key))?,
    };
    let route = gw
        .catalog
        .route(&head.model, |m| key.model_allowed(m))
        .ok_or_else(|| ApiError::model_not_found(&head.model))?
        .clone();
    head.check_output_limit(route.max_output_tokens)?;
    let plan = match endpoint {
        Endpoint::Responses => responses::plan(&gw, &key, &route, &head, &raw).await?,
        _ => {
            let (body, strip_usage, content_type) = match form {
                Some((f, ct)) => (f.upstream_body(&raw, route.rename.as_deref()), false, ct),
                None => {
                    let (body, strip) =
                        request::upstream_body(&raw, &head, route.rename.as_deref())?;
                    (body, strip, None)
                }
            };
            Plan {
                endpoint,
                body,
                content_type,
                strip_usage,
                translation: None,
                keep: None,
            }
        }
    };
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
        units: head.units,
        recorded: false,
    };

    let Answer {
        status,
        content_type,
        retry_after,
        body,
    } = match call_upstream(&route, plan.endpoint, plan.body, plan.content_type).await {
        Ok(a) => a,
        Err(err) => {
            pending.record(err.status(), Usage::default(), None);
            return Err(err);
        }
    };
    let is_stream = head.stream && status.is_success();
    let translated = plan.translation.is_some();
    let mut response = if is_stream {
        let tap = match plan.translation {
            Some(t) => Tap::Translate(Box::new(StreamTranslator::new(t)), 0),
            None => Tap::Upstream(UsageTap::new(plan.strip_usage)),
        };
        let relay = Relay {
            inner: body.into_stream(),
            tap,
            pending: Some(pending),
            keep: plan.keep,
            recording: None,
            held: None,
            finished: false,
        };
        Response::new(Body::from_stream(relay))
    } else {
        let bytes = match body.read(&route).await {
            Ok(b) => b,
            Err(err) => {
                pending.record(err.status(), Usage::default(), None);
                return Err(err);
            }
        };
        let (bytes, usage) = match (&plan.translation, status.is_success()) {
            (Some(ctx), true) => responses::answer_translated(&bytes, ctx),
            _ => {
                let usage = usage_of(&bytes).unwrap_or_default();
                (bytes, usage)
            }
        };
        let counted = status
            .is_success()
            .then(|| sse::units_of(endpoint, &bytes))
            .flatten();
        if status.is_success() {
            if let Some(keep) = &plan.keep {
                keep.record_answer(&bytes).await;
            }
        }
        let usage = Usage {
            audio_ms: usage.audio_ms.max(counted.map_or(0, |c| c.audio_ms)),
            ..usage
        };
        pending.record(status, usage, counted.and_then(|c| c.images));
        Response::new(Body::from(bytes))
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // Room for all of them at once, `x-request-id` included, instead of
    // growing the map twice on the way.
    headers.reserve(12);
    let content_type = match (translated, is_stream) {
        (true, true) => Some(HeaderValue::from_static("text/event-stream")),
        (true, false) if status.is_success() => None,
        _ => content_type,
    };
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

/// How a call goes upstream: to which endpoint, with which body, and
/// what happens to its answer.
pub(crate) struct Plan {
    pub endpoint: Endpoint,
    pub body: Bytes,
    /// The client's own content type (forms), else JSON.
    pub content_type: Option<HeaderValue>,
    /// Remove the chat stream's usage chunk Keyward asked for.
    pub strip_usage: bool,
    /// A Responses call to a chat-only upstream: translated both ways.
    pub translation: Option<crate::translate::ResponseContext>,
    /// Who will own the response this call creates, if it is kept.
    pub keep: Option<responses::Keep>,
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
            } => forward::read_until(&route.upstream.name, body, deadline, lease).await,
            AnswerBody::InProcess(s) => Ok(s.collect::<Vec<Bytes>>().await.concat().into()),
        }
    }
}

/// Sends the request to the route's upstream, over HTTP or in process.
async fn call_upstream(
    route: &Route,
    endpoint: Endpoint,
    body: Bytes,
    content_type: Option<HeaderValue>,
) -> Result<Answer, ApiError> {
    match &route.upstream.transport {
        Transport::Http(http) => {
            let content_type =
                content_type.unwrap_or_else(|| HeaderValue::from_static("application/json"));
            let call = forward::request(
                http,
                Method::POST,
                http.path(endpoint),
                Some(content_type),
                body,
            )?;
            let (r, lease, deadline) = forward::dispatch(&route.upstream.name, http, call).await?;
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
pub(crate) enum Fault<'e> {
    Timeout,
    Unreachable(&'e dyn std::error::Error),
}

/// The upstream `name` failed: counted, logged, and answered in words.
pub(crate) fn upstream_fault(name: &str, fault: Fault<'_>) -> ApiError {
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
    tap: Tap,
    pending: Option<Pending>,
    /// Who owns the response this stream creates, if it is kept.
    keep: Option<responses::Keep>,
    /// The owner's record being written.
    recording: Option<BoxFuture<'static, ()>>,
    /// The stream's last bytes, held until the owner is recorded.
    held: Option<Bytes>,
    finished: bool,
}

/// What reads a stream on its way: the upstream's own events, or chat
/// events turned into the Responses API's.
enum Tap {
    Upstream(UsageTap),
    /// The translator, and the chat events it was fed (about one output
    /// token each: the estimate when a stream ends without usage).
    Translate(Box<StreamTranslator>, i64),
}

impl Tap {
    fn feed(&mut self, chunk: Bytes) -> Bytes {
        match self {
            Tap::Upstream(tap) => tap.feed(chunk),
            Tap::Translate(t, events) => {
                let fed = chunk.windows(5).filter(|w| w == b"data:").count();
                *events = events.saturating_add(i64::try_from(fed).unwrap_or(i64::MAX));
                t.feed(&chunk)
            }
        }
    }

    /// What is left to send when the upstream ended.
    fn finish(&mut self) -> Bytes {
        match self {
            Tap::Upstream(tap) => tap.finish(),
            Tap::Translate(t, _) => t.finish(),
        }
    }

    /// Usage reported, or else estimated from the prompt and the events seen.
    fn usage(&self, prompt_estimate: i64) -> Usage {
        match self {
            Tap::Upstream(tap) => tap
                .usage
                .unwrap_or(Usage::tokens(prompt_estimate, tap.events)),
            Tap::Translate(t, events) => t
                .usage()
                .map_or(Usage::tokens(prompt_estimate, *events), Usage::from),
        }
    }

    /// The client has the whole stream.
    fn done(&self) -> bool {
        match self {
            Tap::Upstream(tap) => tap.done,
            Tap::Translate(t, _) => t.final_response().is_some(),
        }
    }

    fn images(&self) -> Option<i64> {
        match self {
            Tap::Upstream(tap) if tap.images > 0 => Some(tap.images),
            _ => None,
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            // The owner's record, while it is being written.
            if let Some(recording) = &mut self.recording {
                if recording.as_mut().poll(cx).is_ready() {
                    self.recording = None;
                }
            }
            // Bytes that end the stream wait for the owner's record: a
            // client that read the end can fetch the response at once.
            if self.held.is_some() {
                if self.recording.is_some() {
                    return Poll::Pending;
                }
                let out = self.held.take().unwrap_or_default();
                if !out.is_empty() {
                    return Poll::Ready(Some(Ok(out)));
                }
                continue;
            }
            if self.finished {
                return Poll::Ready(None);
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = self.tap.feed(chunk);
                    self.keep_native_response();
                    if self.tap.done() && self.recording.is_some() {
                        self.held = Some(out);
                        continue;
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.finished = true;
                    self.settle(StatusCode::BAD_GATEWAY);
                    if let Tap::Translate(t, _) = &mut self.tap {
                        // The client gets Responses' own failure event.
                        let failed = t.fail("The upstream's stream broke off before it ended.");
                        return Poll::Ready(Some(Ok(failed)));
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    let rest = self.tap.finish();
                    self.settle(StatusCode::OK);
                    self.finished = true;
                    let keep = self.keep.take();
                    if let (Tap::Translate(t, _), Some(keep)) = (&self.tap, keep) {
                        if let Some(response) = t.final_response().cloned() {
                            self.recording =
                                Some(async move { keep.record_response(&response).await }.boxed());
                        }
                    }
                    self.held = Some(rest);
                }
            }
        }
    }
}

impl Relay {
    /// A native Responses stream names its response in its first event:
    /// the owner's record starts then, and the stream's end waits for it.
    fn keep_native_response(&mut self) {
        // Only until the owner's record has started: no id copied per chunk after.
        let (Tap::Upstream(tap), Some(_)) = (&self.tap, &self.keep) else {
            return;
        };
        let Some(id) = tap.response_id.clone() else {
            return;
        };
        let Some(keep) = self.keep.take() else {
            return;
        };
        self.recording = Some(async move { keep.record_id(&id, now_unix()).await }.boxed());
    }

    fn settle(&mut self, status: StatusCode) {
        if let Some(mut p) = self.pending.take() {
            // Without the upstream's count (the stream was cut short),
            // estimate: the prompt as admitted, one token per event.
            // A client that read the whole stream got it, even if it hung
            // up before the upstream closed.
            let status = if self.tap.done() && status.as_u16() == 499 {
                StatusCode::OK
            } else {
                status
            };
            let usage = self.tap.usage(p.prompt_estimate);
            p.record(status, usage, self.tap.images());
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client closed the connection before the stream ended.
        self.settle(client_closed());
    }
}
