//! Errors in OpenAI's shape: `{"error":{"message","type","param","code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_service::{AuthError, ServiceError};
use serde::Serialize;

/// What went wrong, as one name: it owns the HTTP status, OpenAI's `type`
/// and `code`, and the reason a refused model call is counted under. Every
/// error the management API and the gateway answer is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 400: the request is malformed or a value is out of range.
    InvalidRequest,
    /// 413: the body is larger than the limit.
    BodyTooLarge,
    /// 408: the body did not arrive in time.
    BodyTimeout,
    /// 404: no such object (or one the caller may not see).
    NotFound,
    /// 404: no such model, or one the key may not use.
    ModelNotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 401: no key was given.
    MissingKey,
    /// 401: the key given is not accepted.
    InvalidKey,
    /// 401: the key lacks a scope (OpenAI answers this with 401 too).
    MissingScope,
    /// 403: the key may not be used from this address.
    IpNotAllowed,
    /// 403: the installation's policy does not allow it.
    RefusedByPolicy,
    /// 409: it clashes with what exists.
    Conflict,
    /// 409: the project has as many active keys as the installation allows.
    ActiveKeyLimit,
    /// 429: a requests-per-minute or concurrency limit.
    RequestRateLimit,
    /// 429: a tokens-per-minute limit.
    TokenRateLimit,
    /// 429: a monthly budget is spent.
    InsufficientQuota,
    /// 400: a partner's report came without its signature headers.
    SignatureMissing,
    /// 401: a partner's report is not signed by a key it publishes.
    InvalidSignature,
    /// 401: `/metrics` without its bearer token.
    InvalidMetricsToken,
    /// 403: `/metrics` from an address it is not served to.
    MetricsForbidden,
    /// 500: a failure of ours, details only in the log.
    Internal,
    /// 503: something Keyward needs is unavailable for now.
    Unavailable,
    /// 503: the usage ledger cannot take the call, so it is not made.
    LedgerUnavailable,
    /// 502: the upstream could not be reached.
    UpstreamUnreachable,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
}

impl ApiErrorKind {
    pub fn status(self) -> StatusCode {
        use ApiErrorKind::*;
        match self {
            InvalidRequest | SignatureMissing => StatusCode::BAD_REQUEST,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            NotFound | ModelNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MissingKey | InvalidKey | MissingScope | InvalidSignature | InvalidMetricsToken => {
                StatusCode::UNAUTHORIZED
            }
            IpNotAllowed | RefusedByPolicy | MetricsForbidden => StatusCode::FORBIDDEN,
            Conflict | ActiveKeyLimit => StatusCode::CONFLICT,
            RequestRateLimit | TokenRateLimit | InsufficientQuota => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable | LedgerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// OpenAI's `type`.
    pub fn error_type(self) -> &'static str {
        use ApiErrorKind::*;
        match self {
            RequestRateLimit => "requests",
            TokenRateLimit => "tokens",
            InsufficientQuota => "insufficient_quota",
            Internal | Unavailable | LedgerUnavailable | UpstreamUnreachable | UpstreamTimeout => {
                "server_error"
            }
            InvalidRequest | BodyTooLarge | BodyTimeout | NotFound | ModelNotFound
            | MethodNotAllowed | MissingKey | InvalidKey | MissingScope | IpNotAllowed
            | RefusedByPolicy | Conflict | ActiveKeyLimit | SignatureMissing | InvalidSignature
            | InvalidMetricsToken | MetricsForbidden => "invalid_request_error",
        }
    }

    /// OpenAI's `code`.
    pub fn code(self) -> Option<&'static str> {
        use ApiErrorKind::*;
        Some(match self {
            InvalidRequest | MissingKey | Internal | Unavailable => return None,
            BodyTooLarge => "request_too_large",
            BodyTimeout => "request_timeout",
            NotFound => "not_found",
            ModelNotFound => "model_not_found",
            MethodNotAllowed => "method_not_allowed",
            InvalidKey => "invalid_api_key",
            MissingScope => "insufficient_permissions",
            IpNotAllowed => "ip_not_allowed",
            RefusedByPolicy => "refused_by_policy",
            Conflict => "conflict",
            ActiveKeyLimit => "active_key_limit_reached",
            RequestRateLimit | TokenRateLimit => "rate_limit_exceeded",
            InsufficientQuota => "insufficient_quota",
            SignatureMissing | InvalidSignature => "invalid_signature",
            InvalidMetricsToken => "invalid_metrics_token",
            MetricsForbidden => "metrics_forbidden",
            LedgerUnavailable => "ledger_unavailable",
            UpstreamUnreachable => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
        })
    }

    /// The `reason` label of `keyward_gateway_refused_total` for a model
    /// call refused with this kind.
    pub fn refusal_reason(self) -> &'static str {
        use ApiErrorKind::*;
        match self {
            MissingKey | InvalidKey | MissingScope | InvalidSignature | InvalidMetricsToken => {
                "unauthorized"
            }
            IpNotAllowed | RefusedByPolicy | MetricsForbidden => "forbidden",
            ModelNotFound => "model_not_found",
            NotFound => "not_found",
            BodyTooLarge => "too_large",
            InvalidRequest | SignatureMissing => "invalid_request",
            RequestRateLimit | TokenRateLimit => "rate_limit",
            InsufficientQuota => "budget",
            LedgerUnavailable => "ledger_unavailable",
            BodyTimeout | MethodNotAllowed | Conflict | ActiveKeyLimit | Internal | Unavailable
            | UpstreamUnreachable | UpstreamTimeout => "other",
        }
    }
}

