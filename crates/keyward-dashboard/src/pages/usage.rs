//! The Usage page: requests, tokens and cost per day for a date range, by
//! model or by key, as charts and a table; and the same as CSV.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use keyward_core::time::{day_start, now_unix, DAY};
use keyward_core::Micros;
use keyward_service::{BucketWidth, Caller, ServiceError, UsageQuery};
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::all_keys;
use super::ProjectChoice;
use crate::dates;
use crate::error::DashError;
use crate::numbers::grouped;
use crate::render;
use crate::visitor::SignedIn;
use crate::Dash;

/// The longest range one page shows.
const MAX_DAYS: i64 = 366;

#[derive(Deserialize, Default)]
pub struct UsageParams {
    /// A project id, or empty for all of the caller's projects.
    project: Option<String>,
    /// First day, `YYYY-MM-DD` (default: 29 days ago).
    from: Option<String>,
    /// Last day, inclusive (default: today).
    to: Option<String>,
    /// `model` (default) or `key`.
    group: Option<String>,
}

/// One day's usage for one model or key.
struct Line {
    day: i64,
    group: String,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost: Micros,
}

struct Report {
    choice: ProjectChoice,
    all_projects: bool,
    from: i64,
    /// Exclusive: the day after the last.
    to: i64,
    by_key: bool,
    lines: Vec<Line>,
}

fn bad(param: &'static str, message: &str) -> DashError {
    DashError::Service(ServiceError::Invalid {
        param: Some(param),
        message: message.to_owned(),
    })
}

async fn report(dash: &Dash, caller: &Caller, p: &UsageParams) -> Result<Report, DashError> {
    let all_projects = p.project.as_deref().unwrap_or("").is_empty();
    let choice = ProjectChoice::load(&dash.services, caller, p.project.as_deref()).await?;
    let today = day_start(now_unix());
    let parse = |raw: &Option<String>, param, default| match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(s) => dates::parse_iso(s)
            .ok_or_else(|| bad(param, "Dates look like 2026-11-22 (year-month-day).")),
    };
    let from = parse(&p.from, "from", today - 29 * DAY)?;
    let last = parse(&p.to, "to", today)?;
    if last < from {
        return Err(bad(
            "to",
            "The end date must be on or after the start date.",
        ));
    }
    if (last - from) / DAY >= MAX_DAYS {
        return Err(bad("from", "Choose a range of at most 366 days."));
    }
    let to = last + DAY;
    let by_key = p.group.as_deref() == Some("key");
    let project_ids = match (all_projects, choice.current_id()) {
        (false, Some(id)) => vec![id.clone()],
        _ => Vec::new(),
    };
    // Names for keys, from every project in scope (revoked keys too).
    let mut key_names = HashMap::new();
    if by_key {
        let scope: Vec<_> = if all_projects {
            choice.all.iter().map(|(p, _)| p.id.clone()).collect()
        } else {
            project_ids.clone()
        };
        for project in &scope {
            for k in all_keys(&dash.services, caller, project, true).await? {
                let label = if k.name.is_empty() {
                    k.redacted_value.clone()
                } else {
                    format!("{} ({})", k.name, k.redacted_value)
                };
                key_names.insert(k.id.to_string(), label);
            }
        }
    }
    let mut lines = Vec::new();
    let mut page = None;
    loop {
        let q = UsageQuery {
            start: from,
            end: Some(to),
            width: BucketWidth::Day,
            by_project: false,
            by_key,
            by_model: !by_key,
            project_ids: project_ids.clone(),
            key_ids: Vec::new(),
            models: Vec::new(),
            limit: 31,
            page,
        };
        let got = dash.services.usage(caller, &q).await?;
        for bucket in got.buckets {
            for row in bucket.results {
                let group = if by_key {
                    let id = row.key_id.map(|k| k.to_string()).unwrap_or_default();
                    key_names.get(&id).cloned().unwrap_or(id)
                } else {
                    row.model.unwrap_or_default()
                };
                lines.push(Line {
                    day: bucket.start,
                    group,
                    requests: row.requests,
                    input_tokens: row.prompt_tokens,
                    output_tokens: row.completion_tokens,
                    cost: row.cost,
                });
            }
        }
        match got.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    Ok(Report {
        choice,
        all_projects,
        from,
        to,
        by_key,
        lines,
    })
}

