//! `/v1/files` and `/v1/batches`, proxied to the one upstream configured
//! `files = true` (docs/design/responses-api.md §5–§7).
//!
//! Every Keyward project shares the operator's upstream account, so the
//! upstream would show any file or batch to any key. Keyward records the
//! project that created each id (`ObjectRegistry`) and answers only that
//! project:
//!
//! - an id that is missing and an id another project owns get the same
//!   404, and neither reaches the upstream, so existence does not leak;
//! - lists are answered from Keyward's own table (approach (b) of §7.3),
//!   never from the upstream's list, which holds every project's objects;
//! - a batch's output and error files become its project's files.
//!
//! These calls name no model, so they pass no rate-limit or budget
//! admission: managing files and batches costs nothing. What a batch used
//! is billed once, when Keyward first sees it completed ([`batches`]).

mod batches;
mod files;
pub(crate) mod list;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use keyward_core::{time::now_unix, Access, EndpointGroup, ObjectKind, OwnedObject, ProjectId};
use keyward_service::ActiveKey;
use serde_json::{Map, Value};

use crate::catalog::Upstream;
use crate::error::{ApiError, ApiErrorKind};
use crate::Gateway;

/// The routes, before the gateway's state is attached.
pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/v1/files", post(files::upload).get(files::list))
        .route("/v1/files/{id}", get(files::retrieve).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route(
            "/v1/batches",
            post(batches::create_batch).get(batches::list),
        )
        .route("/v1/batches/{id}", get(batches::retrieve))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
}

/// A key allowed the call, and the project whose objects it sees.
struct Caller {
    key: Arc<ActiveKey>,
    project: ProjectId,
}

impl Caller {
    /// Refuses (401, as `proxy::caller` does) a key without `needed` on `group`.
    fn require(&self, group: EndpointGroup, needed: Access) -> Result<(), ApiError> {
        crate::proxy::require(&self.key, group, needed)
    }
}

/// The files upstream and the caller, once both are known: 404 when this
/// installation serves no files, then the key's permission and address.
async fn authorize(
    gw: &Gateway,
    parts: &Parts,
    group: EndpointGroup,
    needed: Access,
) -> Result<(Caller, Arc<Upstream>), ApiError> {
    let upstream = gw.catalog.files_upstream().cloned().ok_or_else(|| {
        ApiError::not_found(
            "Files and batches are not served by this installation. An operator enables them by setting `files = true` on the upstream that should hold them.",
        )
    })?;
    let key = crate::proxy::caller(gw, parts, group, needed).await?;
    let project = key.key.project_id.clone().ok_or_else(|| {
        ApiError::new(
            ApiErrorKind::InvalidKey,
            "This key belongs to no project, and files and batches belong to projects. Use a project API key.",
        )
    })?;
    Ok((Caller { key, project }, upstream))
}

/// The permission group of a kind's calls.
fn group_of(kind: ObjectKind) -> EndpointGroup {
    match kind {
        ObjectKind::File => EndpointGroup::Files,
        ObjectKind::Batch => EndpointGroup::Batch,
        ObjectKind::Response => EndpointGroup::Responses,
    }
}

/// The caller and its project's object `id`, for a call naming one in
/// its path.
async fn authorize_owned(
    gw: &Gateway,
    req: Request,
    needed: Access,
    kind: ObjectKind,
    id: &str,
) -> Result<(Caller, OwnedObject), ApiError> {
    let (parts, _) = req.into_parts();
    let (caller, _) = authorize(gw, &parts, group_of(kind), needed).await?;
    let param = if kind == ObjectKind::Batch {
        "batch_id"
    } else {
        "id"
    };
    let row = owned(gw, &caller, kind, id, param).await?;
    Ok((caller, row))
}

/// The caller's project's object `id`, or the 404 OpenAI gives for a
/// missing one: the same whether it is missing or another project's.
async fn owned(
    gw: &Gateway,
    caller: &Caller,
    kind: ObjectKind,
    id: &str,
    param: &str,
) -> Result<OwnedObject, ApiError> {
    gw.objects
        .owned(kind, id, &caller.project)
        .await?
        .ok_or_else(|| no_such(kind, id).with_param(param))
}

/// The 404 OpenAI gives for a missing file, batch or response object.
pub(crate) fn no_such(kind: ObjectKind, id: &str) -> ApiError {
    let noun = match kind {
        ObjectKind::File => "File",
        ObjectKind::Batch => "Batch",
        ObjectKind::Response => "Response",
    };
    let id: String = id.chars().take(128).collect();
    ApiError::not_found(format!("No such {noun} object: {id}"))
}

/// The row for an object the upstream just created for `creator`.
fn new_row(
    kind: ObjectKind,
    creator: &Caller,
    upstream: &str,
    object: &Map<String, Value>,
    snapshot: String,
) -> Option<OwnedObject> {
    let text = |field: &str| object.get(field).and_then(Value::as_str).map(str::to_owned);
    Some(OwnedObject {
        kind,
        id: text("id")?,
        project_id: creator.project.clone(),
        key_id: creator.key.key.id.clone(),
        owner_id: creator.key.key.owner_id.clone(),
        upstream: upstream.to_owned(),
        model: None,
        created_at: object
            .get("created_at")
            .and_then(Value::as_i64)
            .unwrap_or_else(now_unix),
        purpose: text("purpose"),
        parent_id: None,
        snapshot: Some(snapshot),
        items: None,
        settled: false,
    })
}

/// Sends a create (`POST /files`, `POST /batches`) to the files upstream
/// and records what it created as the caller's project's, before the
/// answer is relayed (so the next call can already use it).
async fn create(
    gw: &Gateway,
    caller: &Caller,
    upstream: &Upstream,
    kind: ObjectKind,
    call: crate::forward::Call<'_>,
) -> Result<Response, ApiError> {
    let answer = crate::forward::send(upstream, call).await?.read().await?;
    if answer.status.is_success() {
        record_created(gw, caller, kind, &upstream.name, &answer).await?;
    }
    Ok(answer.relay())
}

/// Records what the upstream just created; an answer without an id cannot
/// be owned, so it is not handed out (502) rather than left unowned.
async fn record_created(
    gw: &Gateway,
    caller: &Caller,
    kind: ObjectKind,
    upstream: &str,
    answer: &crate::forward::Answer,
) -> Result<(), ApiError> {
    let row = answer
        .object()
        .and_then(|o| {
            new_row(
                kind,
                caller,
                upstream,
                &o,
                String::from_utf8_lossy(&answer.body).into_owned(),
            )
        })
        .ok_or_else(|| {
            tracing::warn!(upstream, kind = kind.as_str(), "upstream created an object without an id");
            ApiError::new(
                ApiErrorKind::UpstreamUnreachable,
                format!("The upstream `{upstream}` answered without the new {}'s id. Try again; if it persists, tell the operator.", kind.noun()),
            )
        })?;
    Ok(gw.objects.record(&row).await?)
}
