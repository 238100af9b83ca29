//! The API keys page: the project's keys, and creating (shown once),
//! editing, rotating and revoking them.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_core::{time::now_unix, KeyId, ProjectId, UserId};
use keyward_core::{KeyRecord, Page, RateLimits, RevokeReason};
use keyward_service::{Caller, CreatedKey, KeyPatch, KeyRef, KeySpec, ServiceError, Services};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ProjectChoice;
use crate::dates;
use crate::error::{inline, user_message, DashError};
use crate::forms;
use crate::render;
use crate::visitor::SignedIn;
use crate::Dash;

#[derive(Deserialize, Default)]
pub struct KeysQuery {
    project: Option<String>,
    /// `1` to list revoked keys too.
    revoked: Option<String>,
    notice: Option<String>,
}

/// One-off things a render of the page may show.
#[derive(Default)]
struct Extra {
    error: Option<String>,
    notice: Option<&'static str>,
    /// The key just created or rotated, with its secret: shown once.
    created: Option<Value>,
}

pub async fn page(
    State(dash): State<Dash>,
    who: SignedIn,
    Query(q): Query<KeysQuery>,
) -> Result<Response, DashError> {
    let extra = Extra {
        notice: q.notice.as_deref().and_then(notice_text),
        ..Extra::default()
    };
    render_page(
        &dash,
        &who,
        q.project.as_deref(),
        q.revoked.is_some(),
        extra,
    )
    .await
}

fn notice_text(code: &str) -> Option<&'static str> {
    match code {
        "revoked" => Some("Key revoked. Every request made with it now fails with 401."),
        "updated" => Some("Key updated."),
        _ => None,
    }
}

/// Every key of a project (up to 1,000), newest first.
pub(crate) async fn all_keys(
    services: &Services,
    caller: &Caller,
    project: &ProjectId,
    include_revoked: bool,
) -> Result<Vec<KeyRecord>, ServiceError> {
    let mut keys = Vec::new();
    let mut page = Page {
        after: None,
        limit: keyward_service::MAX_PAGE,
    };
    for _ in 0..10 {
        let listed = services
            .list_project_keys(caller, project, include_revoked, &page)
            .await?;
        page.after = listed.items.last().map(|k| k.id.to_string());
        keys.extend(listed.items);
        if !listed.has_more {
            break;
        }
    }
    Ok(keys)
}

/// Who created a key, as people know them (their email).
async fn creator_names(services: &Services, keys: &[KeyRecord]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for key in keys {
        if names.contains_key(&key.created_by) {
            continue;
        }
        let name = match UserId::parse(&key.created_by) {
            Ok(id) => match services.user(&id).await {
                Ok(u) => u.email,
                Err(_) => key.created_by.clone(),
            },
            Err(_) => match key.created_by.as_str() {
                "cli" => "Command line".to_owned(),
                "system" => "Keyward".to_owned(),
                other => other.to_owned(),
            },
        };
        names.insert(key.created_by.clone(), name);
    }
    names
}

/// A limit for a form field (`1000`) and for reading (`1,000`).
fn opt_num(v: Option<i64>) -> Value {
    v.map_or(Value::from(""), Value::from)
}

fn opt_label(v: Option<i64>) -> Value {
    v.map_or(Value::from(""), |n| crate::numbers::grouped(n).into())
}

/// A key as the templates show it.
pub(crate) fn key_json(k: &KeyRecord, created_by: &str) -> Value {
    let now = now_unix();
    let display_name = if k.name.is_empty() {
        "Secret key".to_owned()
    } else {
        k.name.clone()
    };
    let status = match (&k.revoked, k.is_active(now)) {
        (Some(r), _) => format!(
            "Revoked {}{}",
            dates::human(r.at),
            match r.reason {
                RevokeReason::Exposed => ", exposed",
                RevokeReason::Expired => ", expired",
                RevokeReason::Admin => " by an operator",
                RevokeReason::MemberRemoved => ", its owner left the project",
                RevokeReason::User => "",
            }
        ),
        (None, false) => "Expired".to_owned(),
        (None, true) => String::new(),
    };
    json!({
        "id": k.id.as_str(),
        "name": k.name,
        "display_name": display_name,
        "redacted": k.redacted_value,
        "created": dates::human(k.created_at),
        "last_used": k.last_used_at.map_or("Never".to_owned(), dates::human),
        "created_by": created_by,
        "permissions": forms::permissions_label(&k.permissions),
        "permissions_detail": forms::permissions_detail(&k.permissions),
        "active": k.revoked.is_none() && k.is_active(now),
        "status": status,
        "rpm": opt_num(k.rate_limits.requests_per_minute),
        "tpm": opt_num(k.rate_limits.tokens_per_minute),
        "concurrent": opt_num(k.rate_limits.max_concurrent_requests),
        "rpm_label": opt_label(k.rate_limits.requests_per_minute),
        "tpm_label": opt_label(k.rate_limits.tokens_per_minute),
        "budget": k.monthly_budget.map_or(String::new(), |b| format!("{:.2}", b.to_usd())),
        "budget_label": k.monthly_budget.map_or("None".to_owned(), |b| b.format_usd()),
        "expires": k.expires_at.map_or(String::new(), dates::iso),
        "expires_label": k.expires_at.map_or("Never".to_owned(), dates::human),
    })
}

