//! Liveness and readiness probes.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: its database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses((status = 200, description = "Ready"), (status = 503, description = "The database does not answer")))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.services.ping().await.map_err(|_| {
        ApiError::unavailable("The database does not answer; Keyward is not ready.")
    })?;
    Ok(Json(json!({
        "status": "ready",
        "ledger_queue_depth": state.ledger.queue_depth(),
    })))
}
