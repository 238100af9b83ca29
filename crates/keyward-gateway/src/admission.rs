//! What is checked after validation and before the upstream is called, for
//! the key and then for its whole project: concurrent requests, requests
//! and tokens per minute, the monthly budget. Each grant is settled when
//! the request ends; a refusal gives back what was already taken.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_core::gcra::{Decision, Quota};
use keyward_core::Micros;
use keyward_core::RateLimits;
use keyward_service::ActiveKey;
use smallvec::SmallVec;

use crate::budget::Reservation;
use crate::catalog::Route;
use crate::error::ApiError;
use crate::header_text::HeaderText;
use crate::limits::{format_reset, write_reset, Dimension, InFlight, Subject};
use crate::request::Head;
use crate::Gateway;

/// One party whose limits apply: the key, a key above it (delegation), or
/// its project.
struct Scope {
    who: Subject,
    limits: RateLimits,
    budget: Option<Micros>,
    /// How a refusal names it: `this key` / `the key that made this one` /
    /// `this project`.
    noun: &'static str,
}

/// Grants held by a request in flight: one of each kind at most for the
/// key and for its project, so they are kept inline.
#[derive(Default)]
pub struct Admission {
    in_flight: SmallVec<[InFlight; 2]>,
    requests: SmallVec<[(Subject, Quota); 2]>,
    /// Tokens-per-minute quotas and the tokens taken from each up front.
    tokens: SmallVec<[(Subject, Quota, u64); 2]>,
    reservations: SmallVec<[Box<dyn Reservation>; 2]>,
    /// For the `x-ratelimit-*` headers: the tightest limit of each kind.
    pub tightest: Tightest,
}

/// The tightest requests limit and tokens limit a request met, and where
/// it left them.
pub type Tightest = [Option<(Quota, Decision)>; 2];

/// Whether admitting a request of `key` needs its prompt's tokens: only a
/// tokens-per-minute limit or a budget (of the key or its project) does.
/// Other requests skip the tokenizer; their ledger rows carry the
/// upstream's count.
pub fn needs_prompt_tokens(key: &ActiveKey) -> bool {
    let needs = |limits: &RateLimits, budget: Option<Micros>| {
        limits.tokens_per_minute.is_some() || budget.is_some()
    };
    key.lineage()
        .any(|k| needs(&k.rate_limits, k.monthly_budget))
        || key
            .project
            .as_ref()
            .is_some_and(|p| needs(&p.rate_limits, p.monthly_budget))
}

fn scopes(key: &ActiveKey) -> impl Iterator<Item = Scope> + '_ {
    let keys = key.lineage().enumerate().map(|(i, k)| Scope {
        who: Subject::Key(k.id.clone()),
        limits: k.rate_limits,
        budget: k.monthly_budget,
        noun: if i == 0 {
            "this key"
        } else {
            "a key this key was made under"
        },
    });
    let project = key.project.as_ref().map(|p| Scope {
        who: Subject::Project(p.id.clone()),
        limits: p.rate_limits,
        budget: p.monthly_budget,
        noun: "this project",
    });
    keys.chain(project)
}

