//! Keyward's dashboard: the pages people use to sign up, create and revoke
//! secret keys, watch usage and spend, set limits and manage projects.
//!
//! Pages are rendered on the server (minijinja templates compiled into the
//! binary); the stylesheet, a small script and the vendored chart library
//! are embedded too, so nothing is fetched from elsewhere at run time.
//! Every page calls the same [`Services`] functions as the management API
//! and the CLI, as a [`keyward_service::Caller`] built from the session.

#![forbid(unsafe_code)]

mod assets;
mod cookies;
mod dates;
mod error;
mod forms;
mod numbers;
mod pages;
mod render;
mod site;
mod throttle;
mod visitor;

pub use error::status_of;
pub use site::Site;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::{middleware, Router};
use keyward_service::Services;
use tower_http::set_header::SetResponseHeaderLayer;

/// Sends email for the dashboard (invitation links), in the background;
/// the server's SMTP notifier when `[smtp]` is set.
pub trait Mailer: Send + Sync {
    fn send(&self, to: &str, subject: &str, body: String);
}

/// Dashboard settings the server passes in.
#[derive(Clone, Default)]
pub struct Settings {
    /// The hosts and origin the dashboard answers to (`public_url`).
    pub site: Site,
    /// Mark cookies `Secure` with the `__Host-` prefix (only sent over
    /// HTTPS) whatever `public_url` says; `None`: when it is https.
    pub secure_cookies: Option<bool>,
    /// Mails invitation links when set.
    pub mailer: Option<Arc<dyn Mailer>>,
}

/// What every dashboard handler can reach.
#[derive(Clone)]
pub(crate) struct Dash {
    pub services: Services,
    pub settings: Arc<Settings>,
    pub cookies: cookies::Cookies,
    pub throttle: Arc<throttle::LoginThrottle>,
}

/// The dashboard's routes, to merge into the server's router.
pub fn router(services: Services, settings: Settings) -> Router {
    let secure = settings.secure_cookies.unwrap_or(settings.site.https());
    let state = Dash {
        services,
        cookies: cookies::Cookies::new(secure),
        settings: Arc::new(settings),
        throttle: Arc::new(throttle::LoginThrottle::default()),
    };
    let site = state.settings.clone();
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
        .route(
            "/invite",
            get(pages::invitations::page).post(pages::invitations::sign_up),
        )
        .route("/invite/accept", post(pages::invitations::accept))
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
            "/projects/{project_id}/invitations",
            post(pages::projects::invite),
        )
        .route(
            "/projects/{project_id}/invitations/{invitation_id}/cancel",
            post(pages::projects::cancel_invitation),
        )
        .route(
            "/projects/{project_id}/members/{user_id}/role",
            post(pages::projects::set_role),
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
        // A request for another host (DNS rebinding) reaches no page.
        .layer(middleware::from_fn(move |req, next| {
            visitor::require_site(site.clone(), req, next)
        }))
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
