//! The Responses API. `POST /v1/responses` runs through the model
//! endpoints' path (`proxy`); this module plans it (whose
//! `previous_response_id` it is, whether the upstream speaks Responses or
//! is translated to chat completions, who will own the response) and
//! serves the calls that name a response by id:
//! `GET|DELETE /v1/responses/{id}`, `POST …/{id}/cancel` and
//! `GET …/{id}/input_items`.
//!
//! Ownership: every project shares the upstream's credential, so Keyward
//! records the project that created each kept response and answers any
//! other project 404, the same 404 as for an id that never existed,
//! without asking the upstream. Responses of a chat-only upstream (the
//! local model) are kept by Keyward itself: the Response, and the input
//! that led to it for `input_items` and `previous_response_id`.
//!
//! Background responses (native upstreams only) have no usage when they
//! are created; their usage is recorded once, when a retrieve first shows
//! them finished.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use keyward_core::time::now_unix;
use keyward_core::{Access, EndpointGroup, KeyId, ObjectKind, OwnedObject, ProjectId, UserId};
use keyward_service::{ActiveKey, ObjectRegistry};
use serde_json::{json, Value};

use crate::catalog::{ResponsesMode, Route};
use crate::error::ApiError;
use crate::forward::{self, Answer};
use crate::proxy::{caller, Plan};
use crate::request::{self, Endpoint, Head};
use crate::sse::Usage;
use crate::stored::list::{self, Bounds};
use crate::translate::{self, ResponseContext};
use crate::Gateway;

/// 404 for a response the caller may not see, whether it exists or not.
fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "No response found with id '{}'.",
        id.chars().take(64).collect::<String>()
    ))
    .with_param("response_id")
}

/// The response `id` if the caller's project owns it.
async fn owned(gw: &Gateway, key: &ActiveKey, id: &str) -> Result<OwnedObject, ApiError> {
    let Some(project) = &key.key.project_id else {
        return Err(not_found(id));
    };
    gw.objects
        .owned(ObjectKind::Response, id, project)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The caller's request, checked for `access` to responses, and the
/// response `id` if the caller's project owns it.
async fn caller_and_owned(
    gw: &Gateway,
    req: Request,
    access: Access,
    id: &str,
) -> Result<(Parts, OwnedObject), ApiError> {
    let (parts, _) = req.into_parts();
    let key = caller(gw, &parts, EndpointGroup::Responses, access).await?;
    let row = owned(gw, &key, id).await?;
    Ok((parts, row))
}

/// How `POST /v1/responses` goes upstream.
pub(crate) async fn plan(
    gw: &Gateway,
    key: &Arc<ActiveKey>,
    route: &Arc<Route>,
    head: &Head,
    raw: &Bytes,
) -> Result<Plan, ApiError> {
    let previous = match &head.previous_response_id {
        Some(id) => {
            let row = owned(gw, key, id)
                .await
                .map_err(|e| e.with_param("previous_response_id"))?;
            if row.upstream != route.upstream.name {
                return Err(ApiError::invalid(
                    Some("previous_response_id".into()),
                    format!(
                        "The response '{id}' was answered by another provider than the model `{}`; continue it with a model of that provider, or start a new conversation.",
                        route.id
                    ),
                ));
            }
            Some(row)
        }
        None => None,
    };
    let keeper = |kept: Kept| {
        let project_id = key.key.project_id.clone()?;
        head.store.then(|| Keep {
            objects: gw.objects.clone(),
            project_id,
            key_id: key.key.id.clone(),
            owner_id: key.key.owner_id.clone(),
            upstream: route.upstream.name.clone(),
            model: route.id.to_string(),
            background: head.background,
            kept,
        })
    };
    match route.upstream.responses {
        ResponsesMode::Native => {
            check_ids_in_body(gw, key, raw).await?;
            let (body, _) = request::upstream_body(raw, head, route.rename.as_deref())?;
            Ok(Plan {
                endpoint: Endpoint::Responses,
                body,
                content_type: None,
                strip_usage: false,
                translation: None,
                keep: keeper(Kept::Native),
            })
        }
        ResponsesMode::Translate => {
            let body: Value = serde_json::from_slice(raw)
                .map_err(|_| ApiError::invalid(None, "The request body is not a JSON object."))?;
            let history = previous.as_ref().map(history_of).unwrap_or_default();
            let chat = translate::chat_request(&body, &history, route.upstream_model())?;
            // What came before (for the next continuation) and this
            // request's own input (for `input_items`).
            let items = json!({"history": history, "input": chat.input_items});
            let chat_body = serde_json::to_vec(&chat.body).map_err(|_| ApiError::internal())?;
            Ok(Plan {
                endpoint: Endpoint::ChatCompletions,
                body: chat_body.into(),
                content_type: None,
                strip_usage: false,
                translation: Some(ResponseContext {
                    id: translate::mint_id("resp_"),
                    created_at: now_unix(),
                    model: route.id.to_string(),
                    echo: chat.echo,
                }),
                keep: keeper(Kept::Translated {
                    items: items.to_string(),
                }),
            })
        }
    }
}

/// Parts of a kept translated response: `{"history": […], "input": […]}`
/// from its items, `output` from the Response.
fn kept_list(json: &Option<String>, field: &str) -> Vec<Value> {
    match json
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|mut v| v[field].take())
    {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

/// Ids of upstream objects inside a body sent as it came: every `file_id`
/// in `input` must be one of the caller's project's files (404 otherwise,
/// before any upstream call); ids of kinds Keyward does not track per
/// project (conversations, vector stores, containers) are refused, since
/// the upstream would hand any project's to anyone.
async fn check_ids_in_body(gw: &Gateway, key: &ActiveKey, raw: &[u8]) -> Result<(), ApiError> {
    let mentions = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    if ![
        &b"file_id"[..],
        b"conversation",
        b"vector_store_ids",
        b"container",
    ]
    .iter()
    .any(|n| mentions(n))
    {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(raw)
        .map_err(|_| ApiError::invalid(None, "The request body is not a JSON object."))?;
    let untracked = |param: String, what: &str| {
        ApiError::invalid(
            Some(param),
            format!("{what} are not owned per project by this gateway yet, so they cannot be used through it; send the content itself instead."),
        )
    };
    if !body["conversation"].is_null() {
        return Err(untracked("conversation".into(), "Conversations"));
    }
    for (i, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
        if tool["vector_store_ids"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(untracked(
                format!("tools[{i}].vector_store_ids"),
                "Vector stores",
            ));
        }
        if tool["container"].is_string() {
            return Err(untracked(format!("tools[{i}].container"), "Containers"));
        }
    }
    let mut files = Vec::new();
    file_ids(&body["input"], &mut files);
    file_ids(&body["tools"], &mut files);
    for id in files {
        let project = key.key.project_id.as_ref();
        let owned = match project {
            Some(p) => gw.objects.owned(ObjectKind::File, id, p).await?,
            None => None,
        };
        if owned.is_none() {
            return Err(crate::stored::no_such(ObjectKind::File, id).with_param("input"));
        }
    }
    Ok(())
}

/// Every `file_id` string, and every string of a `file_ids` list (a code
/// interpreter's container), anywhere in `v`.
fn file_ids<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| file_ids(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("file_id", Value::String(id)) => out.push(id),
                    ("file_ids", Value::Array(ids)) => {
                        out.extend(ids.iter().filter_map(Value::as_str));
                    }
                    _ => file_ids(v, out),
                }
            }
        }
        _ => {}
    }
}

