//! Keyward's dashboard: the pages people use to sign up, create and revoke
//! secret keys, watch usage and spend, set limits and manage projects.
//!
//! Pages are rendered on the server (minijinja templates compiled into the
//! binary); the stylesheet, a small script and the vendored chart library
//! are embedded too, so nothing is fetched from elsewhere at run time.
//! Every page calls the same [`Services`] functions as the management API
//! and the CLI, as a [`keyward_service::Caller`] built from the session.

mod assets;
mod cookies;
mod dates;
mod error;
mod forms;
mod numbers;
mod pages;
mod render;
mod throttle;
mod visitor;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::{middleware, Router};
use keyward_service::Services;
use tower_http::set_header::SetResponseHeaderLayer;

/// Dashboard settings the server passes in.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Mark cookies `Secure` (only sent over HTTPS). Turn on when Keyward is
    /// served over TLS, directly or behind a proxy.
    pub secure_cookies: bool,
}

/// What every dashboard handler can reach.
#[derive(Clone)]
pub(crate) struct Dash {
    pub services: Services,
    pub settings: Arc<Settings>,
    pub throttle: Arc<throttle::LoginThrottle>,
}

/// The dashboard's routes, to merge into the server's router.
pub fn router(services: Services, settings: Settings) -> Router {
    let state = Dash {
        services,
        settings: Arc::new(settings),
        throttle: Arc::new(throttle::LoginThrottle::default()),
    };
    let pages = Router::new()
        .route("/", get(pages::auth::landing))
        .route(
            "/signup",
            get(pages::auth::signup_page).post(pages::auth::signup),
        )
        .route(
            "/login",
            get(pages::auth::login_page).post(pages::auth::login),
        )
        .route("/logout", post(pages::auth::logout))
        .route("/api-keys", get(pages::keys::page))
        .route("/api-keys/create", post(pages::keys::create))
        .route("/api-keys/{key_id}/revoke", post(pages::keys::revoke))
        .route("/api-keys/{key_id}/rotate", post(pages::keys::rotate))
        .route("/api-keys/{key_id}/edit", post(pages::keys::edit))
        .route("/usage", get(pages::usage::page))
        .route("/usage.csv", get(pages::usage::csv))
        .route(
            "/limits",
            get(pages::limits::page).post(pages::limits::save),
        )
        .route(
            "/projects",
            get(pages::projects::page).post(pages::projects::create),
        )
        .route(
            "/projects/{project_id}/members",
            post(pages::projects::set_member),
        )
        .route(
            "/projects/{project_id}/members/{user_id}/remove",
            post(pages::projects::remove_member),
        )
        .route("/notifications", get(pages::notifications::page))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            visitor::identify,
        ))
        // Pages carry CSRF tokens and account data: never cache them.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state);
    Router::new()
        .merge(pages)
        .route("/static/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}
