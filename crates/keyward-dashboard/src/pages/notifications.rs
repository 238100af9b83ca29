//! The Notifications page: notices such as a key revoked because it was
//! found exposed.

use axum::extract::State;
use axum::response::Response;
use keyward_core::Page;
use serde_json::{json, Value};

use crate::dates;
use crate::error::DashError;
use crate::render;
use crate::visitor::SignedIn;
use crate::Dash;

pub async fn page(State(dash): State<Dash>, who: SignedIn) -> Result<Response, DashError> {
    let listed = dash
        .services
        .notifications(
            &who.caller,
            &Page {
                after: None,
                limit: keyward_service::MAX_PAGE,
            },
        )
        .await?;
    let items: Vec<Value> = listed
        .items
        .iter()
        .map(|n| {
            json!({
                "kind": n.kind,
                "exposed": n.kind.contains("exposed"),
                "message": n.message,
                "when": dates::human(n.created_at),
                "key": n.details.get("key").and_then(|k| k.get("redacted_value")).and_then(Value::as_str),
            })
        })
        .collect();
    Ok(render::page(
        &who,
        "notifications",
        "Notifications",
        json!({ "items": items }),
    ))
}