/// A kept translated response's conversation so far: what came before
/// it, its input, then what it answered.
fn history_of(row: &OwnedObject) -> Vec<Value> {
    let mut items = kept_list(&row.items, "history");
    items.extend(kept_list(&row.items, "input"));
    items.extend(kept_list(&row.snapshot, "output"));
    items
}

/// A whole chat answer as the Response it stands for, and its usage.
pub(crate) fn answer_translated(chat: &[u8], ctx: &ResponseContext) -> (Bytes, Usage) {
    let chat: Value = serde_json::from_slice(chat).unwrap_or(Value::Null);
    let response = translate::response_from_chat(&chat, ctx);
    let usage = translate::usage_of_response(&response).map_or_else(Usage::default, Usage::from);
    (Bytes::from(response.to_string()), usage)
}

/// Who will own the response a call creates.
pub(crate) struct Keep {
    objects: Arc<dyn ObjectRegistry>,
    project_id: ProjectId,
    key_id: KeyId,
    owner_id: UserId,
    upstream: String,
    model: String,
    background: bool,
    kept: Kept,
}

enum Kept {
    /// The upstream keeps it; Keyward keeps its owner.
    Native,
    /// Keyward keeps it: what led to it (`{"history": […], "input": […]}`).
    Translated { items: String },
}

impl Keep {
    fn object(&self, id: &str, created_at: i64, snapshot: Option<String>) -> OwnedObject {
        OwnedObject {
            kind: ObjectKind::Response,
            id: id.to_owned(),
            project_id: self.project_id.clone(),
            key_id: self.key_id.clone(),
            owner_id: self.owner_id.clone(),
            upstream: self.upstream.clone(),
            model: Some(self.model.clone()),
            created_at,
            purpose: None,
            parent_id: None,
            snapshot,
            items: match &self.kept {
                Kept::Native => None,
                Kept::Translated { items } => Some(items.clone()),
            },
            // A background response's usage comes later.
            settled: !self.background,
        }
    }

    async fn save(&self, object: OwnedObject) {
        if let Err(e) = self.objects.record(&object).await {
            tracing::error!(error = %e, response = %object.id, "the response's owner could not be recorded; its owner will get 404 for it");
        }
    }

    /// A native stream named its response.
    pub(crate) async fn record_id(&self, id: &str, created_at: i64) {
        self.save(self.object(id, created_at, None)).await;
    }