async fn render_page(
    dash: &Dash,
    who: &SignedIn,
    project: Option<&str>,
    include_revoked: bool,
    extra: Extra,
) -> Result<Response, DashError> {
    let choice = ProjectChoice::load(&dash.services, &who.caller, project).await?;
    let keys = match choice.current_id() {
        Some(p) => all_keys(&dash.services, &who.caller, p, include_revoked).await?,
        None => Vec::new(),
    };
    let names = creator_names(&dash.services, &keys).await;
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| key_json(k, names.get(&k.created_by).map_or("", String::as_str)))
        .collect();
    Ok(render::page(
        who,
        "keys",
        "API keys",
        json!({
            "projects": choice.to_json(),
            "project": choice.current_json(),
            "can_write": choice.can_write(),
            "keys": rows,
            "include_revoked": include_revoked,
            "error": extra.error,
            "notice": extra.notice,
            "created": extra.created,
            "groups": forms::group_fields_json(),
        }),
    ))
}

/// Renders the page again with an error, keeping the user where they were.
async fn with_error(dash: &Dash, who: &SignedIn, project: &str, e: &ServiceError) -> Response {
    let extra = Extra {
        error: Some(user_message(e)),
        ..Extra::default()
    };
    inline(e, render_page(dash, who, Some(project), false, extra).await)
}

fn parse_project(raw: &str) -> Result<ProjectId, ServiceError> {
    ProjectId::parse(raw).map_err(|e| ServiceError::Invalid {
        param: Some("project"),
        message: format!("Choose a project: {e}."),
    })
}

fn parse_key(raw: &str) -> Result<KeyId, ServiceError> {
    KeyId::parse(raw).map_err(|e| ServiceError::Invalid {
        param: Some("key_id"),
        message: format!("{e}."),
    })
}

async fn show_secret(
    dash: &Dash,
    who: &SignedIn,
    project: &str,
    created: CreatedKey,
    rotated: bool,
) -> Response {
    let extra = Extra {
        created: Some(json!({
            "name": created.key.name,
            "secret": created.secret.expose(),
            "rotated": rotated,
        })),
        ..Extra::default()
    };
    match render_page(dash, who, Some(project), false, extra).await {
        Ok(r) => r,
        // The key is committed and its secret exists nowhere else: if the
        // page around it cannot be drawn, show the secret alone.
        Err(e) => {
            tracing::warn!(key = %created.key.id, error = ?e, "cannot render the keys page; showing the new secret alone");
            secret_alone(&created)
        }
    }
}

/// A bare page with a new key's secret, for when the full page fails.
fn secret_alone(created: &CreatedKey) -> Response {
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Save your key</title>\
         <h1>Save your key</h1><p>Copy this secret key now: it will not be shown again.</p>\
         <input id=\"new-secret\" class=\"mono\" type=\"text\" readonly value=\"{}\" size=\"60\">\
         <p><a href=\"/api-keys\">Done</a></p>",
        created.secret.expose()
    );
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(html),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    permissions: String,
    /// The Restricted editor's choices, `perm_<group>` (see [`forms::GROUP_FIELDS`]).
    #[serde(flatten)]
    perms: std::collections::HashMap<String, String>,
    /// Empty for never, else a number of days.
    #[serde(default)]
    expires_in_days: String,
}