pub async fn admit(
    gw: &Gateway,
    key: &ActiveKey,
    route: &Route,
    head: &Head,
    body_len: usize,
) -> Result<Admission, Response> {
    let project = key
        .key
        .project_id
        .as_ref()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let prompt = head.prompt_estimate(body_len);
    // Saturating: a request's numbers are range-checked, but n × a large
    // limit must price as "everything", never wrap to little.
    let asked_output = head.max_tokens.map_or(0, |_| head.output_allowance(0));
    let wanted_tokens = prompt.saturating_add(asked_output);
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let worst_cost = route.price.cost(
        to_i64(prompt),
        to_i64(head.output_allowance(route.max_output_tokens)),
    );
    let mut admission = Admission::default();
    let mut tightest: Tightest = [None, None];
    let refusal = |admission: &mut Admission, response: Response| {
        admission.refund(gw);
        response
    };
    let subject_label = |s: &Scope| match &s.who {
        Subject::Key(k) => format!("in project {project} for key {k}"),
        Subject::Project(_) | Subject::Ip(_) => format!("in project {project}"),
    };
    for scope in scopes(key) {
        if let Some(max) = scope.limits.max_concurrent_requests {
            match gw.limiter.enter(&scope.who, max as u64) {
                Some(slot) => admission.in_flight.push(slot),
                None => {
                    let message = format!(
                        "Rate limit reached for {} {} on concurrent requests: Limit {max}. Wait for a request to finish, then try again.",
                        route.id,
                        subject_label(&scope)
                    );
                    return Err(refusal(
                        &mut admission,
                        too_many(message, "requests", 1, &[None, None]),
                    ));
                }
            }
        }
        for (dim, limit, n) in [
            (Dimension::Requests, scope.limits.requests_per_minute, 1),
            (
                Dimension::Tokens,
                scope.limits.tokens_per_minute,
                wanted_tokens,
            ),
        ] {
            let Some(limit) = limit else { continue };
            let (quota, slot, per, kind) = match dim {
                Dimension::Requests => (
                    Quota::per_minute_smooth(limit as u64),
                    0,
                    "requests per min (RPM)",
                    "requests",
                ),
                Dimension::Tokens => (
                    Quota::per_minute_bursty(limit as u64),
                    1,
                    "tokens per min (TPM)",
                    "tokens",
                ),
            };
            let d = gw.limiter.take(&scope.who, dim, quota, n);
            if tightest[slot].is_none_or(|(_, t)| d.remaining < t.remaining || !d.allowed) {
                tightest[slot] = Some((quota, d));
            }
            if !d.allowed {
                let message = format!(
                    "Rate limit reached for {} {} on {per}: Limit {}, Used {}, Requested {n}. Please try again in {}.",
                    route.id,
                    subject_label(&scope),
                    quota.limit,
                    quota.limit.saturating_sub(d.remaining),
                    format_reset(d.retry_after_nanos)
                );
                let retry = (d.retry_after_nanos as f64 / 1e9).ceil().max(1.0) as u64;
                return Err(refusal(
                    &mut admission,
                    too_many(message, kind, retry, &tightest),
                ));
            }
            match dim {
                Dimension::Requests => admission.requests.push((scope.who.clone(), quota)),
                Dimension::Tokens => admission.tokens.push((scope.who.clone(), quota, n)),
            }
        }
        if let Some(budget) = scope.budget {
            match gw.budgets.reserve(&scope.who, budget, worst_cost).await {
                Ok(Ok(r)) => admission.reservations.push(r),
                Ok(Err(over)) => {
                    crate::telemetry::request_refused("budget");
                    let mut response = ApiError {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        kind: "insufficient_quota",
                        message: format!(
                            "You exceeded your current quota: {} has spent {} of its {} monthly budget. Ask the owner to raise the budget on the Limits page, or wait for next month.",
                            scope.noun,
                            over.spent.format_usd(),
                            over.budget.format_usd()
                        ),
                        param: None,
                        code: Some("insufficient_quota"),
                    }
                    .into_response();
                    rate_headers(&tightest, response.headers_mut());
                    return Err(refusal(&mut admission, response));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read spend for a budget check");
                    let mut response = ApiError::unavailable(
                        "Keyward cannot read this month's spend to check the budget (its database is unavailable). Retry in a few seconds; if it persists, tell the operator.",
                    )
                    .into_response();
                    response
                        .headers_mut()
                        .insert("retry-after", HeaderValue::from_static("5"));
                    return Err(refusal(&mut admission, response));
                }
            }
        }
    }
    admission.tightest = tightest;
    Ok(admission)
}

impl Admission {
    /// Settles the grants with what the call really used and cost.
    pub fn settle(&mut self, gw: &Gateway, used_tokens: i64, cost: Micros) {
        for (who, quota, taken) in self.tokens.drain(..) {
            gw.limiter
                .adjust(&who, Dimension::Tokens, quota, used_tokens - taken as i64);
        }
        self.requests.clear();
        for r in &mut self.reservations {
            r.settle(cost);
        }
    }

    /// Gives back what a refused request took.
    fn refund(&mut self, gw: &Gateway) {
        for (who, quota) in self.requests.drain(..) {
            gw.limiter.adjust(&who, Dimension::Requests, quota, -1);
        }
        for (who, quota, n) in self.tokens.drain(..) {
            gw.limiter
                .adjust(&who, Dimension::Tokens, quota, -(n as i64));
        }
        self.reservations.clear();
        self.in_flight.clear();
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, checked once,
/// at compile time, instead of on every response.
static RATE_HEADERS: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

/// Writes the `x-ratelimit-*` values of `tightest` to `text`.
pub fn put_rate_headers(tightest: &Tightest, text: &mut HeaderText) {
    for ([limit, remaining, reset], entry) in RATE_HEADERS.iter().zip(tightest) {
        let Some((quota, d)) = entry else { continue };
        text.number(limit, quota.limit);
        text.number(remaining, d.remaining);
        text.put(reset, |t| write_reset(d.reset_nanos, t));
    }
}

fn rate_headers(tightest: &Tightest, headers: &mut HeaderMap) {
    let mut text = HeaderText::new();
    put_rate_headers(tightest, &mut text);
    text.write_to(headers);
}

fn too_many(
    message: String,
    kind: &'static str,
    retry_after_secs: u64,
    tightest: &Tightest,
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
    rate_headers(tightest, h);
    h.insert("retry-after", HeaderValue::from(retry_after_secs));
    response
}
