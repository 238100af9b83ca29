//! `/v1/organization/projects`: list, create, retrieve, rename, archive.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use keyward_core::ProjectId;
use keyward_service::Caller;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiResult;
use super::extract::{path_id, ApiJson, ApiQuery, PageQuery};
use super::objects::{List, ProjectObject};
use super::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
    /// Include archived projects (default false).
    #[serde(default)]
    include_archived: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectBody {
    /// The project's name, 1 to 256 characters.
    name: String,
}

/// Lists the projects the caller belongs to, newest first.
#[utoipa::path(get, path = "/v1/organization/projects", tag = "projects", params(ListQuery),
    responses((status = 200, body = List<ProjectObject>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<List<ProjectObject>>> {
    let page = PageQuery {
        after: q.after,
        limit: q.limit,
    }
    .page()?;
    let listed = state
        .services
        .list_projects(&caller, q.include_archived, &page)
        .await?;
    Ok(Json(List::new(
        listed,
        |p| p.id.to_string(),
        ProjectObject::from,
    )))
}

/// Creates a project owned by the caller.
#[utoipa::path(post, path = "/v1/organization/projects", tag = "projects", request_body = ProjectBody,
    responses((status = 200, body = ProjectObject)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<ProjectBody>,
) -> ApiResult<Json<ProjectObject>> {
    Ok(Json(
        state
            .services
            .create_project(&caller, &body.name)
            .await?
            .into(),
    ))
}

/// Retrieves a project.
#[utoipa::path(get, path = "/v1/organization/projects/{project_id}", tag = "projects",
    params(("project_id" = String, Path)), responses((status = 200, body = ProjectObject)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
) -> ApiResult<Json<ProjectObject>> {
    let id = path_id("project_id", &project_id, ProjectId::parse)?;
    Ok(Json(state.services.project(&caller, &id).await?.into()))
}

/// Renames a project (owners only).
#[utoipa::path(post, path = "/v1/organization/projects/{project_id}", tag = "projects",
    params(("project_id" = String, Path)), request_body = ProjectBody, responses((status = 200, body = ProjectObject)))]
pub async fn modify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
    ApiJson(body): ApiJson<ProjectBody>,
) -> ApiResult<Json<ProjectObject>> {
    let id = path_id("project_id", &project_id, ProjectId::parse)?;
    Ok(Json(
        state
            .services
            .rename_project(&caller, &id, &body.name)
            .await?
            .into(),
    ))
}

/// Archives a project: its keys stop working. Idempotent (owners only).
#[utoipa::path(post, path = "/v1/organization/projects/{project_id}/archive", tag = "projects",
    params(("project_id" = String, Path)), responses((status = 200, body = ProjectObject)))]
pub async fn archive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
) -> ApiResult<Json<ProjectObject>> {
    let id = path_id("project_id", &project_id, ProjectId::parse)?;
    Ok(Json(
        state.services.archive_project(&caller, &id).await?.into(),
    ))
}