    /// A Response came back (whole, or as a translated stream's last
    /// event): its owner is recorded, and Keyward keeps a translated one.
    pub(crate) async fn record_response(&self, response: &Value) {
        let Some(id) = response["id"].as_str() else {
            return;
        };
        let created_at = response["created_at"].as_i64().unwrap_or_else(now_unix);
        let kept = matches!(self.kept, Kept::Translated { .. }).then(|| response.to_string());
        self.save(self.object(id, created_at, kept)).await;
    }

    /// A whole answer (a Response object) came back.
    pub(crate) async fn record_answer(&self, body: &[u8]) {
        if let Ok(response) = serde_json::from_slice::<Value>(body) {
            self.record_response(&response).await;
        }
    }
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, row) = caller_and_owned(&gw, req, Access::Read, &id).await?;
    if row.items.is_some() {
        return Ok(json_response(
            StatusCode::OK,
            row.snapshot.unwrap_or_default().into(),
        ));
    }
    forward_and_settle(&gw, &row, Method::GET, "", parts.uri.query()).await
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, row) = caller_and_owned(&gw, req, Access::Write, &id).await?;
    if row.items.is_some() {
        gw.objects.forget(ObjectKind::Response, &id).await?;
        let body = json!({"id": id, "object": "response.deleted", "deleted": true});
        return Ok(json_response(StatusCode::OK, body.to_string().into()));
    }
    let answer = forward(&gw, &row, Method::DELETE, &id, "", None).await?;
    if answer.status.is_success() {
        gw.objects.forget(ObjectKind::Response, &id).await?;
    }
    Ok(answer.relay())
}

/// `POST /v1/responses/{id}/cancel`: background responses only.
pub async fn cancel(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, row) = caller_and_owned(&gw, req, Access::Write, &id).await?;
    if row.items.is_some() {
        return Err(ApiError::invalid(
            None,
            "Only responses created with background: true can be cancelled; this one has finished.",
        ));
    }
    forward_and_settle(&gw, &row, Method::POST, "/cancel", None).await
}

/// Forwards a call about a native response and, when it answers a
/// background response seen finished, records its usage.
async fn forward_and_settle(
    gw: &Gateway,
    row: &OwnedObject,
    method: Method,
    tail: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let answer = forward(gw, row, method, &row.id, tail, query).await?;
    if answer.status.is_success() && !row.settled {
        settle_background(gw, row, &answer.body).await;
    }
    Ok(answer.relay())
}

/// `GET /v1/responses/{id}/input_items`: `after`, `limit` (1–100, default
/// 20) and `order` (default `desc`), read after the caller is known.
pub async fn input_items(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, row) = caller_and_owned(&gw, req, Access::Read, &id).await?;
    let bounds = Bounds {
        default_limit: 20,
        max_limit: 100,
        purpose: false,
    };
    let page = list::parse(Query::try_from_uri(&parts.uri), &bounds)?;
    if row.items.is_none() {
        let answer = forward(
            &gw,
            &row,
            Method::GET,
            &id,
            "/input_items",
            parts.uri.query(),
        )
        .await?;
        return Ok(answer.relay());
    }
    let (limit, newest_first) = (page.limit as usize, page.newest_first);
    let mut items = kept_list(&row.items, "input");
    if newest_first {
        items.reverse();
    }
    let start = match &page.after {
        None => 0,
        Some(after) => {
            items
                .iter()
                .position(|i| i["id"].as_str() == Some(after))
                .ok_or_else(|| {
                    ApiError::invalid(
                        Some("after".into()),
                        "`after` is not an item of this response; pass the `last_id` of the previous page.",
                    )
                })?
                + 1
        }
    };
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let body = json!({
        "object": "list",
        "data": page,
        "first_id": page.first().map(|i| i["id"].clone()),
        "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": items.len() > start + page.len(),
    });
    Ok(json_response(StatusCode::OK, body.to_string().into()))
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    forward::respond(status, None, Body::from(body))
}

/// Sends `method /responses/{id}{tail}?{query}` to the upstream that holds
/// the response (an upstream 404 forgets it here too).
async fn forward(
    gw: &Gateway,
    row: &OwnedObject,
    method: Method,
    id: &str,
    tail: &str,
    query: Option<&str>,
) -> Result<Answer, ApiError> {
    let path = match query {
        Some(q) => format!("/responses/{id}{tail}?{q}"),
        None => format!("/responses/{id}{tail}"),
    };
    forward::fetch_owned(gw, row, method, &path).await
}

/// A background response seen finished: its usage goes to the ledger once.
async fn settle_background(gw: &Gateway, row: &OwnedObject, body: &[u8]) {
    let Ok(response) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(usage) = translate::usage_of_response(&response) else {
        return;
    };
    let model = response["model"].as_str().unwrap_or_default();
    let usage = Usage::from(usage);
    crate::deferred::record(gw, row, Endpoint::Responses, model, usage).await;
}
