//! `/v1/organization/audit_logs`: who changed what, newest first.

use axum::extract::State;
use axum::{Extension, Json};
use keyward_core::ProjectId;
use keyward_service::Caller;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, PageQuery};
use super::objects::{audit_object, List};
use super::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
    /// Only these projects' events (`project_ids[]=…`, repeatable).
    #[serde(default, rename = "project_ids[]", alias = "project_ids")]
    project_ids: Vec<String>,
    /// Only these event types, e.g. `api_key.created` (`event_types[]=…`, repeatable).
    #[serde(default, rename = "event_types[]", alias = "event_types")]
    event_types: Vec<String>,
}

/// Lists audit-log entries of the caller's projects and account.
#[utoipa::path(get, path = "/v1/organization/audit_logs", tag = "audit logs", params(ListQuery),
    responses((status = 200, body = List<Object>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<List<Value>>> {
    let page = PageQuery {
        after: q.after,
        limit: q.limit,
    }
    .page()?;
    let projects = q
        .project_ids
        .iter()
        .map(|p| {
            ProjectId::parse(p)
                .map_err(|e| ApiError::invalid(Some("project_ids".into()), format!("{e}.")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(bad) = q.event_types.iter().find(|t| {
        t.len() > 64
            || !t
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
    }) {
        return Err(ApiError::invalid(
            Some("event_types".into()),
            format!(
                "`{}` is not an event type such as api_key.created.",
                bad.chars().take(64).collect::<String>()
            ),
        ));
    }
    let listed = state
        .services
        .list_audit_logs(&caller, projects, q.event_types, &page)
        .await?;
    Ok(Json(List::new(listed, |e| e.id.to_string(), audit_object)))
}
