//! Extractors that turn bad input into OpenAI-shaped 400s naming the field,
//! instead of axum's plain-text rejections.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use super::AppState;

/// A JSON body. An empty body reads as `{}`, so endpoints whose fields are
/// all optional accept a bare POST.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes;
        let bytes = to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| ApiError::unreadable_body(&e, limit))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let de = &mut serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return ApiError::invalid(
                    None,
                    "We could not parse the JSON body of your request. Send a JSON object (Content-Type: application/json) as described at /openapi.json.",
                );
            }
            field_error(e.path().to_string(), &inner.to_string())
        })?;
        de.end().map_err(|_| {
            ApiError::invalid(
                None,
                "The JSON body has data after its closing brace; send exactly one JSON object.",
            )
        })?;
        Ok(ApiJson(value))
    }
}

/// Query parameters; repeated keys and `name[]` fill lists.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_html_form::Deserializer::from_bytes(query.as_bytes());
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| field_error(e.path().to_string(), &e.inner().to_string()))
    }
}

/// A 400 for a field-level problem. `path` comes from serde_path_to_error
/// (`.` when the problem is with the whole object, as for unknown fields).
fn field_error(path: String, detail: &str) -> ApiError {
    let detail = detail
        .split(" at line ")
        .next()
        .unwrap_or(detail)
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number");
    let detail = detail.as_str();
    // serde names unknown and missing fields inside its message.
    let named = detail
        .strip_prefix("unknown field `")
        .or_else(|| detail.strip_prefix("missing field `"))
        .or_else(|| detail.strip_prefix("duplicate field `"))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let param = match (named, path.as_str()) {
        (Some(name), "." | "") => Some(name),
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => Some(p.to_owned()),
        (Some(name), p) => Some(format!("{p}.{name}")),
        (None, "." | "") => None,
        (None, p) => Some(p.to_owned()),
    };
    let message = match &param {
        Some(p) => format!("Invalid value for `{p}`: {detail}."),
        None => format!("Invalid request: {detail}."),
    };
    ApiError::invalid(param, message)
}

/// Parses a path segment into a typed id, or a 400 naming the parameter.
pub fn path_id<T, E: std::fmt::Display>(
    param: &str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::invalid(Some(param.to_owned()), format!("{e}.")))
}

/// `after` and `limit`, shared by every list endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Return items after this id (the `last_id` of the previous page).
    pub after: Option<String>,
    /// 1 to 100; default 20.
    pub limit: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> Result<keyward_core::Page, ApiError> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=i64::from(keyward_service::MAX_PAGE)).contains(&limit) {
            return Err(ApiError::invalid(
                Some("limit".into()),
                format!(
                    "`limit` must be from 1 to {}; got {limit}.",
                    keyward_service::MAX_PAGE
                ),
            ));
        }
        if let Some(after) = &self.after {
            if after.is_empty()
                || after.len() > 64
                || !after
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(ApiError::invalid(
                    Some("after".into()),
                    "`after` must be an id from a previous page's `last_id`.",
                ));
            }
        }
        Ok(keyward_core::Page {
            after: self.after.clone(),
            limit: limit as u32,
        })
    }
}

/// For update bodies: an absent field is `None`, an explicit `null` is `Some(None)`.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
