//! `/v1/batches`: creates checked against the caller's permissions and
//! files, retrieves and cancels for the owner only, lists from the table
//! refreshed where a batch may still change; and the batch's bill.
//!
//! A batch is billed by the upstream when it finishes, which Keyward can
//! only learn by looking. Whenever it sees a batch (retrieve, cancel, a
//! list refreshing it) it:
//! - records a new `output_file_id` / `error_file_id` as the batch's
//!   project's file (purpose `batch_output`, parent the batch), so its
//!   owner can download it and nobody else can;
//! - the first time it sees the batch `completed` with `usage`, writes one
//!   ledger row (endpoint `batches`, request id = the batch id) for the
//!   batch's creator: tokens from `usage`, cost at the catalog's price for
//!   the batch's `model`. A model the catalog does not list costs 0 (the
//!   operator has set no price for it); no batch discount is applied, as
//!   prices have none yet. The row is dated when Keyward saw the batch
//!   finish. The ledger has a user per row and the gateway can look up
//!   only the key making the call, so the user is that key's owner (the
//!   creator's, when the creator looks). `settle` marks the batch so only
//!   one view bills it; the ledger's unique request id guards again.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt};
use keyward_core::{time::now_unix, Access, EndpointGroup, ObjectKind, OwnedObject};
use serde_json::{json, Map, Value};

use super::{authorize, authorize_owned, list, owned};
use crate::error::ApiError;
use crate::forward::fetch_owned;
use crate::forward::{Answer, Call};
use crate::request::read_body;
use crate::request::Endpoint;
use crate::sse::Usage;
use crate::Gateway;

const BATCH: ObjectKind = ObjectKind::Batch;

/// OpenAI's batch list: 1 to 100 a page, 20 by default.
const BOUNDS: list::Bounds = list::Bounds {
    default_limit: 20,
    max_limit: 100,
    purpose: false,
};

/// Batches refreshed at once while a list is answered.
const REFRESH_AT_ONCE: usize = 4;

/// The endpoints a batch may run, each under its own permission group.
const BATCHABLE: [Endpoint; 7] = [
    Endpoint::Responses,
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Moderations,
    Endpoint::ImagesGenerations,
    Endpoint::ImagesEdits,
];

/// The endpoint a batch's `endpoint` names, if a batch may run it.
fn batched(endpoint: &str) -> Option<Endpoint> {
    let path = endpoint.strip_prefix("/v1")?;
    BATCHABLE.into_iter().find(|e| e.path() == path)
}

/// `POST /v1/batches`. Besides write on batches, the key needs write on
/// the endpoint the batch runs (a key that may not call it must not batch
/// it) and read on files, and the input file must be its project's.
pub(super) async fn create_batch(
    State(gw): State<Gateway>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let (caller, upstream) = authorize(&gw, &parts, EndpointGroup::Batch, Access::Write).await?;
    let raw = read_body(body, gw.max_body_bytes).await?;
    let request: Map<String, Value> = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::invalid(
            None,
            format!("The body is not a JSON object ({e}); send {{\"input_file_id\", \"endpoint\", \"completion_window\"}}."),
        )
    })?;
    let field = |name: &str, missing: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(Some(name.into()), missing.to_owned()))
    };
    let input = field(
        "input_file_id",
        "input_file_id is required: the id of a file of purpose `batch` uploaded with this project's keys.",
    )?;
    let named = field(
        "endpoint",
        "endpoint is required, e.g. `/v1/chat/completions`.",
    )?;
    let endpoint = batched(named).ok_or_else(|| {
        let known: Vec<String> = BATCHABLE
            .iter()
            .map(|e| format!("/v1{}", e.path()))
            .collect();
        ApiError::invalid(
            Some("endpoint".into()),
            format!(
                "endpoint `{}` cannot be batched here; use one of {}.",
                named.chars().take(64).collect::<String>(),
                known.join(", ")
            ),
        )
    })?;
    caller.require(endpoint.group(), Access::Write)?;
    caller.require(EndpointGroup::Files, Access::Read)?;
    owned(&gw, &caller, ObjectKind::File, input, "input_file_id").await?;
    let call = Call {
        method: Method::POST,
        path: "/batches",
        content_type: Some(HeaderValue::from_static("application/json")),
        body: raw,
    };
    // New, so without output files or usage to apply yet.
    super::create(&gw, &caller, &upstream, BATCH, call).await
}

/// `GET /v1/batches/{id}`.
pub(super) async fn retrieve(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    look(gw, id, req, Access::Read, Method::GET, "").await
}

/// `POST /v1/batches/{id}/cancel`.
pub(super) async fn cancel(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    look(gw, id, req, Access::Write, Method::POST, "/cancel").await
}

