//! `/v1/organization/projects/{project_id}/api_keys`: a project's secret keys.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::{Extension, Json};
use keyward_core::{KeyId, Micros, Permissions, ProjectId};
use keyward_core::{RateLimits, RevokeReason};
use keyward_service::{Caller, KeyPatch, KeyRef, KeySpec, LimitsPatch};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};
use super::extract::{nullable, path_id, ApiJson, ApiQuery, PageQuery};
use super::objects::{CreatedKeyObject, DeletedObject, KeyObject, List};
use super::{present, AppState};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
    /// Include revoked keys (default false).
    #[serde(default)]
    include_revoked: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsBody {
    requests_per_minute: Option<i64>,
    tokens_per_minute: Option<i64>,
    max_concurrent_requests: Option<i64>,
}

/// A new key's settings; every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Only to tell keys apart; up to 256 characters.
    #[serde(default)]
    name: Option<String>,
    /// `{"mode":"all"}` (default), `{"mode":"read_only"}` or `{"mode":"restricted", "models":"read", …}`.
    #[schema(value_type = Object)]
    permissions: Option<Permissions>,
    /// Unix seconds after which the key stops working.
    expires_at: Option<i64>,
    allowed_models: Option<Vec<String>>,
    /// Addresses or CIDR blocks the key may be used from.
    allowed_ips: Option<Vec<String>>,
    rate_limits: Option<RateLimitsBody>,
    monthly_budget_usd: Option<f64>,
}

/// Changes to a key; absent fields stay, `null` clears.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    name: Option<String>,
    #[schema(value_type = Object)]
    permissions: Option<Permissions>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    allowed_ips: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    rate_limits: Option<Option<UpdateLimits>>,
    #[serde(default, deserialize_with = "nullable")]
    monthly_budget_usd: Option<Option<f64>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLimits {
    #[serde(default, deserialize_with = "nullable")]
    pub requests_per_minute: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tokens_per_minute: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_concurrent_requests: Option<Option<i64>>,
}

