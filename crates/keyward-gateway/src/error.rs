//! Errors in OpenAI's shape: `{"error":{"message","type","param","code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyward_service::{AuthError, ServiceError};
use serde::Serialize;

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
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
    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            code: None,
        }
    }

    /// A request body that could not be read whole: too large (413), too
    /// slow to arrive (408), or cut off (400).
    pub fn unreadable_body(error: &(dyn std::error::Error + 'static), limit: usize) -> Self {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if e.is::<http_body_util::LengthLimitError>() {
                return ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    kind: "invalid_request_error",
                    message: format!("The request body is larger than {limit} bytes; send less."),
                    param: None,
                    code: Some("request_too_large"),
                };
            }
            cause = e.source();
        }
        if let Some(late) = crate::body_deadline::timed_out(error) {
            return ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                kind: "invalid_request_error",
                message: format!(
                    "The request body did not arrive within {} s; send it without pauses.",
                    late.0.as_secs()
                ),
                param: None,
                code: Some("request_timeout"),
            };
        }
        ApiError::invalid(
            None,
            "The request body could not be read whole; send it again.",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: Some("not_found"),
        }
    }

    pub fn internal() -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: "The server had an error while processing your request. Try again; if it keeps happening, report it to the operator with the x-request-id of the response.".into(),
            param: None,
            code: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// 401 for a key that was given but is not accepted; shows only its mask.
    pub fn bad_key(presented: &str) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            message: format!(
                "Incorrect API key provided: {}. You can find your API keys in the Keyward dashboard under API keys.",
                keyward_core::key::mask(presented)
            ),
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404 for a model that does not exist or that the key may not use.
    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: format!(
                "The model `{}` does not exist or you do not have access to it.",
                model.chars().take(256).collect::<String>()
            ),
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 401 naming the scope a key lacks, as OpenAI words it.
    pub fn missing_scope(scope: &str, hint: &str) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            message: format!("You have insufficient permissions for this operation. Missing scopes: {scope}. {hint}"),
            param: None,
            code: Some("insufficient_permissions"),
        }
    }

    /// 403 for a key used from outside its IP allow-list (or that of a
    /// key above it).
    pub fn ip_not_allowed() -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            kind: "invalid_request_error",
            message: "This API key may not be used from your IP address. Ask its owner to add it to the key's allowed IPs.".into(),
            param: None,
            code: Some("ip_not_allowed"),
        }
    }

    /// 503 when the usage ledger's queue stayed full: the call is refused
    /// rather than served unbilled.
    pub fn ledger_unavailable() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            message: "Keyward cannot record usage right now (its ledger is behind or its database is unavailable), so the call was not made. Retry after a second; if it persists, tell the operator.".into(),
            param: None,
            code: Some("ledger_unavailable"),
        }
    }

    /// 502 / 504 for an upstream that could not be reached or did not answer in time.
    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some(if status == StatusCode::GATEWAY_TIMEOUT {
                "upstream_timeout"
            } else {
                "upstream_unavailable"
            }),
        }
    }

    pub fn missing_key() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can create keys in the Keyward dashboard under API keys.".into(),
            param: None,
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            // The caller's key is already known valid here; a 401 from a
            // service means a key-level problem with no secret to mask.
            ServiceError::Unauthenticated(AuthError::Missing) => ApiError::missing_key(),
            ServiceError::Unauthenticated(_) => ApiError {
                status: StatusCode::UNAUTHORIZED,
                kind: "invalid_request_error",
                message: "Incorrect API key provided.".into(),
                param: None,
                code: Some("invalid_api_key"),
            },
            ServiceError::NotFound { .. } => ApiError::not_found(message),
            ServiceError::Invalid { param, .. } => {
                ApiError::invalid(param.map(str::to_owned), message)
            }
            ServiceError::PermissionDenied { scope, hint } => ApiError::missing_scope(&scope, hint),
            ServiceError::Conflict(_) => ApiError {
                status: StatusCode::CONFLICT,
                kind: "invalid_request_error",
                message,
                param: None,
                code: Some("conflict"),
            },
            ServiceError::Refused(_) => ApiError {
                status: StatusCode::FORBIDDEN,
                kind: "invalid_request_error",
                message,
                param: None,
                code: Some("refused_by_policy"),
            },
            ServiceError::KeyCapReached(_) => ApiError {
                status: StatusCode::CONFLICT,
                kind: "invalid_request_error",
                message,
                param: None,
                code: Some("active_key_limit_reached"),
            },
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                ApiError::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