pub async fn create(
    State(dash): State<Dash>,
    who: SignedIn,
    Form(f): Form<CreateForm>,
) -> Response {
    let result = async {
        let project = parse_project(&f.project)?;
        let permissions = forms::permissions(&f.permissions, |name| {
            f.perms.get(name).map_or("", String::as_str)
        })?;
        let expires_at = forms::opt_count("expires_in_days", "Expiry", &f.expires_in_days)?
            .map(|days| now_unix() + days.clamp(1, 3650) * 86_400);
        let spec = KeySpec {
            name: f.name.clone(),
            permissions: Some(permissions),
            expires_at,
            rate_limits: RateLimits::default(),
            ..KeySpec::default()
        };
        dash.services
            .create_project_key(&who.caller, &project, spec)
            .await
    }
    .await;
    match result {
        Ok(created) => show_secret(&dash, &who, &f.project, created, false).await,
        Err(e) => with_error(&dash, &who, &f.project, &e).await,
    }
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    project: String,
    /// `limits` to go back to the Limits page afterwards.
    #[serde(default)]
    back: String,
    #[serde(default)]
    grace_seconds: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    concurrent: String,
    #[serde(default)]
    budget: String,
    #[serde(default)]
    expires: String,
}

fn back_to(f: &KeyForm, notice: &str) -> Response {
    let page = if f.back == "limits" {
        "/limits"
    } else {
        "/api-keys"
    };
    // Ids are [A-Za-z0-9_] only (checked by parse_project), so safe in a URL.
    Redirect::to(&format!("{page}?project={}&notice={notice}", f.project)).into_response()
}

pub async fn revoke(
    State(dash): State<Dash>,
    who: SignedIn,
    Path(key_id): Path<String>,
    Form(f): Form<KeyForm>,
) -> Response {
    let result = async {
        let project = parse_project(&f.project)?;
        let key = parse_key(&key_id)?;
        dash.services
            .revoke_key(
                &who.caller,
                KeyRef::InProject(&project, &key),
                RevokeReason::User,
                None,
            )
            .await
    }
    .await;
    match result {
        Ok(_) => back_to(&f, "revoked"),
        Err(e) => with_error(&dash, &who, &f.project, &e).await,
    }
}

pub async fn rotate(
    State(dash): State<Dash>,
    who: SignedIn,
    Path(key_id): Path<String>,
    Form(f): Form<KeyForm>,
) -> Response {
    let result = async {
        let project = parse_project(&f.project)?;
        let key = parse_key(&key_id)?;
        let grace =
            forms::opt_count("grace_seconds", "Grace period", &f.grace_seconds)?.unwrap_or(0);
        dash.services
            .rotate_key(&who.caller, KeyRef::InProject(&project, &key), grace)
            .await
    }
    .await;
    match result {
        Ok(created) => show_secret(&dash, &who, &f.project, created, true).await,
        Err(e) => with_error(&dash, &who, &f.project, &e).await,
    }
}

pub async fn edit(
    State(dash): State<Dash>,
    who: SignedIn,
    Path(key_id): Path<String>,
    Form(f): Form<KeyForm>,
) -> Response {
    let result = async {
        let project = parse_project(&f.project)?;
        let key = parse_key(&key_id)?;
        let expires_at = match f.expires.trim() {
            "" => None,
            date => {
                let day = dates::parse_iso(date).ok_or_else(|| ServiceError::Invalid {
                    param: Some("expires"),
                    message: "Expires must be a date, such as 2027-01-31, or empty for never."
                        .into(),
                })?;
                // The key works through the chosen day (UTC).
                let end = day + 86_400;
                if end <= now_unix() {
                    return Err(ServiceError::Invalid {
                        param: Some("expires"),
                        message: "Expires must be today or later; revoke the key to stop it now."
                            .into(),
                    });
                }
                Some(end)
            }
        };
        let patch = KeyPatch {
            name: Some(f.name.clone()),
            expires_at: Some(expires_at),
            rate_limits: forms::limits(&f.rpm, &f.tpm, &f.concurrent)?,
            monthly_budget: Some(forms::opt_usd("budget", "Monthly budget", &f.budget)?),
            ..KeyPatch::default()
        };
        dash.services
            .update_key(&who.caller, KeyRef::InProject(&project, &key), patch)
            .await
    }
    .await;
    match result {
        Ok(_) => back_to(&f, "updated"),
        Err(e) => with_error(&dash, &who, &f.project, &e).await,
    }
}
