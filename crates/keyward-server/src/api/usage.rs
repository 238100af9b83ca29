//! `/v1/organization/usage/completions` and `/v1/organization/costs`, in
//! OpenAI's bucket and page shapes.

use axum::extract::State;
use axum::{Extension, Json};
use keyward_core::UsageRow;
use keyward_core::{KeyId, ProjectId};
use keyward_service::{BucketWidth, Caller, UsagePage, UsageQuery, LATEST_TIME};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Start of the range, Unix seconds (inclusive).
    start_time: i64,
    /// End of the range, Unix seconds (exclusive); default now.
    end_time: Option<i64>,
    /// `1m`, `1h` or `1d` (default).
    bucket_width: Option<String>,
    /// Any of `project_id`, `api_key_id`, `model` (`group_by[]=…`, repeatable).
    #[serde(default, rename = "group_by[]", alias = "group_by")]
    group_by: Vec<String>,
    #[serde(default, rename = "project_ids[]", alias = "project_ids")]
    project_ids: Vec<String>,
    #[serde(default, rename = "api_key_ids[]", alias = "api_key_ids")]
    api_key_ids: Vec<String>,
    #[serde(default, rename = "models[]", alias = "models")]
    models: Vec<String>,
    /// Buckets per page.
    limit: Option<i64>,
    /// `next_page` of the previous page.
    page: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CostParams {
    start_time: i64,
    end_time: Option<i64>,
    /// Only `1d`.
    bucket_width: Option<String>,
    /// Any of `project_id`, `line_item` (the model).
    #[serde(default, rename = "group_by[]", alias = "group_by")]
    group_by: Vec<String>,
    #[serde(default, rename = "project_ids[]", alias = "project_ids")]
    project_ids: Vec<String>,
    limit: Option<i64>,
    page: Option<String>,
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::invalid(Some(param.to_owned()), message)
}

fn parse_ids<T, E: std::fmt::Display>(
    param: &str,
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, E>,
) -> ApiResult<Vec<T>> {
    raw.iter()
        .map(|r| parse(r).map_err(|e| bad(param, format!("{e}."))))
        .collect()
}

/// What a `group_by` value splits results by.
#[derive(Clone, Copy)]
enum Grouping {
    Project,
    Key,
    Model,
}

#[allow(clippy::too_many_arguments)]
fn query(
    start: i64,
    end: Option<i64>,
    width: Option<&str>,
    allowed_widths: &[&str],
    group_by: &[String],
    groups: &[(&str, Grouping)],
    project_ids: &[String],
    limit: Option<i64>,
    page: Option<&str>,
) -> ApiResult<UsageQuery> {
    let width_text = width.unwrap_or("1d");
    let width = allowed_widths
        .contains(&width_text)
        .then(|| BucketWidth::parse(width_text))
        .flatten()
        .ok_or_else(|| {
            bad(
                "bucket_width",
                format!(
                    "`bucket_width` must be one of {}.",
                    allowed_widths.join(", ")
                ),
            )
        })?;
    let (mut by_project, mut by_key, mut by_model) = (false, false, false);
    for g in group_by {
        let grouping = groups
            .iter()
            .find(|(name, _)| name == g)
            .ok_or_else(|| {
                let names: Vec<_> = groups.iter().map(|(n, _)| *n).collect();
                bad(
                    "group_by",
                    format!("`group_by` values must be among {}.", names.join(", ")),
                )
            })?
            .1;
        match grouping {
            Grouping::Project => by_project = true,
            Grouping::Key => by_key = true,
            Grouping::Model => by_model = true,
        }
    }
    let (default_limit, max_limit) = width.page_limits();
    let limit = limit.unwrap_or(i64::from(default_limit));
    if !(1..=i64::from(max_limit)).contains(&limit) {
        return Err(bad(
            "limit",
            format!("`limit` must be from 1 to {max_limit} for bucket_width {width_text}."),
        ));
    }
    let page = page
        .map(|p| {
            p.parse::<i64>().map_err(|_| {
                bad(
                    "page",
                    "`page` must be the `next_page` of a previous response.".into(),
                )
            })
        })
        .transpose()?;
    if let Some(p) = page {
        if p < start || p > LATEST_TIME || end.is_some_and(|e| p >= e) {
            return Err(bad(
                "page",
                "`page` is outside the requested time range.".into(),
            ));
        }
    }
    Ok(UsageQuery {
        start,
        end,
        width,
        by_project,
        by_key,
        by_model,
        project_ids: parse_ids("project_ids", project_ids, ProjectId::parse)?,
        key_ids: Vec::new(),
        models: Vec::new(),
        limit: limit as u32,
        page,
    })
}

fn page_object(page: UsagePage, result: impl Fn(&UsageRow) -> Value) -> Value {
    let data: Vec<Value> = page
        .buckets
        .iter()
        .map(|b| {
            json!({
                "object": "bucket",
                "start_time": b.start,
                "end_time": b.end,
                "results": b.results.iter().map(&result).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "object": "page",
        "data": data,
        "has_more": page.next_page.is_some(),
        "next_page": page.next_page.map(|p| p.to_string()),
    })
}

/// Tokens and requests of chat and text completions, per time bucket.
#[utoipa::path(get, path = "/v1/organization/usage/completions", tag = "usage", params(UsageParams),
    responses((status = 200, description = "A page of buckets")))]
pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> ApiResult<Json<Value>> {
    let mut q = query(
        p.start_time,
        p.end_time,
        p.bucket_width.as_deref(),
        &["1m", "1h", "1d"],
        &p.group_by,
        &[
            ("project_id", Grouping::Project),
            ("api_key_id", Grouping::Key),
            ("model", Grouping::Model),
        ],
        &p.project_ids,
        p.limit,
        p.page.as_deref(),
    )?;
    q.key_ids = parse_ids("api_key_ids", &p.api_key_ids, KeyId::parse)?;
    q.models = p.models;
    let page = state.services.usage(&caller, &q).await?;
    Ok(Json(page_object(page, |r| {
        json!({
            "object": "organization.usage.completions.result",
            "input_tokens": r.prompt_tokens,
            "output_tokens": r.completion_tokens,
            "input_cached_tokens": 0,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": r.requests,
            "project_id": r.project_id,
            "user_id": null,
            "api_key_id": r.key_id,
            "model": r.model,
            "batch": null,
        })
    })))
}

/// Spend in US dollars per day.
#[utoipa::path(get, path = "/v1/organization/costs", tag = "usage", params(CostParams),
    responses((status = 200, description = "A page of daily buckets")))]
pub async fn costs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<CostParams>,
) -> ApiResult<Json<Value>> {
    let q = query(
        p.start_time,
        p.end_time,
        p.bucket_width.as_deref(),
        &["1d"],
        &p.group_by,
        &[
            ("project_id", Grouping::Project),
            ("line_item", Grouping::Model),
        ],
        &p.project_ids,
        p.limit,
        p.page.as_deref(),
    )?;
    let page = state.services.usage(&caller, &q).await?;
    Ok(Json(page_object(page, |r| {
        json!({
            "object": "organization.costs.result",
            "amount": {"value": r.cost.to_usd(), "currency": "usd"},
            "line_item": r.model,
            "project_id": r.project_id,
        })
    })))
}
