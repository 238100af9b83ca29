//! What a page shows when something fails.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_service::ServiceError;
use serde_json::json;

use crate::render;

#[derive(Debug)]
pub enum DashError {
    /// A service refused the request; its message tells the user what to do.
    Service(ServiceError),
    Forbidden(String),
    /// The request was for a host that is not the dashboard's.
    WrongHost(String),
    Internal(String),
}

impl From<ServiceError> for DashError {
    fn from(e: ServiceError) -> Self {
        DashError::Service(e)
    }
}

/// The message to show for a service error; store failures are logged and
/// shown without details.
pub fn user_message(e: &ServiceError) -> String {
    match e {
        ServiceError::Store(inner) => {
            tracing::error!(error = %inner, "dashboard: store failure");
            "Something went wrong on our side. Try again; if it keeps happening, the operator's logs have the details.".into()
        }
        other => other.to_string(),
    }
}

/// The HTTP status for a service error, also when a page shows it inline.
///
/// The API's mapping (`keyward_gateway::error`, `From<ServiceError> for
/// ApiError`) is the reference; a page differs from it only where marked
/// below, on purpose. `keyward-server` tests that these are the only
/// differences.
pub fn status_of(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
        ServiceError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ServiceError::Refused(_) => StatusCode::FORBIDDEN,
        ServiceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // API: 401, as OpenAI answers a key without a scope. A page's
        // visitor is signed in already and signing in again changes
        // nothing, so it is 403 here.
        ServiceError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        // API: 409. A page shows the form again with the message beside
        // what to change, as for any other rejected value: 400.
        ServiceError::Conflict(_) | ServiceError::KeyCapReached(_) => StatusCode::BAD_REQUEST,
        // API: 401 with `WWW-Authenticate: Bearer`. Pages check their
        // session themselves (sign-in failures are the login page's own
        // 401); one reaching here is a rejected form: 400.
        ServiceError::Unauthenticated(_) => StatusCode::BAD_REQUEST,
    }
}

/// A page re-rendered to show `e` inline, with the status `e` calls for.
pub fn inline(e: &ServiceError, page: Result<Response, DashError>) -> Response {
    match page {
        Ok(mut r) => {
            *r.status_mut() = status_of(e);
            r
        }
        Err(err) => err.into_response(),
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            DashError::Service(e) => (status_of(e), user_message(e)),
            DashError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            DashError::WrongHost(m) => (StatusCode::MISDIRECTED_REQUEST, m.clone()),
            DashError::Internal(m) => {
                tracing::error!(error = %m, "dashboard: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side. Try again in a moment.".into(),
                )
            }
        };
        let page = render::html(
            "error.html",
            json!({ "title": status.canonical_reason().unwrap_or("Error"), "status": status.as_u16(), "message": message }),
        );
        (status, page).into_response()
    }
}
