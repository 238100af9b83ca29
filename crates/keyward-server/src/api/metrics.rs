//! `/metrics` in Prometheus's text format, and who may read it.
//!
//! - `metrics.bearer_token_env` set: whoever sends that token
//!   (`Authorization: Bearer …`), and no one else;
//! - otherwise, on Keyward's own address: only this machine (the client's
//!   address, after `trusted_proxies`, is a loopback one), so a server on
//!   the open internet does not publish its traffic;
//! - `metrics.listen` set: served there (with the token rule) and no longer
//!   on Keyward's own address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiErrorKind};

/// `[metrics]`: where `/metrics` is served and who may read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A separate address for `/metrics` (e.g. `127.0.0.1:9464`); then it
    /// is not served on `listen`.
    pub listen: Option<SocketAddr>,
    /// The environment variable holding a token scrapers must send as
    /// `Authorization: Bearer <token>`.
    pub bearer_token_env: Option<String>,
}

/// Who may read the metrics, and the metrics.
#[derive(Clone)]
pub struct MetricsAccess {
    handle: PrometheusHandle,
    token: Option<Arc<str>>,
    /// Without a token: only loopback clients.
    loopback_only: bool,
}

impl MetricsAccess {
    /// Reads the token from its variable: a variable named but unset or
    /// empty is an error, not an open door.
    pub fn new(
        handle: PrometheusHandle,
        config: &MetricsConfig,
        separate: bool,
    ) -> Result<Self, String> {
        let token = match &config.bearer_token_env {
            Some(var) => match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Some(Arc::from(t.trim())),
                _ => {
                    return Err(format!(
                        "metrics.bearer_token_env names {var}, which is not set (or empty); set it to the token scrapers send"
                    ))
                }
            },
            None => None,
        };
        Ok(MetricsAccess {
            handle,
            token,
            loopback_only: !separate,
        })
    }

    /// The answer refusing `client`, if it may not read the metrics.
    fn refusal(&self, client: IpAddr, headers: &HeaderMap) -> Option<Response> {
        if let Some(token) = &self.token {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
                return None;
            }
            // A 401: the answer carries `WWW-Authenticate: Bearer`.
            return Some(ApiError::new(
                ApiErrorKind::InvalidMetricsToken,
                "Reading /metrics takes the token named by metrics.bearer_token_env, as `Authorization: Bearer <token>`.",
            )
            .into_response());
        }
        if self.loopback_only && !client.is_loopback() {
            return Some(ApiError::new(
                ApiErrorKind::MetricsForbidden,
                "/metrics is served only to this machine. To scrape it from elsewhere, set metrics.bearer_token_env (a token) or metrics.listen (a private address).",
            )
            .into_response());
        }
        None
    }
}

async fn render(
    State(access): State<MetricsAccess>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match access.refusal(client.ip(), &headers) {
        None => access.handle.render().into_response(),
        Some(refused) => refused,
    }
}

/// The `/metrics` route, for Keyward's own router or a separate listener.
pub fn routes<S>(access: MetricsAccess) -> Router<S> {
    Router::new()
        .route("/metrics", get(render))
        .with_state(access)
}