/// Chart.js datasets: one per group, one value per day.
fn chart_data(r: &Report) -> Value {
    let days: Vec<i64> = (0..(r.to - r.from) / DAY)
        .map(|i| r.from + i * DAY)
        .collect();
    let mut groups: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    for line in &r.lines {
        let series = groups
            .entry(&line.group)
            .or_insert_with(|| std::array::from_fn(|_| vec![0.0; days.len()]));
        if let Ok(i) = usize::try_from((line.day - r.from) / DAY) {
            if i < days.len() {
                series[0][i] += line.requests as f64;
                series[1][i] += (line.input_tokens + line.output_tokens) as f64;
                series[2][i] += line.cost.to_usd();
            }
        }
    }
    let sets = |n: usize| -> Vec<Value> {
        groups
            .iter()
            .map(|(label, s)| json!({ "label": label, "data": s[n] }))
            .collect()
    };
    json!({
        "labels": days.iter().map(|d| dates::short(*d)).collect::<Vec<_>>(),
        "requests": sets(0),
        "tokens": sets(1),
        "cost": sets(2),
    })
}

pub async fn page(
    State(dash): State<Dash>,
    who: SignedIn,
    Query(p): Query<UsageParams>,
) -> Result<Response, DashError> {
    let r = report(&dash, &who.caller, &p).await?;
    let requests: i64 = r.lines.iter().map(|l| l.requests).sum();
    let tokens: i64 = r
        .lines
        .iter()
        .map(|l| l.input_tokens + l.output_tokens)
        .sum();
    let cost = Micros(r.lines.iter().map(|l| l.cost.0).sum());
    let mut table: Vec<&Line> = r.lines.iter().collect();
    table.sort_by(|a, b| b.day.cmp(&a.day).then(a.group.cmp(&b.group)));
    let rows: Vec<Value> = table
        .iter()
        .map(|l| {
            json!({
                "date": dates::human(l.day),
                "group": l.group,
                "requests": grouped(l.requests),
                "input_tokens": grouped(l.input_tokens),
                "output_tokens": grouped(l.output_tokens),
                "cost": l.cost.format_usd(),
            })
        })
        .collect();
    let project_param = if r.all_projects {
        String::new()
    } else {
        r.choice
            .current_id()
            .map(|p| p.to_string())
            .unwrap_or_default()
    };
    let from = dates::iso(r.from);
    let to = dates::iso(r.to - DAY);
    let group = if r.by_key { "key" } else { "model" };
    Ok(render::page(
        &who,
        "usage",
        "Usage",
        json!({
            "projects": r.choice.to_json(),
            "all_projects": r.all_projects,
            "from": from,
            "to": to,
            "group": group,
            "csv_query": format!("project={project_param}&from={from}&to={to}&group={group}"),
            "total_requests": grouped(requests),
            "total_tokens": grouped(tokens),
            "total_cost": cost.format_usd(),
            "rows": rows,
            "chart": chart_data(&r),
        }),
    ))
}

/// A CSV field, quoted, with spreadsheet formulas defused.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn csv(
    State(dash): State<Dash>,
    who: SignedIn,
    Query(p): Query<UsageParams>,
) -> Result<Response, DashError> {
    let r = report(&dash, &who.caller, &p).await?;
    let group = if r.by_key { "api_key" } else { "model" };
    let mut out = format!("date,{group},requests,input_tokens,output_tokens,cost_usd\n");
    for l in &r.lines {
        out.push_str(&format!(
            "{},{},{},{},{},{:.6}\n",
            dates::iso(l.day),
            field(&l.group),
            l.requests,
            l.input_tokens,
            l.output_tokens,
            l.cost.to_usd()
        ));
    }
    let name = format!(
        "attachment; filename=\"keyward-usage-{}-to-{}.csv\"",
        dates::iso(r.from),
        dates::iso(r.to - DAY)
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
        .into_response())
}