impl UpdateLimits {
    /// `rate_limits` of an update body: absent leaves all three, `null` clears all three.
    pub fn patch(body: Option<Option<UpdateLimits>>) -> LimitsPatch {
        match body {
            None => LimitsPatch::default(),
            Some(None) => LimitsPatch::CLEAR,
            Some(Some(l)) => LimitsPatch {
                requests_per_minute: l.requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
                max_concurrent_requests: l.max_concurrent_requests,
            },
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working: 0 (default) to 604800 (7 days).
    #[serde(default)]
    grace_period_seconds: i64,
}

pub fn budget(usd: f64) -> Result<Micros, ApiError> {
    Micros::from_usd(usd).map_err(|e| {
        ApiError::invalid(
            Some("monthly_budget_usd".into()),
            format!("`monthly_budget_usd` {e}."),
        )
    })
}

impl CreateBody {
    fn into_spec(self) -> Result<KeySpec, ApiError> {
        let limits = self.rate_limits.unwrap_or_default();
        Ok(KeySpec {
            name: self.name.unwrap_or_default(),
            permissions: self.permissions,
            expires_at: self.expires_at,
            allowed_models: self.allowed_models,
            allowed_ips: self.allowed_ips,
            rate_limits: RateLimits {
                requests_per_minute: limits.requests_per_minute,
                tokens_per_minute: limits.tokens_per_minute,
                max_concurrent_requests: limits.max_concurrent_requests,
            },
            monthly_budget: self.monthly_budget_usd.map(budget).transpose()?,
        })
    }
}

impl UpdateBody {
    fn into_patch(self) -> Result<KeyPatch, ApiError> {
        Ok(KeyPatch {
            name: self.name,
            permissions: self.permissions,
            expires_at: self.expires_at,
            allowed_models: self.allowed_models,
            allowed_ips: self.allowed_ips,
            rate_limits: UpdateLimits::patch(self.rate_limits),
            monthly_budget: self
                .monthly_budget_usd
                .map(|b| b.map(budget).transpose())
                .transpose()?,
        })
    }
}

fn ids(project_id: &str, key_id: &str) -> Result<(ProjectId, KeyId), ApiError> {
    Ok((
        path_id("project_id", project_id, ProjectId::parse)?,
        path_id("key_id", key_id, KeyId::parse)?,
    ))
}

/// Lists a project's keys, newest first; never their secrets.
#[utoipa::path(get, path = "/v1/organization/projects/{project_id}/api_keys", tag = "api keys",
    params(("project_id" = String, Path), ListQuery), responses((status = 200, body = List<KeyObject>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<List<KeyObject>>> {
    let project = path_id("project_id", &project_id, ProjectId::parse)?;
    let page = PageQuery {
        after: q.after,
        limit: q.limit,
    }
    .page()?;
    let listed = state
        .services
        .list_project_keys(&caller, &project, q.include_revoked, &page)
        .await?;
    Ok(Json(present::key_list(&state.services, listed).await?))
}

/// Creates a key. The response carries the secret in `value`, this once.
#[utoipa::path(post, path = "/v1/organization/projects/{project_id}/api_keys", tag = "api keys",
    params(("project_id" = String, Path)), request_body = CreateBody, responses((status = 200, body = CreatedKeyObject)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<Response> {
    let project = path_id("project_id", &project_id, ProjectId::parse)?;
    let created = state
        .services
        .create_project_key(&caller, &project, body.into_spec()?)
        .await?;
    Ok(present::created(&state.services, created).await?)
}

/// Retrieves a key.
#[utoipa::path(get, path = "/v1/organization/projects/{project_id}/api_keys/{key_id}", tag = "api keys",
    params(("project_id" = String, Path), ("key_id" = String, Path)), responses((status = 200, body = KeyObject)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<KeyObject>> {
    let (project, key) = ids(&project_id, &key_id)?;
    let record = state
        .services
        .key(&caller, KeyRef::InProject(&project, &key))
        .await?;
    Ok(Json(present::key(&state.services, record).await?))
}

/// Changes a key's name, permissions, expiry, allow-lists, limits or budget.
#[utoipa::path(post, path = "/v1/organization/projects/{project_id}/api_keys/{key_id}", tag = "api keys",
    params(("project_id" = String, Path), ("key_id" = String, Path)), request_body = UpdateBody,
    responses((status = 200, body = KeyObject)))]
pub async fn modify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, key_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> ApiResult<Json<KeyObject>> {
    let (project, key) = ids(&project_id, &key_id)?;
    let record = state
        .services
        .update_key(
            &caller,
            KeyRef::InProject(&project, &key),
            body.into_patch()?,
        )
        .await?;
    Ok(Json(present::key(&state.services, record).await?))
}

/// Revokes a key for good; every later request with it gets 401. Idempotent.
#[utoipa::path(delete, path = "/v1/organization/projects/{project_id}/api_keys/{key_id}", tag = "api keys",
    params(("project_id" = String, Path), ("key_id" = String, Path)), responses((status = 200, body = DeletedObject)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<DeletedObject>> {
    let (project, key) = ids(&project_id, &key_id)?;
    let record = state
        .services
        .revoke_key(
            &caller,
            KeyRef::InProject(&project, &key),
            RevokeReason::User,
            None,
        )
        .await?;
    Ok(Json(DeletedObject {
        object: "organization.project.api_key.deleted",
        id: record.id.to_string(),
        deleted: true,
    }))
}

/// Gives a key a new secret with the same settings; the old secret keeps
/// working for `grace_period_seconds`. The response carries the new secret once.
#[utoipa::path(post, path = "/v1/organization/projects/{project_id}/api_keys/{key_id}/rotate", tag = "api keys",
    params(("project_id" = String, Path), ("key_id" = String, Path)), request_body = RotateBody,
    responses((status = 200, body = CreatedKeyObject)))]
pub async fn rotate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, key_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RotateBody>,
) -> ApiResult<Response> {
    let (project, key) = ids(&project_id, &key_id)?;
    let created = state
        .services
        .rotate_key(
            &caller,
            KeyRef::InProject(&project, &key),
            body.grace_period_seconds,
        )
        .await?;
    Ok(present::created(&state.services, created).await?)
}
