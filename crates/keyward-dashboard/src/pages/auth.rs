//! Sign up, log in, log out.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_core::User;
use keyward_service::{Caller, Principal, ServiceError, SessionToken, SESSION_SECONDS};
use serde::Deserialize;
use serde_json::json;

use crate::error::{status_of, user_message, DashError};
use crate::render;
use crate::visitor::{source_ip, Visitor};
use crate::Dash;

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// Where to go after logging in (an invitation to accept).
    #[serde(default)]
    next: String,
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// `/`: the dashboard for the signed-in, the log-in page for everyone else.
pub async fn landing(visitor: Visitor) -> Redirect {
    if visitor.caller.is_some() {
        Redirect::to("/api-keys")
    } else {
        Redirect::to("/login")
    }
}

/// Only an invitation page may be where a log-in leads, so the log-in
/// form cannot be made to send people to another site.
fn safe_next(next: &str) -> Option<&str> {
    next.strip_prefix("/invite?token=")
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|_| next)
}

/// The sign-up or log-in page.
struct AuthPage<'a> {
    mode: &'a str,
    email: &'a str,
    error: Option<String>,
    status: StatusCode,
    /// Sign-up is closed: say so instead of showing the form.
    closed: bool,
    next: Option<&'a str>,
}

impl AuthPage<'_> {
    fn render(self, visitor: &Visitor) -> Response {
        let title = if self.mode == "signup" {
            "Create your account"
        } else {
            "Log in"
        };
        (
            self.status,
            render::html(
                "auth.html",
                json!({
                    "mode": self.mode,
                    "title": title,
                    "csrf": visitor.csrf,
                    "email": self.email,
                    "error": self.error,
                    "closed": self.closed,
                    "next": self.next,
                }),
            ),
        )
            .into_response()
    }
}

fn login_page_with<'a>(
    email: &'a str,
    next: Option<&'a str>,
    error: String,
    status: StatusCode,
) -> AuthPage<'a> {
    AuthPage {
        mode: "login",
        email,
        error: Some(error),
        status,
        closed: false,
        next,
    }
}

pub async fn signup_page(State(dash): State<Dash>, visitor: Visitor) -> Response {
    if visitor.caller.is_some() {
        return Redirect::to("/api-keys").into_response();
    }
    let open = match dash.services.signup_open().await {
        Ok(open) => open,
        Err(e) => return DashError::from(e).into_response(),
    };
    AuthPage {
        mode: "signup",
        email: "",
        error: None,
        status: StatusCode::OK,
        closed: !open,
        next: None,
    }
    .render(&visitor)
}

pub async fn login_page(visitor: Visitor, Query(q): Query<LoginQuery>) -> Response {
    if visitor.caller.is_some() {
        return Redirect::to(safe_next(&q.next).unwrap_or("/api-keys")).into_response();
    }
    AuthPage {
        mode: "login",
        email: "",
        error: None,
        status: StatusCode::OK,
        closed: false,
        next: safe_next(&q.next),
    }
    .render(&visitor)
}

/// Answers a successful sign-up or log-in: the session cookie, then `to`.
fn signed_in(dash: &Dash, token: SessionToken, to: &str) -> Response {
    let jar = dash.cookies;
    let cookie = jar.set(jar.session(), token.expose(), Some(SESSION_SECONDS));
    let mut headers = HeaderMap::new();
    if let Ok(v) = cookie.parse() {
        headers.insert(header::SET_COOKIE, v);
    }
    (headers, Redirect::to(to)).into_response()
}

pub async fn signup(
    State(dash): State<Dash>,
    visitor: Visitor,
    req_ip: RequestIp,
    Form(form): Form<Credentials>,
) -> Response {
    let ip = req_ip.0;
    let page = |error: String, status: StatusCode, closed: bool| AuthPage {
        mode: "signup",
        email: &form.email,
        error: Some(error),
        status,
        closed,
        next: None,
    };
    // Every sign-up costs a password hash: counted per network, apart
    // from log-ins, so sign-ups never lock anyone out of logging in.
    if let Err(message) = dash.throttle.begin_signup(ip.as_deref()) {
        return page(message, StatusCode::TOO_MANY_REQUESTS, false).render(&visitor);
    }
    let system = Caller {
        principal: Principal::System,
        source_ip: ip.clone(),
    };
    match dash
        .services
        .sign_up(&system, &form.email, &form.password)
        .await
    {
        Ok((user, _)) => start(&dash, &user, ip, "/api-keys").await,
        Err(e) => page(
            user_message(&e),
            status_of(&e),
            matches!(e, ServiceError::Refused(_)),
        )
        .render(&visitor),
    }
}

pub async fn login(
    State(dash): State<Dash>,
    visitor: Visitor,
    req_ip: RequestIp,
    Form(form): Form<Credentials>,
) -> Response {
    let ip = req_ip.0;
    let next = safe_next(&form.next);
    // Counted before the password is checked, so parallel guesses cannot
    // get past the limit.
    let attempt = match dash.throttle.begin_login(&form.email, ip.as_deref()) {
        Ok(attempt) => attempt,
        Err(message) => {
            return login_page_with(&form.email, next, message, StatusCode::TOO_MANY_REQUESTS)
                .render(&visitor)
        }
    };
    if form.email.trim().is_empty() || form.password.is_empty() {
        attempt.not_checked();
        return login_page_with(
            &form.email,
            next,
            "Enter your email and password.".into(),
            StatusCode::BAD_REQUEST,
        )
        .render(&visitor);
    }
    match dash
        .services
        .verify_password(&form.email, &form.password)
        .await
    {
        Ok(user) => {
            attempt.succeeded();
            start(&dash, &user, ip, next.unwrap_or("/api-keys")).await
        }
        // The attempt stays counted.
        Err(ServiceError::Invalid { message, .. }) => {
            login_page_with(&form.email, next, message, StatusCode::UNAUTHORIZED).render(&visitor)
        }
        Err(e) => {
            attempt.not_checked();
            login_page_with(
                &form.email,
                next,
                user_message(&e),
                StatusCode::INTERNAL_SERVER_ERROR,
            )
            .render(&visitor)
        }
    }
}

/// Starts a session for `user` and sends them to `to`.
pub(crate) async fn start(dash: &Dash, user: &User, ip: Option<String>, to: &str) -> Response {
    match dash.services.start_session(user, ip).await {
        Ok(token) => signed_in(dash, token, to),
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
    let jar = dash.cookies;
    let cookie = jar.set(jar.session(), "", Some(0));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_in_leads_only_to_an_invitation() {
        assert_eq!(
            safe_next("/invite?token=abc123"),
            Some("/invite?token=abc123")
        );
        for bad in [
            "",
            "/api-keys",
            "//evil.example",
            "https://evil.example",
            "/invite?token=a/b",
            "/invite?token=",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }
}
