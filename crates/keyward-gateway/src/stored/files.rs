//! `/v1/files`: uploads recorded as the caller's project's, lists from
//! the table, and retrieve, content and delete for the owner only.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use keyward_core::{Access, EndpointGroup, ObjectKind};

use super::{authorize, authorize_owned, create, list};
use crate::error::ApiError;
use crate::forward::Call;
use crate::forward::{fetch_owned, send_owned};
use crate::request::read_body;
use crate::Gateway;

const FILE: ObjectKind = ObjectKind::File;

/// OpenAI's file list: up to 10,000 a page, all by default.
const BOUNDS: list::Bounds = list::Bounds {
    default_limit: 10_000,
    max_limit: 10_000,
    purpose: true,
};

/// `POST /v1/files`: the multipart form forwarded byte for byte.
pub(super) async fn upload(State(gw): State<Gateway>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let (caller, upstream) = authorize(&gw, &parts, EndpointGroup::Files, Access::Write).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .filter(|v| v.as_bytes().starts_with(b"multipart/form-data"))
        .cloned()
        .ok_or_else(|| {
            ApiError::invalid(
                None,
                "Upload a file as multipart/form-data with the fields `file` and `purpose`.",
            )
        })?;
    let call = Call {
        method: Method::POST,
        path: "/files",
        content_type: Some(content_type),
        body: read_body(body, gw.max_upload_bytes).await?,
    };
    create(&gw, &caller, &upstream, FILE, call).await
}

/// `GET /v1/files`: the project's files, from the table.
pub(super) async fn list(
    State(gw): State<Gateway>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, rows, has_more) = list::rows(&gw, req, query, FILE, &BOUNDS).await?;
    Ok(list::render(&rows, has_more).into_response())
}

/// `GET /v1/files/{id}`: the FileObject, kept as the list's snapshot.
pub(super) async fn retrieve(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, row) = authorize_owned(&gw, req, Access::Read, FILE, &id).await?;
    let answer = fetch_owned(&gw, &row, Method::GET, &format!("/files/{id}")).await?;
    if answer.object().is_some() {
        gw.objects
            .refresh(FILE, &id, &String::from_utf8_lossy(&answer.body))
            .await?;
    }
    Ok(answer.relay())
}

/// `GET /v1/files/{id}/content`: the bytes, streamed as they come.
pub(super) async fn content(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, row) = authorize_owned(&gw, req, Access::Read, FILE, &id).await?;
    let path = format!("/files/{id}/content");
    Ok(send_owned(&gw, &row, Call::empty(Method::GET, &path))
        .await?
        .relay())
}

/// `DELETE /v1/files/{id}`: deleted upstream, then forgotten.
pub(super) async fn delete(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (_, row) = authorize_owned(&gw, req, Access::Write, FILE, &id).await?;
    let answer = fetch_owned(&gw, &row, Method::DELETE, &format!("/files/{id}")).await?;
    if answer.status.is_success() {
        gw.objects.forget(FILE, &id).await?;
    }
    Ok(answer.relay())
}
