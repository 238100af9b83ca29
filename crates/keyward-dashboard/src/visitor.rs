//! Who is at the browser: the tower layer that resolves the session cookie
//! to a [`Caller`], derives the page's CSRF token, and rejects state-changing
//! requests that do not carry it.
//!
//! Before any of that, [`require_site`] refuses requests for a host that is
//! not the dashboard's ([`Site`]).
//!
//! The CSRF token is a hash of a secret only this browser holds in an
//! HttpOnly cookie: the session token once logged in, a random pre-session
//! value before. Another site can neither read that cookie nor compute the
//! token, so a form it posts cannot carry it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use keyward_core::{base62, KeyHash};
use keyward_service::Caller;
use subtle::ConstantTimeEq;

use crate::cookies;
use crate::error::DashError;
use crate::site::Site;
use crate::{Dash, Settings};

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// The largest form the dashboard reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The browser making this request.
#[derive(Clone)]
pub struct Visitor {
    /// The signed-in account, if any.
    pub caller: Option<Caller>,
    /// The token every form on the page must send back.
    pub csrf: String,
    /// The session token, for log-out.
    pub session_token: Option<String>,
}

/// A handler argument that requires a signed-in account; anyone else is
/// sent to the log-in page.
pub struct SignedIn {
    pub caller: Caller,
    pub csrf: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Visitor>() {
            Some(Visitor {
                caller: Some(caller),
                csrf,
                ..
            }) => Ok(SignedIn {
                caller: caller.clone(),
                csrf: csrf.clone(),
            }),
            _ => Err(Redirect::to("/login")),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visitor>()
            .cloned()
            .ok_or_else(|| DashError::Internal("the visitor layer is missing".into()))
    }
}

/// The address the request came from, for the audit log and throttling.
pub fn source_ip(extensions: &axum::http::Extensions) -> Option<String> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

fn csrf_token(secret: &str) -> String {
    KeyHash::of(&format!("keyward-csrf:{secret}")).to_hex()
}

/// The host a request was made to: its `Host` header, or the authority
/// of its URI (HTTP/2).
pub fn request_host(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// Refuses a request whose host is not the dashboard's: 400 without a
/// host, 421 (Misdirected Request) for another one.
pub async fn require_site(settings: Arc<Settings>, req: Request, next: Next) -> Response {
    let site = &settings.site;
    match request_host(&req) {
        Some(host) if site.allows_host(host) => next.run(req).await,
        Some(_) => DashError::WrongHost(site.wrong_host_message()).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            "The request names no host (no Host header).",
        )
            .into_response(),
    }
}

pub async fn identify(State(dash): State<Dash>, req: Request, next: Next) -> Response {
    let jar = dash.cookies;
    let ip = source_ip(req.extensions());
    let mut set_cookies = Vec::new();
    let mut caller = None;
    let mut session_token = None;
    if let Some(token) = cookies::get(req.headers(), jar.session()) {
        match dash.services.session_caller(token, ip).await {
            Ok(Some(c)) => {
                caller = Some(c);
                session_token = Some(token.to_owned());
            }
            Ok(None) => set_cookies.push(jar.set(jar.session(), "", Some(0))),
            Err(e) => return DashError::from(e).into_response(),
        }
    }
    let secret = match (
        &session_token,
        cookies::get(req.headers(), jar.pre_session()),
    ) {
        (Some(token), _) => token.clone(),
        (None, Some(pre)) => pre.to_owned(),
        (None, None) => {
            let mut random = [0u8; 32];
            base62::fill_random(&mut random);
            let pre: String = random.iter().map(|&b| char::from(b)).collect();
            set_cookies.push(jar.set(jar.pre_session(), &pre, None));
            pre
        }
    };
    let csrf = csrf_token(&secret);
    let mut req = if is_state_changing(req.method()) {
        match check_csrf(req, &csrf, &dash.settings.site).await {
            Ok(req) => req,
            Err(rejection) => return rejection,
        }
    } else {
        req
    };
    req.extensions_mut().insert(Visitor {
        caller,
        csrf,
        session_token,
    });
    let mut resp = next.run(req).await;
    for c in set_cookies {
        if let Ok(v) = c.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn is_state_changing(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reads the form, checks its token and origin, and hands the request on
/// with its body intact.
async fn check_csrf(req: Request, expected: &str, site: &Site) -> Result<Request, Response> {
    let forbidden = || {
        DashError::Forbidden(
            "This form has expired or did not come from this Keyward site. Reload the page and try again."
                .into(),
        )
        .into_response()
    };
    if !same_origin(req.headers(), site) {
        return Err(forbidden());
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large to accept.",
            )
                .into_response())
        }
    };
    let fields: Vec<(String, String)> = serde_html_form::from_bytes(&bytes).unwrap_or_default();
    let sent = fields
        .iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(forbidden());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Browsers say where a form was posted from; refuse another site's. The
/// origin is compared with the dashboard's own ([`Site`]), never with the
/// request's `Host`, which a rebound name controls.
fn same_origin(headers: &HeaderMap, site: &Site) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site")
    {
        return false;
    }
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => true,
        Some(Ok(origin)) => site.allows_origin(origin),
        Some(Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_must_be_the_site_not_the_host_header() {
        let site = Site::default();
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, &site));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h, &site));
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h, &site));
        // A rebound name matches its own Host, and is still refused.
        h.insert("host", HeaderValue::from_static("evil.example:8080"));
        h.insert(
            "origin",
            HeaderValue::from_static("http://evil.example:8080"),
        );
        assert!(!same_origin(&h, &site));
        h.remove("origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, &site));
    }

    #[test]
    fn csrf_depends_on_the_secret() {
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a").len(), 64);
    }
}
