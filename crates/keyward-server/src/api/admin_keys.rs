//! `/v1/organization/admin_api_keys`: keys that manage an account's projects.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::{Extension, Json};
use keyward_core::KeyId;
use keyward_core::RevokeReason;
use keyward_service::{Caller, KeyRef};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiResult;
use super::extract::{path_id, ApiJson, ApiQuery, PageQuery};
use super::objects::{CreatedKeyObject, DeletedObject, KeyObject, List};
use super::{present, AppState};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    /// Unix seconds after which the key stops working.
    expires_at: Option<i64>,
}

/// Lists the caller's admin keys, newest first.
#[utoipa::path(get, path = "/v1/organization/admin_api_keys", tag = "admin api keys", params(PageQuery),
    responses((status = 200, body = List<KeyObject>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<KeyObject>>> {
    let listed = state.services.list_admin_keys(&caller, &q.page()?).await?;
    Ok(Json(present::key_list(&state.services, listed).await?))
}

/// Creates an admin key for the caller; the response carries the secret once.
#[utoipa::path(post, path = "/v1/organization/admin_api_keys", tag = "admin api keys", request_body = CreateBody,
    responses((status = 200, body = CreatedKeyObject)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<Response> {
    let created = state
        .services
        .create_admin_key(
            &caller,
            None,
            body.name.as_deref().unwrap_or_default(),
            body.expires_at,
        )
        .await?;
    Ok(present::created(&state.services, created).await?)
}

/// Retrieves one of the caller's admin keys.
#[utoipa::path(get, path = "/v1/organization/admin_api_keys/{key_id}", tag = "admin api keys",
    params(("key_id" = String, Path)), responses((status = 200, body = KeyObject)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
) -> ApiResult<Json<KeyObject>> {
    let id = path_id("key_id", &key_id, KeyId::parse)?;
    let record = state.services.key(&caller, KeyRef::Admin(&id)).await?;
    Ok(Json(present::key(&state.services, record).await?))
}

/// Revokes one of the caller's admin keys. Idempotent.
#[utoipa::path(delete, path = "/v1/organization/admin_api_keys/{key_id}", tag = "admin api keys",
    params(("key_id" = String, Path)), responses((status = 200, body = DeletedObject)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
) -> ApiResult<Json<DeletedObject>> {
    let id = path_id("key_id", &key_id, KeyId::parse)?;
    let record = state
        .services
        .revoke_key(&caller, KeyRef::Admin(&id), RevokeReason::User, None)
        .await?;
    Ok(Json(DeletedObject {
        object: "organization.admin_api_key.deleted",
        id: record.id.to_string(),
        deleted: true,
    }))
}