/// An error as the API returns it: a kind, the message for the caller and,
/// for a bad value, the parameter it was in.
#[derive(Debug)]
pub struct ApiError {
    kind: ApiErrorKind,
    message: String,
    param: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
        }
    }

    /// Names the request parameter the error is about.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn kind(&self) -> ApiErrorKind {
        self.kind
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        ApiError {
            param,
            ..ApiError::new(ApiErrorKind::InvalidRequest, message)
        }
    }

    /// A request body that could not be read whole: too large (413), too
    /// slow to arrive (408), or cut off (400).
    pub fn unreadable_body(error: &(dyn std::error::Error + 'static), limit: usize) -> Self {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if e.is::<http_body_util::LengthLimitError>() {
                return ApiError::new(
                    ApiErrorKind::BodyTooLarge,
                    format!("The request body is larger than {limit} bytes; send less."),
                );
            }
            cause = e.source();
        }
        if let Some(late) = crate::body_deadline::timed_out(error) {
            return ApiError::new(
                ApiErrorKind::BodyTimeout,
                format!(
                    "The request body did not arrive within {} s; send it without pauses.",
                    late.0.as_secs()
                ),
            );
        }
        ApiError::invalid(
            None,
            "The request body could not be read whole; send it again.",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ApiErrorKind::NotFound, message)
    }

    pub fn internal() -> Self {
        ApiError::new(
            ApiErrorKind::Internal,
            "The server had an error while processing your request. Try again; if it keeps happening, report it to the operator with the x-request-id of the response.",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(ApiErrorKind::Unavailable, message)
    }

    /// 401 for a key that was given but is not accepted; shows only its mask.
    pub fn bad_key(presented: &str) -> Self {
        ApiError::new(
            ApiErrorKind::InvalidKey,
            format!(
                "Incorrect API key provided: {}. You can find your API keys in the Keyward dashboard under API keys.",
                keyward_core::key::mask(presented)
            ),
        )
    }

    /// 404 for a model that does not exist or that the key may not use.
    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            ApiErrorKind::ModelNotFound,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                model.chars().take(256).collect::<String>()
            ),
        )
        .with_param("model")
    }

    /// 401 naming the scope a key lacks, as OpenAI words it.
    pub fn missing_scope(scope: &str, hint: &str) -> Self {
        ApiError::new(
            ApiErrorKind::MissingScope,
            format!("You have insufficient permissions for this operation. Missing scopes: {scope}. {hint}"),
        )
    }

    /// 403 for a key used from outside its IP allow-list (or that of a
    /// key above it).
    pub fn ip_not_allowed() -> Self {
        ApiError::new(
            ApiErrorKind::IpNotAllowed,
            "This API key may not be used from your IP address. Ask its owner to add it to the key's allowed IPs.",
        )
    }

    /// 503 when the usage ledger's queue stayed full: the call is refused
    /// rather than served unbilled.
    pub fn ledger_unavailable() -> Self {
        ApiError::new(
            ApiErrorKind::LedgerUnavailable,
            "Keyward cannot record usage right now (its ledger is behind or its database is unavailable), so the call was not made. Retry after a second; if it persists, tell the operator.",
        )
    }

    pub fn missing_key() -> Self {
        ApiError::new(
            ApiErrorKind::MissingKey,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can create keys in the Keyward dashboard under API keys.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind.error_type(),
                param: self.param.as_deref(),
                code: self.kind.code(),
            },
        };
        let status = self.kind.status();
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The one mapping from a service's refusal to an API error:
///
/// | `ServiceError`      | kind               | status |
/// |---------------------|--------------------|--------|
/// | `Unauthenticated`   | `MissingKey` / `InvalidKey` | 401 |
/// | `NotFound`          | `NotFound`         | 404    |
/// | `Invalid`           | `InvalidRequest`   | 400    |
/// | `PermissionDenied`  | `MissingScope`     | 401    |
/// | `Conflict`          | `Conflict`         | 409    |
/// | `Refused`           | `RefusedByPolicy`  | 403    |
/// | `KeyCapReached`     | `ActiveKeyLimit`   | 409    |
/// | `Store`             | `Internal`         | 500 (logged, no detail) |
///
/// The dashboard's pages answer the same errors with the same statuses but
/// for these, on purpose (`keyward_dashboard::status_of`, where each is
/// explained): `PermissionDenied` is 403 there (here 401, as OpenAI
/// answers); `Conflict` and `KeyCapReached` are 400 there (the form is
/// shown again); `Unauthenticated` is 400 there. A test in
/// `keyward-server` (`api::error_statuses`) holds both to this.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let kind = match &e {
            // The caller's key is already known valid here; a 401 from a
            // service means a key-level problem with no secret to mask.
            ServiceError::Unauthenticated(AuthError::Missing) => return ApiError::missing_key(),
            ServiceError::Unauthenticated(_) => {
                return ApiError::new(ApiErrorKind::InvalidKey, "Incorrect API key provided.")
            }
            ServiceError::NotFound { .. } => ApiErrorKind::NotFound,
            ServiceError::Invalid { .. } => ApiErrorKind::InvalidRequest,
            ServiceError::PermissionDenied { scope, hint } => {
                return ApiError::missing_scope(scope, hint)
            }
            ServiceError::Conflict(_) => ApiErrorKind::Conflict,
            ServiceError::Refused(_) => ApiErrorKind::RefusedByPolicy,
            ServiceError::KeyCapReached(_) => ApiErrorKind::ActiveKeyLimit,
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                return ApiError::internal();
            }
        };
        let param = match &e {
            ServiceError::Invalid { param, .. } => param.map(str::to_owned),
            _ => None,
        };
        ApiError {
            kind,
            message: e.to_string(),
            param,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
