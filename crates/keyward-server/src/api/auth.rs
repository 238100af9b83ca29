//! The management API's auth layer: resolves `Authorization: Bearer <key>`
//! to a [`Caller`] placed in the request's extensions, or answers 401.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyward_service::{Caller, Principal, ServiceError};

use super::error::ApiError;
use super::AppState;

pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = match bearer(&req) {
        Some(k) => k.to_owned(),
        None => return ApiError::missing_key().into_response(),
    };
    let principal = match state.services.authenticate(&presented).await {
        Ok(p) => p,
        Err(ServiceError::Unauthenticated(_)) => {
            return ApiError::bad_key(&presented).into_response()
        }
        Err(other) => return ApiError::from(other).into_response(),
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // A key's IP allow-list holds on every route that takes it, not only
    // on the model endpoints.
    if let Principal::ProjectKey(key) = &principal {
        if !key.ip_allowed(ip) {
            return ApiError::ip_not_allowed().into_response();
        }
    }
    req.extensions_mut().insert(Caller {
        principal,
        source_ip: ip.map(|ip| ip.to_string()),
    });
    next.run(req).await
}

/// The token of a `Bearer` Authorization header, if there is a non-empty one.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
