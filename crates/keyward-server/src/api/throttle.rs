//! Per-address throttles for the unauthenticated endpoints: a client
//! address (an IPv6 address by its /64, see
//! [`keyward_core::net::throttle_block`]) may make so many requests a
//! minute, then gets 429 with `Retry-After`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use axum::response::{IntoResponse, Response};
use keyward_core::gcra::Quota;
use keyward_core::net::throttle_block;
use keyward_gateway::limits::{format_reset, Dimension, Limiter, LocalLimiter, Subject};

use super::error::{ApiError, ApiErrorKind};

/// One endpoint's budget per client address.
pub struct PerAddress {
    limiter: LocalLimiter,
    per_minute: u64,
    /// What is counted, for the refusal: "reports", "requests".
    what: &'static str,
}

impl PerAddress {
    pub fn new(per_minute: u64, what: &'static str) -> Self {
        PerAddress {
            limiter: LocalLimiter::default(),
            per_minute: per_minute.max(1),
            what,
        }
    }

    /// Counts one request from `ip`; `Some(429 response)` when its address
    /// has used up its minute.
    pub fn check(&self, ip: Option<IpAddr>) -> Option<Response> {
        let block = throttle_block(ip?);
        let quota = Quota::per_minute_bursty(self.per_minute);
        let d = self
            .limiter
            .take(&Subject::Ip(block), Dimension::Requests, quota, 1);
        if d.allowed {
            return None;
        }
        let mut response = ApiError::new(
            ApiErrorKind::RequestRateLimit,
            format!(
                "Too many {} from your address. Please try again in {}.",
                self.what,
                format_reset(d.retry_after_nanos)
            ),
        )
        .into_response();
        let secs = (d.retry_after_nanos as f64 / 1e9).ceil().max(1.0) as u64;
        response.headers_mut().insert("retry-after", secs.into());
        Some(response)
    }
}

/// The client's address, as the connection (or a trusted proxy in front of
/// it) gives it.
pub fn client_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}
