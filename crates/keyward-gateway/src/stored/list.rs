//! Lists answered from Keyward's table: the caller's project's rows, in
//! OpenAI's list shape, each object as its last snapshot. Pagination is
//! the table's own (`after` must be one of the caller's ids), so a page
//! is never emptied by other projects' objects.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request};
use axum::Json;
use keyward_core::{Access, ObjectKind, ObjectQuery, OwnedObject};
use serde_json::{json, Value};

use super::{authorize, group_of, Caller};
use crate::error::ApiError;
use crate::Gateway;

/// What one list accepts.
pub(crate) struct Bounds {
    pub default_limit: u32,
    pub max_limit: u32,
    /// Whether `?purpose=` filters it (files only).
    pub purpose: bool,
}

/// A list request's query, checked.
pub(crate) struct Page {
    pub limit: u32,
    pub after: Option<String>,
    pub newest_first: bool,
    pub purpose: Option<String>,
}

/// Reads `after`, `limit`, `order` (`asc` | `desc`, default `desc`) and,
/// where `bounds` allows, `purpose`. Other parameters are ignored, as
/// SDKs send some Keyward has no use for.
pub(crate) fn parse(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    bounds: &Bounds,
) -> Result<Page, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::invalid(
            None,
            format!("The query string could not be read ({e}); percent-encode its values."),
        )
    })?;
    let mut page = Page {
        limit: bounds.default_limit,
        after: None,
        newest_first: true,
        purpose: None,
    };
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=bounds.max_limit).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            Some("limit".into()),
                            format!(
                                "limit must be a whole number from 1 to {}.",
                                bounds.max_limit
                            ),
                        )
                    })?
            }
            "order" => {
                page.newest_first = match value.as_str() {
                    "desc" => true,
                    "asc" => false,
                    _ => {
                        return Err(ApiError::invalid(
                            Some("order".into()),
                            "order must be `asc` (oldest first) or `desc` (newest first).",
                        ))
                    }
                }
            }
            "after" if !value.is_empty() => page.after = Some(value),
            "purpose" if bounds.purpose && !value.is_empty() => page.purpose = Some(value),
            _ => {}
        }
    }
    Ok(page)
}

/// A list call: the caller (read on the kind's group), its rows of
/// `kind` on the page the query asks for, and whether more follow.
pub(super) async fn rows(
    gw: &Gateway,
    req: Request,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    kind: ObjectKind,
    bounds: &Bounds,
) -> Result<(Caller, Vec<OwnedObject>, bool), ApiError> {
    let (parts, _) = req.into_parts();
    let (caller, _) = authorize(gw, &parts, group_of(kind), Access::Read).await?;
    let page = parse(query, bounds)?;
    let listed = gw
        .objects
        .list(&ObjectQuery {
            project_id: &caller.project,
            kind,
            purpose: page.purpose.as_deref(),
            after: page.after.as_deref(),
            limit: page.limit,
            newest_first: page.newest_first,
        })
        .await?;
    Ok((caller, listed.items, listed.has_more))
}

/// `{"object":"list","data":[…],"first_id","last_id","has_more"}`.
pub(super) fn render(rows: &[OwnedObject], has_more: bool) -> Json<Value> {
    let data: Vec<Value> = rows.iter().map(snapshot).collect();
    Json(json!({
        "object": "list",
        "data": data,
        "first_id": rows.first().map(|r| &r.id),
        "last_id": rows.last().map(|r| &r.id),
        "has_more": has_more,
    }))
}

/// The object as last seen; a row without a readable snapshot still
/// shows its id, so pagination stays whole.
fn snapshot(row: &OwnedObject) -> Value {
    row.snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"id": row.id, "object": row.kind.noun()}))
}
