//! `/v1/organization/projects`: list, create, retrieve, rename, archive.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use keyward_core::ProjectId;
use keyward_service::{Caller, ProjectPatch};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiResult;
use super::extract::{nullable, path_id, ApiJson, ApiQuery, PageQuery};
use super::objects::{List, ProjectObject};
use super::project_keys::{budget, UpdateLimits};
use super::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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

/// Changes to a project; absent fields stay, `null` clears.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyBody {
    name: Option<String>,
    /// Limits on all the project's keys together.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    rate_limits: Option<Option<UpdateLimits>>,
    #[serde(default, deserialize_with = "nullable")]
    monthly_budget_usd: Option<Option<f64>>,
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

/// Renames a project or sets its project-wide rate limits and monthly
/// budget (owners only).
#[utoipa::path(post, path = "/v1/organization/projects/{project_id}", tag = "projects",
    params(("project_id" = String, Path)), request_body = ModifyBody, responses((status = 200, body = ProjectObject)))]
pub async fn modify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
    ApiJson(body): ApiJson<ModifyBody>,
) -> ApiResult<Json<ProjectObject>> {
    let id = path_id("project_id", &project_id, ProjectId::parse)?;
    let patch = ProjectPatch {
        name: body.name,
        rate_limits: UpdateLimits::patch(body.rate_limits),
        monthly_budget: body
            .monthly_budget_usd
            .map(|b| b.map(budget).transpose())
            .transpose()?,
    };
    Ok(Json(
        state
            .services
            .update_project(&caller, &id, patch)
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
