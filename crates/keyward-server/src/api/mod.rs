//! The management HTTP API, shaped like OpenAI's Admin API, and its OpenAPI
//! document. Handlers are thin: they read input, call a service, shape output.

mod admin_keys;
mod audit_logs;
mod auth;
#[cfg(test)]
mod error_statuses;
pub mod exposure;
mod extract;
mod health;
pub mod metrics;
mod notifications;
pub mod objects;
pub mod present;
mod project_keys;
mod projects;
pub mod throttle;
mod usage;

use std::any::Any;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use keyward_service::Services;
use tower::ServiceBuilder;
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use keyward_gateway::error;
use keyward_gateway::request_id::{AssignId, RequestIdLayer};
use keyward_gateway::{Gateway, ModelEndpoints};

use error::{ApiError, ApiErrorKind};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub max_body_bytes: usize,
    pub exposure: std::sync::Arc<exposure::Exposure>,
    pub dashboard: keyward_dashboard::Settings,
    /// The usage ledger's queue, whose depth `/readyz` reports.
    pub ledger: keyward_gateway::Meter,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyward management API", description = "OpenAI Admin-API-shaped management of projects, secret keys and audit logs."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk-kwadmin-… or sk-kw-…")
                    .build(),
            ),
        );
    }
}

/// The routes that need a key, with their OpenAPI description.
fn management(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::retrieve, projects::modify))
        .routes(routes!(projects::archive))
        .routes(routes!(project_keys::list, project_keys::create))
        .routes(routes!(
            project_keys::retrieve,
            project_keys::modify,
            project_keys::delete
        ))
        .routes(routes!(project_keys::rotate))
        .routes(routes!(admin_keys::list, admin_keys::create))
        .routes(routes!(admin_keys::retrieve, admin_keys::delete))
        .routes(routes!(audit_logs::list))
        .routes(routes!(usage::completions))
        .routes(routes!(usage::costs))
        .routes(routes!(notifications::list))
        .split_for_parts();
    let router = router
        .layer(middleware::from_fn_with_state(state, auth::require_key))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(60),
        ));
    (router, api)
}

/// The whole HTTP application: the routes, behind the layers every request
/// passes (its id and access log line, then a 500 instead of a panic).
/// They wrap the router once, not each route, so a request pays for them
/// once. Calls to the model endpoints are served before the router
/// ([`ModelEndpoints`]).
pub type App = AssignId<CatchPanic<ModelEndpoints<Router>, fn(Box<dyn Any + Send>) -> Response>>;

/// `metrics`: `/metrics` on this router, unless it is served on its own
/// address (`None`).
pub fn app(state: AppState, gateway: Gateway, metrics: Option<metrics::MetricsAccess>) -> App {
    let (management, mut openapi) = management(state.clone());
    let dashboard = keyward_dashboard::router(state.services.clone(), state.dashboard.clone());
    let (public, public_api) = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(exposure::report))
        .routes(routes!(exposure::github))
        .split_for_parts();
    openapi.merge(public_api);
    let openapi = std::sync::Arc::new(openapi);
    let model_endpoints = gateway.clone();
    let mut router = Router::new()
        .merge(management)
        .merge(public)
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .with_state(state);
    if let Some(access) = metrics {
        router = router.merge(metrics::routes(access));
    }
    let router = router
        .merge(keyward_gateway::routes(gateway))
        .merge(dashboard)
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with("/v1/") {
                return ApiError::not_found(format!(
                    "Unknown request URL: {}. Keyward's gateway serves {}; see /openapi.json for its management API.",
                    uri.path().chars().take(100).collect::<String>(),
                    keyward_gateway::SERVED_PATHS.join(", ")
                ));
            }
            ApiError::not_found(
                "Unknown request URL. See /openapi.json for the endpoints Keyward serves.",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ApiErrorKind::MethodNotAllowed,
                "This endpoint does not accept that HTTP method. See /openapi.json.",
            )
        });
    ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(CatchPanicLayer::custom(
            panicked as fn(Box<dyn Any + Send>) -> Response,
        ))
        .service(ModelEndpoints::new(model_endpoints, router))
}

fn panicked(_: Box<dyn Any + Send>) -> Response {
    ApiError::internal().into_response()
}
