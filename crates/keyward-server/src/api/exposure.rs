//! Public endpoints for exposed keys: `POST /v1/keys/report` (anyone holding
//! a key may kill it) and GitHub's secret-scanning partner endpoint.

use std::net::IpAddr;

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyward_service::Sighting;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{ApiError, ApiErrorKind, ApiResult};
use super::extract::ApiJson;
use super::throttle::{client_ip, PerAddress};
use super::AppState;
use crate::github_keys::{GithubKeys, Refusal};
use crate::outbox::Outbox;

/// The most keys one report may carry.
const MAX_KEYS: usize = 100;
/// GitHub's batches are small; this bounds the body we read and verify.
const MAX_GITHUB_BODY: usize = 1 << 20;

/// What the exposure endpoints share.
pub struct Exposure {
    /// Woken when a report queued notices.
    pub outbox: Outbox,
    pub github: Option<GithubKeys>,
    /// `/v1/keys/report` per client address.
    pub reports: PerAddress,
    /// GitHub's endpoint per client address, counted before its signature
    /// is checked.
    pub github_requests: PerAddress,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// The exposed keys, at most 100.
    keys: Vec<String>,
    /// Where they were found.
    url: Option<String>,
    /// Who found them, e.g. a scanner's name.
    source: Option<String>,
}

/// Reports keys as exposed. No authentication: holding a key is proof
/// enough to kill it. Every real, active key is revoked at once.
#[utoipa::path(post, path = "/v1/keys/report", tag = "exposure", security(()), request_body = ReportBody,
    responses((status = 200, description = "A verdict per key: {\"results\":[{\"token_hash\",\"label\"}]}"),
              (status = 429, description = "Too many reports from this address")))]
pub async fn report(State(state): State<AppState>, req: Request<Body>) -> Response {
    // Throttle before reading anything, so malformed reports count too.
    let ip = client_ip(req.extensions());
    if let Some(refused) = state.exposure.reports.check(ip) {
        return refused;
    }
    let body = match ApiJson::<ReportBody>::from_request(req, &state).await {
        Ok(ApiJson(b)) => b,
        Err(e) => return e.into_response(),
    };
    if body.keys.is_empty() || body.keys.len() > MAX_KEYS {
        return ApiError::invalid(
            Some("keys".into()),
            format!("`keys` must list 1 to {MAX_KEYS} keys."),
        )
        .into_response();
    }
    if body.keys.iter().any(|k| k.len() > 256) {
        return ApiError::invalid(
            Some("keys".into()),
            "Each key must be at most 256 characters.",
        )
        .into_response();
    }
    let sighting = Sighting {
        url: body.url,
        source: body.source,
    };
    match revoke(&state, &body.keys, &sighting, ip).await {
        Ok(verdicts) => {
            let results: Vec<Value> = verdicts
                .into_iter()
                .map(|v| json!({"token_hash": v.token_hash, "label": v.label.as_str()}))
                .collect();
            Json(json!({ "results": results })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn revoke(
    state: &AppState,
    keys: &[String],
    sighting: &Sighting,
    ip: Option<IpAddr>,
) -> ApiResult<Vec<keyward_service::Verdict>> {
    let reported = state
        .services
        .report_exposed(keys, sighting, ip.map(|i| i.to_string()))
        .await?;
    if reported.queued > 0 {
        state.exposure.outbox.wake();
    }
    Ok(reported.verdicts)
}

#[derive(Deserialize)]
struct GithubMatch {
    token: String,
    #[serde(rename = "type")]
    _kind: Option<String>,
    url: Option<String>,
    source: Option<String>,
}

/// GitHub's secret-scanning partner endpoint: verifies GitHub's signature,
/// revokes every matching active key and labels each token.
#[utoipa::path(post, path = "/v1/secret-scanning/github", tag = "exposure", security(()),
    responses((status = 200, description = "[{\"token_hash\",\"token_type\",\"label\"}]"),
              (status = 401, description = "Bad or missing signature"),
              (status = 429, description = "Too many requests from this address"),
              (status = 503, description = "GitHub secret scanning is turned off, or GitHub's keys could not be fetched yet")))]
pub async fn github(State(state): State<AppState>, req: Request<Body>) -> Response {
    // Throttle before reading the body or checking a signature.
    let ip = client_ip(req.extensions());
    if let Some(refused) = state.exposure.github_requests.check(ip) {
        return refused;
    }
    let Some(keys) = &state.exposure.github else {
        return ApiError::unavailable(
            "GitHub secret scanning is turned off here: set secret_scanning.github_public_keys_url (GitHub's published keys) or secret_scanning.github_public_keys_file.",
        )
        .into_response();
    };
    let (key_id, signature) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header("github-public-key-identifier"),
            header("github-public-key-signature"),
        )
    };
    let Ok(body) = to_bytes(req.into_body(), MAX_GITHUB_BODY).await else {
        return ApiError::invalid(None, "The body is too large.").into_response();
    };
    if let Err(refusal) = keys
        .check(key_id.as_deref(), signature.as_deref(), &body)
        .await
    {
        return refused(refusal, keys.url());
    }
    let matches: Vec<GithubMatch> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return ApiError::invalid(None, format!("The body is not a list of matches: {e}."))
                .into_response()
        }
    };
    let mut verdicts = Vec::with_capacity(matches.len());
    for m in &matches {
        let sighting = Sighting {
            url: m.url.clone(),
            source: Some(
                m.source
                    .clone()
                    .map_or_else(|| "github".to_owned(), |s| format!("github {s}")),
            ),
        };
        match revoke(&state, std::slice::from_ref(&m.token), &sighting, ip).await {
            Ok(mut v) => verdicts.append(&mut v),
            Err(e) => return e.into_response(),
        }
    }
    let out: Vec<Value> = verdicts
        .into_iter()
        .map(|v| json!({"token_hash": v.token_hash, "token_type": "keyward_api_key", "label": v.label.as_str()}))
        .collect();
    Json(Value::Array(out)).into_response()
}

/// The answer to a partner request whose signature cannot be accepted.
fn refused(refusal: Refusal, keys_url: Option<&str>) -> Response {
    let (kind, message) = match refusal {
        Refusal::NoKeys => {
            return ApiError::unavailable(format!(
                "GitHub's secret-scanning keys are not known yet: they could not be fetched from {}. Set secret_scanning.github_public_keys_file to a copy of them.",
                keys_url.unwrap_or("anywhere (secret_scanning.github_public_keys_url is empty)")
            ))
            .into_response()
        }
        Refusal::MissingHeaders => (ApiErrorKind::SignatureMissing, "Github-Public-Key-Identifier and Github-Public-Key-Signature headers are required."),
        Refusal::UnknownKey => (ApiErrorKind::InvalidSignature, "The Github-Public-Key-Identifier names no key this installation knows, even after fetching GitHub's published keys (done at most once a minute)."),
        Refusal::NotCurrent => (ApiErrorKind::InvalidSignature, "The Github-Public-Key-Identifier names a key that is no longer current."),
        Refusal::BadSignature => (ApiErrorKind::InvalidSignature, "The signature does not match the body."),
    };
    ApiError::new(kind, message).into_response()
}
