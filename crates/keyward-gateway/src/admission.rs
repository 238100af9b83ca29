//! What is checked after validation and before the upstream is called, for
//! the key and then for its whole project: concurrent requests, requests
//! and tokens per minute, the monthly budget. Each grant is settled when
//! the request ends; a refusal gives back what was already taken.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use keyward_core::gcra::{Decision, Quota};
use keyward_core::Measure;
use keyward_core::Micros;
use keyward_core::RateLimits;
use keyward_service::ActiveKey;
use smallvec::SmallVec;

use crate::budget::Reservation;
use crate::catalog::Route;
use crate::error::{ApiError, ApiErrorKind};
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Tightest {
    requests: Option<Met>,
    tokens: Option<Met>,
}

/// A per-minute limit and the decision it gave.
#[derive(Debug, Clone, Copy)]
struct Met {
    quota: Quota,
    decision: Decision,
}

impl Tightest {
    /// Keeps `met` for `dim` when it leaves less room than the one kept,
    /// or refused.
    fn note(&mut self, dim: Dimension, met: Met) {
        let kept = match dim {
            Dimension::Requests => &mut self.requests,
            Dimension::Tokens => &mut self.tokens,
        };
        let d = met.decision;
        if kept.is_none_or(|k| d.remaining < k.decision.remaining || !d.allowed) {
            *kept = Some(met);
        }
    }
}

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

/// What a request asks of every scope, worked out once.
struct Ask<'a> {
    route: &'a Route,
    /// The key's project, as refusals name it.
    project: &'a str,
    /// Prompt tokens plus the output asked for, for tokens-per-minute limits.
    tokens: u64,
    /// The most the call can cost, for budgets.
    worst_cost: Micros,
}

impl<'a> Ask<'a> {
    fn new(key: &'a ActiveKey, route: &'a Route, head: &Head, body_len: usize) -> Self {
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
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ask {
            route,
            project,
            tokens: prompt.saturating_add(asked_output),
            // Tokens, and the images, characters, audio or requests asked for.
            worst_cost: route.price.charge(&Measure {
                prompt_tokens: to_i64(prompt),
                completion_tokens: to_i64(head.output_allowance(route.max_output_tokens)),
                ..head.units
            }),
        }
    }

    /// `<model> in project <p> [for key <k>]`, as a rate-limit refusal
    /// names what was limited.
    fn limited(&self, scope: &Scope) -> String {
        let (model, project) = (&self.route.id, self.project);
        match &scope.who {
            Subject::Key(k) => format!("{model} in project {project} for key {k}"),
            Subject::Project(_) | Subject::Ip(_) => format!("{model} in project {project}"),
        }
    }
}

/// A refusal's answer, boxed: refusals are rare, and a bare `Response`
/// would make every check's result large.
type Refusal = Box<Response>;

/// Admits a request of `key` to `route`: every scope's checks, the key's
/// first, then the keys above it, then its project's. A refusal gives back
/// what the scopes before it granted.
pub async fn admit(
    gw: &Gateway,
    key: &ActiveKey,
    route: &Route,
    head: &Head,
    body_len: usize,
) -> Result<Admission, Response> {
    let ask = Ask::new(key, route, head, body_len);
    let mut admission = Admission::default();
    for scope in scopes(key) {
        if let Err(refusal) = admission.check(gw, &scope, &ask).await {
            admission.refund(gw);
            return Err(*refusal);
        }
    }
    Ok(admission)
}

impl Admission {
    /// One scope's checks, in order: concurrent requests, requests per
    /// minute, tokens per minute, budget.
    async fn check(&mut self, gw: &Gateway, scope: &Scope, ask: &Ask<'_>) -> Result<(), Refusal> {
        if let Some(max) = scope.limits.max_concurrent_requests {
            self.enter(gw, scope, ask, max)?;
        }
        if let Some(limit) = scope.limits.requests_per_minute {
            let quota = Quota::per_minute_smooth(limit as u64);
            self.take(gw, scope, ask, Dimension::Requests, quota, 1)?;
        }
        if let Some(limit) = scope.limits.tokens_per_minute {
            let quota = Quota::per_minute_bursty(limit as u64);
            self.take(gw, scope, ask, Dimension::Tokens, quota, ask.tokens)?;
        }
        if let Some(budget) = scope.budget {
            self.reserve(gw, scope, budget, ask.worst_cost).await?;
        }
        Ok(())
    }

    /// A concurrent-request slot of at most `max`.
    fn enter(
        &mut self,
        gw: &Gateway,
        scope: &Scope,
        ask: &Ask<'_>,
        max: i64,
    ) -> Result<(), Refusal> {
        let Some(slot) = gw.limiter.enter(&scope.who, max as u64) else {
            let message = format!(
                "Rate limit reached for {} on concurrent requests: Limit {max}. Wait for a request to finish, then try again.",
                ask.limited(scope)
            );
            return Err(too_many(
                message,
                ApiErrorKind::RequestRateLimit,
                1,
                &Tightest::default(),
            )
            .into());
        };
        self.in_flight.push(slot);
        Ok(())
    }