/// A call about one owned batch, its answer applied before it is relayed.
async fn look(
    gw: Gateway,
    id: String,
    req: Request,
    needed: Access,
    method: Method,
    action: &str,
) -> Result<Response, ApiError> {
    let (_, row) = authorize_owned(&gw, req, needed, BATCH, &id).await?;
    let answer = fetch_owned(&gw, &row, method, &format!("/batches/{id}{action}")).await?;
    seen(&gw, &row, &answer).await?;
    Ok(answer.relay())
}

/// `GET /v1/batches`: the project's batches from the table, those that
/// may still change fetched again (falling back to what was last seen).
pub(super) async fn list(
    State(gw): State<Gateway>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, rows, has_more) = list::rows(&gw, req, query, BATCH, &BOUNDS).await?;
    let rows: Vec<OwnedObject> = stream::iter(rows)
        .map(|row| fresh(&gw, row))
        .buffered(REFRESH_AT_ONCE)
        .collect()
        .await;
    Ok(list::render(&rows, has_more).into_response())
}

/// The row with its latest snapshot, fetched only when the batch may
/// still change; on any failure, the row as it was.
async fn fresh(gw: &Gateway, mut row: OwnedObject) -> OwnedObject {
    let status = row
        .snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|b| b.get("status").and_then(Value::as_str).map(str::to_owned));
    if !matches!(
        status.as_deref(),
        Some("validating" | "in_progress" | "finalizing" | "cancelling")
    ) {
        return row;
    }
    let answer = fetch_owned(gw, &row, Method::GET, &format!("/batches/{}", row.id)).await;
    let refreshed = match answer {
        Ok(answer) => seen(gw, &row, &answer).await.map(|()| answer),
        Err(e) => Err(e),
    };
    match refreshed {
        Ok(answer) if answer.status.is_success() => {
            row.snapshot = Some(String::from_utf8_lossy(&answer.body).into_owned());
        }
        Ok(answer) => {
            tracing::warn!(batch = %row.id, status = %answer.status, "batch refresh refused; listing the last snapshot");
        }
        Err(e) => {
            tracing::warn!(batch = %row.id, error = e.message(), "batch refresh failed; listing the last snapshot");
        }
    }
    row
}

/// Applies a batch as the upstream just answered it: its output files
/// become the project's, its snapshot is replaced, and a completed batch
/// is billed once. An answer that is not a batch object changes nothing.
async fn seen(gw: &Gateway, row: &OwnedObject, answer: &Answer) -> Result<(), ApiError> {
    let Some(batch) = answer.object() else {
        return Ok(());
    };
    let before: Option<Value> = row
        .snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    for field in ["output_file_id", "error_file_id"] {
        let Some(file) = batch.get(field).and_then(Value::as_str) else {
            continue;
        };
        let known = before
            .as_ref()
            .and_then(|b| b.get(field))
            .and_then(Value::as_str);
        if known != Some(file) {
            gw.objects.record(&output_file(row, file, &batch)).await?;
        }
    }
    // After the files: a failure above leaves the old snapshot, so the
    // next look records them again.
    gw.objects
        .refresh(BATCH, &row.id, &String::from_utf8_lossy(&answer.body))
        .await?;
    bill(gw, row, &batch).await;
    Ok(())
}

/// A file the upstream wrote for a batch, owned with the batch. Its
/// FileObject was never seen, so its snapshot says what is known until a
/// retrieve replaces it.
fn output_file(batch_row: &OwnedObject, file: &str, batch: &Map<String, Value>) -> OwnedObject {
    let created_at = [
        "completed_at",
        "failed_at",
        "cancelled_at",
        "expired_at",
        "finalizing_at",
    ]
    .iter()
    .find_map(|t| batch.get(*t).and_then(Value::as_i64))
    .unwrap_or_else(now_unix);
    let purpose = "batch_output";
    OwnedObject {
        kind: ObjectKind::File,
        id: file.to_owned(),
        project_id: batch_row.project_id.clone(),
        key_id: batch_row.key_id.clone(),
        owner_id: batch_row.owner_id.clone(),
        upstream: batch_row.upstream.clone(),
        model: None,
        created_at,
        purpose: Some(purpose.to_owned()),
        parent_id: Some(batch_row.id.clone()),
        snapshot: Some(
            json!({"id": file, "object": "file", "created_at": created_at, "purpose": purpose})
                .to_string(),
        ),
        items: None,
        settled: false,
    }
}

/// Writes the batch's one ledger row, if it has just been seen completed
/// with usage (`deferred::record` makes it once).
async fn bill(gw: &Gateway, row: &OwnedObject, batch: &Map<String, Value>) {
    let completed = batch.get("status").and_then(Value::as_str) == Some("completed");
    let usage = batch
        .get("usage")
        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok());
    let (true, Some(usage), false) = (completed, usage, row.settled) else {
        return;
    };
    let model = batch
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    crate::deferred::record(gw, row, Endpoint::Batches, model, usage).await;
}
