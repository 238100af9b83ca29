//! Sign up, log in, log out.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_service::{Caller, NewAccount, Principal, ServiceError, SessionToken, SESSION_SECONDS};
use keyward_store::User;
use serde::Deserialize;
use serde_json::json;

use crate::cookies::{self, SESSION};
use crate::error::{user_message, DashError};
use crate::render;
use crate::visitor::{source_ip, Visitor};
use crate::Dash;

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `/`: the dashboard for the signed-in, the log-in page for everyone else.
pub async fn landing(visitor: Visitor) -> Redirect {
    if visitor.caller.is_some() {
        Redirect::to("/api-keys")
    } else {
        Redirect::to("/login")
    }
}

fn auth_page(
    mode: &str,
    visitor: &Visitor,
    email: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let title = if mode == "signup" {
        "Create your account"
    } else {
        "Log in"
    };
    (
        status,
        render::html(
            "auth.html",
            json!({
                "mode": mode,
                "title": title,
                "csrf": visitor.csrf,
                "email": email,
                "error": error,
            }),
        ),
    )
        .into_response()
}

pub async fn signup_page(visitor: Visitor) -> Response {
    if visitor.caller.is_some() {
        return Redirect::to("/api-keys").into_response();
    }
    auth_page("signup", &visitor, "", None, StatusCode::OK)
}

pub async fn login_page(visitor: Visitor) -> Response {
    if visitor.caller.is_some() {
        return Redirect::to("/api-keys").into_response();
    }
    auth_page("login", &visitor, "", None, StatusCode::OK)
}

/// Answers a successful sign-up or log-in: the session cookie, then the
/// API keys page.
fn signed_in(dash: &Dash, token: SessionToken) -> Response {
    let cookie = cookies::set(
        SESSION,
        token.expose(),
        Some(SESSION_SECONDS),
        dash.settings.secure_cookies,
    );
    let mut headers = HeaderMap::new();
    if let Ok(v) = cookie.parse() {
        headers.insert(header::SET_COOKIE, v);
    }
    (headers, Redirect::to("/api-keys")).into_response()
}

pub async fn signup(
    State(dash): State<Dash>,
    visitor: Visitor,
    req_ip: RequestIp,
    Form(form): Form<Credentials>,
) -> Response {
    let ip = req_ip.0;
    if let Err(message) = dash.throttle.check(&form.email, ip.as_deref()) {
        return auth_page(
            "signup",
            &visitor,
            &form.email,
            Some(message),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    // Every sign-up costs a password hash: count it against the address.
    dash.throttle.failed(None, ip.as_deref());
    let system = Caller {
        principal: Principal::System,
        source_ip: ip.clone(),
    };
    let created = dash
        .services
        .create_account(
            &system,
            NewAccount {
                email: &form.email,
                password: &form.password,
                role: None,
            },
        )
        .await;
    match created {
        Ok((user, _)) => start(&dash, &user, ip).await,
        Err(e) => auth_page(
            "signup",
            &visitor,
            &form.email,
            Some(user_message(&e)),
            StatusCode::BAD_REQUEST,
        ),
    }
}

pub async fn login(
    State(dash): State<Dash>,
    visitor: Visitor,
    req_ip: RequestIp,
    Form(form): Form<Credentials>,
) -> Response {
    let ip = req_ip.0;
    if let Err(message) = dash.throttle.check(&form.email, ip.as_deref()) {
        return auth_page(
            "login",
            &visitor,
            &form.email,
            Some(message),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    if form.email.trim().is_empty() || form.password.is_empty() {
        return auth_page(
            "login",
            &visitor,
            &form.email,
            Some("Enter your email and password.".into()),
            StatusCode::BAD_REQUEST,
        );
    }
    match dash
        .services
        .verify_password(&form.email, &form.password)
        .await
    {
        Ok(user) => {
            dash.throttle.succeeded(&form.email);
            start(&dash, &user, ip).await
        }
        Err(ServiceError::Invalid { message, .. }) => {
            dash.throttle.failed(Some(&form.email), ip.as_deref());
            auth_page(
                "login",
                &visitor,
                &form.email,
                Some(message),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(e) => auth_page(
            "login",
            &visitor,
            &form.email,
            Some(user_message(&e)),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

async fn start(dash: &Dash, user: &User, ip: Option<String>) -> Response {
    match dash.services.start_session(user, ip).await {
        Ok(token) => signed_in(dash, token),
        Err(e) => DashError::from(e).into_response(),
    }
}

/// Ends the session on the server and clears the cookie.
pub async fn logout(State(dash): State<Dash>, visitor: Visitor) -> Response {
    if let Some(token) = &visitor.session_token {
        if let Err(e) = dash.services.end_session(token).await {
            return DashError::from(e).into_response();
        }
    }
    let cookie = cookies::set(SESSION, "", Some(0), dash.settings.secure_cookies);
    let mut headers = HeaderMap::new();
    if let Ok(v) = cookie.parse() {
        headers.insert(header::SET_COOKIE, v);
    }
    (headers, Redirect::to("/login")).into_response()
}

/// The client's address as an extractor.
pub struct RequestIp(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestIp(source_ip(&parts.extensions)))
    }
}
