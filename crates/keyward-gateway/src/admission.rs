//! What is checked after validation and before the upstream is called:
//! concurrency, requests and tokens per minute, the monthly budget. Each
//! grant is settled when the request ends.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::gcra::{Decision, Quota};
use keyward_core::Micros;
use keyward_service::ActiveKey;

use crate::budget::Reservation;
use crate::catalog::Route;
use crate::error::ApiError;
use crate::limits::{format_reset, Dimension, InFlight};
use crate::request::Head;
use crate::Gateway;

/// Grants held by a request in flight.
pub struct Admission {
    _in_flight: Option<InFlight>,
    /// The tokens-per-minute quota and the tokens taken from it up front.
    tokens: Option<(Quota, u64)>,
    reservation: Option<Reservation>,
    /// `x-ratelimit-*` headers for the response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A rough count of the prompt's tokens (about four bytes each) taken
/// before the call; the upstream's real count settles it afterwards.
pub fn estimate_prompt_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4)
}

pub async fn admit(
    gw: &Gateway,
    key: &ActiveKey,
    route: &Route,
    head: &Head,
    body_len: usize,
) -> Result<Admission, Response> {
    let k = &key.key;
    let limits = k.rate_limits;
    let project = k
        .project_id
        .as_ref()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let in_flight = match limits.max_concurrent_requests {
        Some(max) => Some(gw.limiter.enter(&k.id, max as u64).ok_or_else(|| {
            too_many(
                format!(
                    "Rate limit reached for {} in project {project} on concurrent requests: Limit {max}. Wait for a request to finish, then try again.",
                    route.id
                ),
                "requests",
                1,
                Vec::new(),
            )
        })?),
        None => None,
    };
    let mut headers = Vec::new();
    let mut requests = None;
    if let Some(rpm) = limits.requests_per_minute {
        let quota = Quota::per_minute_smooth(rpm as u64);
        let d = gw.limiter.take(&k.id, Dimension::Requests, quota, 1);
        push_headers(&mut headers, "requests", quota, &d);
        if !d.allowed {
            return Err(limited(
                route,
                project,
                "requests per min (RPM)",
                "requests",
                quota,
                &d,
                1,
                headers,
            ));
        }
        requests = Some(quota);
    }
    let prompt = estimate_prompt_tokens(body_len);
    let mut tokens = None;
    if let Some(tpm) = limits.tokens_per_minute {
        let quota = Quota::per_minute_bursty(tpm as u64);
        let wanted = prompt + head.max_tokens.unwrap_or(0);
        let d = gw.limiter.take(&k.id, Dimension::Tokens, quota, wanted);
        push_headers(&mut headers, "tokens", quota, &d);
        if !d.allowed {
            refund(gw, key, requests, None);
            return Err(limited(
                route,
                project,
                "tokens per min (TPM)",
                "tokens",
                quota,
                &d,
                wanted,
                headers,
            ));
        }
        tokens = Some((quota, wanted));
    }
    let mut reservation = None;
    if let Some(budget) = k.monthly_budget {
        let out = head.max_tokens.unwrap_or(route.max_output_tokens);
        let worst = route.price.cost(prompt as i64, out as i64);
        match gw.budgets.reserve(&k.id, budget, worst).await {
            Ok(Ok(r)) => reservation = Some(r),
            Ok(Err(over)) => {
                refund(gw, key, requests, tokens);
                crate::telemetry::request_refused("budget");
                let mut response = ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    kind: "insufficient_quota",
                    message: format!(
                        "You exceeded your current quota: this key has spent {} of its {} monthly budget. Ask the key's owner to raise the budget on the Limits page, or wait for next month.",
                        over.spent.format_usd(),
                        over.budget.format_usd()
                    ),
                    param: None,
                    code: Some("insufficient_quota"),
                }
                .into_response();
                response.headers_mut().extend(headers);
                return Err(response);
            }
            Err(e) => {
                refund(gw, key, requests, tokens);
                tracing::error!(error = %e, "cannot read spend for a budget check");
                return Err(ApiError::internal().into_response());
            }
        }
    }
    Ok(Admission {
        _in_flight: in_flight,
        tokens,
        reservation,
        headers,
    })
}

impl Admission {
    /// Settles the grants with what the call really used and cost.
    pub fn settle(&mut self, gw: &Gateway, key: &ActiveKey, used_tokens: i64, cost: Micros) {
        if let Some((quota, taken)) = self.tokens.take() {
            gw.limiter.adjust(
                &key.key.id,
                Dimension::Tokens,
                quota,
                used_tokens - taken as i64,
            );
        }
        if let Some(r) = self.reservation.as_mut() {
            r.settle(cost);
        }
    }
}

fn refund(gw: &Gateway, key: &ActiveKey, requests: Option<Quota>, tokens: Option<(Quota, u64)>) {
    if let Some(q) = requests {
        gw.limiter.adjust(&key.key.id, Dimension::Requests, q, -1);
    }
    if let Some((q, n)) = tokens {
        gw.limiter
            .adjust(&key.key.id, Dimension::Tokens, q, -(n as i64));
    }
}

fn push_headers(
    headers: &mut Vec<(HeaderName, HeaderValue)>,
    what: &str,
    quota: Quota,
    d: &Decision,
) {
    let name = |s: &str| HeaderName::from_bytes(format!("x-ratelimit-{s}-{what}").as_bytes()).ok();
    let values = [
        ("limit", quota.limit.to_string()),
        ("remaining", d.remaining.to_string()),
        ("reset", format_reset(d.reset_nanos)),
    ];
    for (n, v) in values {
        if let (Some(n), Ok(v)) = (name(n), HeaderValue::from_str(&v)) {
            headers.push((n, v));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn limited(
    route: &Route,
    project: &str,
    per: &str,
    kind: &'static str,
    quota: Quota,
    d: &Decision,
    requested: u64,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    let wait = d.retry_after_nanos as f64 / 1e9;
    let used = quota.limit.saturating_sub(d.remaining);
    too_many(
        format!(
            "Rate limit reached for {} in project {project} on {per}: Limit {}, Used {used}, Requested {requested}. Please try again in {}.",
            route.id,
            quota.limit,
            format_reset(d.retry_after_nanos)
        ),
        kind,
        wait.ceil().max(1.0) as u64,
        headers,
    )
}

fn too_many(
    message: String,
    kind: &'static str,
    retry_after_secs: u64,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    crate::telemetry::request_refused("rate_limit");
    let mut response = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        kind,
        message,
        param: None,
        code: Some("rate_limit_exceeded"),
    }
    .into_response();
    let h = response.headers_mut();
    h.extend(headers);
    h.insert("retry-after", HeaderValue::from(retry_after_secs));
    response
}