    /// `n` units from the per-minute `quota` of `dim`.
    fn take(
        &mut self,
        gw: &Gateway,
        scope: &Scope,
        ask: &Ask<'_>,
        dim: Dimension,
        quota: Quota,
        n: u64,
    ) -> Result<(), Refusal> {
        let d = gw.limiter.take(&scope.who, dim, quota, n);
        self.tightest.note(dim, Met { quota, decision: d });
        if !d.allowed {
            let (per, kind) = match dim {
                Dimension::Requests => ("requests per min (RPM)", ApiErrorKind::RequestRateLimit),
                Dimension::Tokens => ("tokens per min (TPM)", ApiErrorKind::TokenRateLimit),
            };
            let message = format!(
                "Rate limit reached for {} on {per}: Limit {}, Used {}, Requested {n}. Please try again in {}.",
                ask.limited(scope),
                quota.limit,
                quota.limit.saturating_sub(d.remaining),
                format_reset(d.retry_after_nanos)
            );
            let retry = (d.retry_after_nanos as f64 / 1e9).ceil().max(1.0) as u64;
            return Err(too_many(message, kind, retry, &self.tightest).into());
        }
        match dim {
            Dimension::Requests => self.requests.push((scope.who.clone(), quota)),
            Dimension::Tokens => self.tokens.push((scope.who.clone(), quota, n)),
        }
        Ok(())
    }

    /// A reservation of `worst_cost` against the monthly `budget`.
    async fn reserve(
        &mut self,
        gw: &Gateway,
        scope: &Scope,
        budget: Micros,
        worst_cost: Micros,
    ) -> Result<(), Refusal> {
        match gw.budgets.reserve(&scope.who, budget, worst_cost).await {
            Ok(Ok(r)) => {
                self.reservations.push(r);
                Ok(())
            }
            Ok(Err(over)) => {
                let refusal = ApiError::new(
                    ApiErrorKind::InsufficientQuota,
                    format!(
                        "You exceeded your current quota: {} has spent {} of its {} monthly budget. Ask the owner to raise the budget on the Limits page, or wait for next month.",
                        scope.noun,
                        over.spent.format_usd(),
                        over.budget.format_usd()
                    ),
                );
                crate::telemetry::request_refused(refusal.kind().refusal_reason());
                let mut response = refusal.into_response();
                rate_headers(&self.tightest, response.headers_mut());
                Err(response.into())
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
                Err(response.into())
            }
        }
    }

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

/// The names of one kind's `x-ratelimit-*` headers.
struct RateHeaderNames {
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
}

/// `x-ratelimit-{limit,remaining,reset}-requests`, checked once, at
/// compile time, instead of on every response.
static REQUEST_HEADERS: RateHeaderNames = RateHeaderNames {
    limit: HeaderName::from_static("x-ratelimit-limit-requests"),
    remaining: HeaderName::from_static("x-ratelimit-remaining-requests"),
    reset: HeaderName::from_static("x-ratelimit-reset-requests"),
};

/// `x-ratelimit-{limit,remaining,reset}-tokens`.
static TOKEN_HEADERS: RateHeaderNames = RateHeaderNames {
    limit: HeaderName::from_static("x-ratelimit-limit-tokens"),
    remaining: HeaderName::from_static("x-ratelimit-remaining-tokens"),
    reset: HeaderName::from_static("x-ratelimit-reset-tokens"),
};

/// Writes the `x-ratelimit-*` values of `tightest` to `text`.
pub fn put_rate_headers(tightest: &Tightest, text: &mut HeaderText) {
    for (names, met) in [
        (&REQUEST_HEADERS, tightest.requests),
        (&TOKEN_HEADERS, tightest.tokens),
    ] {
        let Some(Met { quota, decision: d }) = met else {
            continue;
        };
        text.number(&names.limit, quota.limit);
        text.number(&names.remaining, d.remaining);
        text.put(&names.reset, |t| write_reset(d.reset_nanos, t));
    }
}

fn rate_headers(tightest: &Tightest, headers: &mut HeaderMap) {
    let mut text = HeaderText::new();
    put_rate_headers(tightest, &mut text);
    text.write_to(headers);
}

fn too_many(
    message: String,
    kind: ApiErrorKind,
    retry_after_secs: u64,
    tightest: &Tightest,
) -> Response {
    crate::telemetry::request_refused(kind.refusal_reason());
    let mut response = ApiError::new(kind, message).into_response();
    let h = response.headers_mut();
    rate_headers(tightest, h);
    h.insert("retry-after", HeaderValue::from(retry_after_secs));
    response
}
