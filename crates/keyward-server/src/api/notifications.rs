//! `/v1/organization/notifications`: notices to the caller, such as keys
//! revoked because they were found exposed.

use axum::extract::State;
use axum::{Extension, Json};
use keyward_service::Caller;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{ApiQuery, PageQuery};
use super::objects::List;
use super::AppState;

/// Lists the caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/organization/notifications", tag = "notifications", params(PageQuery),
    responses((status = 200, description = "A list of notifications")))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<List<Value>>> {
    let listed = state.services.notifications(&caller, &q.page()?).await?;
    Ok(Json(List::new(
        listed,
        |n| n.id.clone(),
        |n| {
            json!({
                "object": "organization.notification",
                "id": n.id,
                "type": n.kind,
                "created_at": n.created_at,
                "read_at": n.read_at,
                "message": n.message,
                "key": n.details.get("key"),
                "found_at": n.details.get("found_at"),
            })
        },
    )))
}
