//! The Limits page: the project's monthly budget and spend this month, its
//! project-wide rate limits, and each key's limits and spend.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_core::{time::month_start, time::now_unix, Micros, ProjectId};
use keyward_service::{BucketWidth, ProjectPatch, ServiceError, UsageQuery};
use serde::Deserialize;
use serde_json::json;

use super::keys::{all_keys, key_json};
use super::ProjectChoice;
use crate::dates;
use crate::error::{inline, user_message, DashError};
use crate::forms;
use crate::render;
use crate::visitor::SignedIn;
use crate::Dash;

#[derive(Deserialize, Default)]
pub struct LimitsQuery {
    project: Option<String>,
    notice: Option<String>,
}

pub async fn page(
    State(dash): State<Dash>,
    who: SignedIn,
    Query(q): Query<LimitsQuery>,
) -> Result<Response, DashError> {
    let notice = match q.notice.as_deref() {
        Some("saved") => Some("Limits saved."),
        Some("updated") => Some("Key updated."),
        _ => None,
    };
    render_page(&dash, &who, q.project.as_deref(), notice, None).await
}

/// Spend this month per key of `project`, and the project's total.
async fn spend_this_month(
    dash: &Dash,
    who: &SignedIn,
    project: &ProjectId,
) -> Result<(HashMap<String, Micros>, Micros), ServiceError> {
    let start = month_start(now_unix());
    let mut per_key: HashMap<String, Micros> = HashMap::new();
    let mut page = None;
    loop {
        let got = dash
            .services
            .usage(
                &who.caller,
                &UsageQuery {
                    start,
                    end: None,
                    width: BucketWidth::Day,
                    by_project: false,
                    by_key: true,
                    by_model: false,
                    project_ids: vec![project.clone()],
                    key_ids: Vec::new(),
                    models: Vec::new(),
                    limit: 31,
                    page,
                },
            )
            .await?;
        for row in got.buckets.into_iter().flat_map(|b| b.results) {
            if let Some(k) = row.key_id {
                per_key.entry(k.to_string()).or_default().0 += row.cost.0;
            }
        }
        match got.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    let total = Micros(per_key.values().map(|m| m.0).sum());
    Ok((per_key, total))
}

async fn render_page(
    dash: &Dash,
    who: &SignedIn,
    project: Option<&str>,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, DashError> {
    let choice = ProjectChoice::load(&dash.services, &who.caller, project).await?;
    let Some((current, _)) = choice.current.clone() else {
        return Ok(render::page(
            who,
            "limits",
            "Limits",
            json!({ "projects": [] }),
        ));
    };
    let (per_key, spent) = spend_this_month(dash, who, &current.id).await?;
    let keys = all_keys(&dash.services, &who.caller, &current.id, false).await?;
    let rows: Vec<_> = keys
        .iter()
        .map(|k| {
            let mut v = key_json(k, "");
            v["spent"] = per_key
                .get(k.id.as_str())
                .copied()
                .unwrap_or_default()
                .format_usd()
                .into();
            v
        })
        .collect();
    let limits = current.rate_limits;
    let budget = current.monthly_budget;
    Ok(render::page(
        who,
        "limits",
        "Limits",
        json!({
            "projects": choice.to_json(),
            "project": choice.current_json(),
            "is_owner": choice.is_owner(),
            "can_write": choice.can_write(),
            "notice": notice,
            "error": error,
            "month": dates::human(month_start(now_unix())),
            "spent": spent.format_usd(),
            "spent_value": spent.to_usd(),
            "budget_value": budget.map(|b| b.to_usd()),
            "budget_label": budget.map(|b| b.format_usd()),
            "budget": budget.map_or(String::new(), |b| format!("{:.2}", b.to_usd())),
            "rpm": limits.requests_per_minute,
            "tpm": limits.tokens_per_minute,
            "concurrent": limits.max_concurrent_requests,
            "keys": rows,
            "back": "limits",
        }),
    ))
}

#[derive(Deserialize)]
pub struct LimitsForm {
    #[serde(default)]
    project: String,
    #[serde(default)]
    budget: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    concurrent: String,
}

pub async fn save(State(dash): State<Dash>, who: SignedIn, Form(f): Form<LimitsForm>) -> Response {
    let result = async {
        let project = ProjectId::parse(&f.project).map_err(|e| ServiceError::Invalid {
            param: Some("project"),
            message: format!("{e}."),
        })?;
        let patch = ProjectPatch {
            name: None,
            rate_limits: forms::limits(&f.rpm, &f.tpm, &f.concurrent)?,
            monthly_budget: Some(forms::opt_usd("budget", "Monthly budget", &f.budget)?),
        };
        dash.services
            .update_project(&who.caller, &project, patch)
            .await
    }
    .await;
    match result {
        Ok(p) => Redirect::to(&format!("/limits?project={}&notice=saved", p.id)).into_response(),
        Err(e) => inline(
            &e,
            render_page(&dash, &who, Some(&f.project), None, Some(user_message(&e))).await,
        ),
    }
}
