//! The Projects page: the caller's projects, creating one, and a project's
//! members with their roles (owner, member, reader).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_core::{ProjectId, UserId};
use keyward_service::ServiceError;
use keyward_store::MemberRole;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ProjectChoice;
use crate::dates;
use crate::error::{inline, user_message, DashError};
use crate::render;
use crate::visitor::SignedIn;
use crate::Dash;

#[derive(Deserialize, Default)]
pub struct ProjectsQuery {
    project: Option<String>,
    notice: Option<String>,
}

pub async fn page(
    State(dash): State<Dash>,
    who: SignedIn,
    Query(q): Query<ProjectsQuery>,
) -> Result<Response, DashError> {
    let notice = match q.notice.as_deref() {
        Some("created") => Some("Project created."),
        Some("member") => Some("Members updated."),
        _ => None,
    };
    render_page(&dash, &who, q.project.as_deref(), notice, None).await
}

async fn render_page(
    dash: &Dash,
    who: &SignedIn,
    project: Option<&str>,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, DashError> {
    let choice = ProjectChoice::load(&dash.services, &who.caller, project).await?;
    let members: Vec<Value> = match choice.current_id() {
        Some(id) => dash
            .services
            .project_members(&who.caller, id)
            .await?
            .into_iter()
            .map(|(u, role)| {
                json!({
                    "id": u.id.as_str(),
                    "email": u.email,
                    "role": role.as_str(),
                    "is_you": who.caller.user().is_some_and(|me| me.id == u.id),
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let list: Vec<Value> = choice
        .all
        .iter()
        .map(|(p, role)| {
            json!({
                "id": p.id.as_str(),
                "name": p.name,
                "role": role.as_str(),
                "created": dates::human(p.created_at),
                "selected": Some(&p.id) == choice.current_id(),
            })
        })
        .collect();
    Ok(render::page(
        who,
        "projects",
        "Projects",
        json!({
            "list": list,
            "project": choice.current_json(),
            "is_owner": choice.is_owner(),
            "members": members,
            "roles": ["owner", "member", "reader"],
            "notice": notice,
            "error": error,
        }),
    ))
}

async fn with_error(
    dash: &Dash,
    who: &SignedIn,
    project: Option<&str>,
    e: &ServiceError,
) -> Response {
    inline(
        e,
        render_page(dash, who, project, None, Some(user_message(e))).await,
    )
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
}

pub async fn create(
    State(dash): State<Dash>,
    who: SignedIn,
    Form(f): Form<CreateForm>,
) -> Response {
    match dash.services.create_project(&who.caller, &f.name).await {
        Ok(p) => {
            Redirect::to(&format!("/projects?project={}&notice=created", p.id)).into_response()
        }
        Err(e) => with_error(&dash, &who, None, &e).await,
    }
}

fn parse_project(raw: &str) -> Result<ProjectId, ServiceError> {
    ProjectId::parse(raw).map_err(|e| ServiceError::Invalid {
        param: Some("project"),
        message: format!("{e}."),
    })
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

pub async fn set_member(
    State(dash): State<Dash>,
    who: SignedIn,
    Path(project): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    let result = async {
        let id = parse_project(&project)?;
        let role = MemberRole::parse(&f.role).ok_or_else(|| ServiceError::Invalid {
            param: Some("role"),
            message: "Choose a role: owner, member or reader.".into(),
        })?;
        dash.services
            .set_member(&who.caller, &id, &f.email, role)
            .await?;
        Ok::<_, ServiceError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/projects?project={id}&notice=member")).into_response(),
        Err(e) => with_error(&dash, &who, Some(&project), &e).await,
    }
}

pub async fn remove_member(
    State(dash): State<Dash>,
    who: SignedIn,
    Path((project, user)): Path<(String, String)>,
) -> Response {
    let result = async {
        let id = parse_project(&project)?;
        let user = UserId::parse(&user).map_err(|e| ServiceError::Invalid {
            param: Some("user"),
            message: format!("{e}."),
        })?;
        dash.services.remove_member(&who.caller, &id, &user).await?;
        Ok::<_, ServiceError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/projects?project={id}&notice=member")).into_response(),
        Err(e) => with_error(&dash, &who, Some(&project), &e).await,
    }
}
