//! The Projects page: the caller's projects, creating one, and a project's
//! members with their roles (owner, member, reader). Owners invite people
//! by email: the answer is the same whether or not the email has an
//! account, and the link is shown once, on the page that made it.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_core::MemberRole;
use keyward_core::{InvitationId, ProjectId, UserId};
use keyward_service::{CreatedInvitation, ServiceError};
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
        Some("cancelled") => Some("Invitation withdrawn: its link no longer works."),
        _ => None,
    };
    render_page(
        &dash,
        &who,
        q.project.as_deref(),
        Shown {
            notice,
            ..Shown::default()
        },
    )
    .await
}

/// What a page shows besides the project: a notice, an error, or the
/// invitation link just made.
#[derive(Default)]
struct Shown<'a> {
    notice: Option<&'a str>,
    error: Option<String>,
    invited: Option<Value>,
}

async fn render_page(
    dash: &Dash,
    who: &SignedIn,
    project: Option<&str>,
    shown: Shown<'_>,
) -> Result<Response, DashError> {
    let choice = ProjectChoice::load(&dash.services, &who.caller, project).await?;
    let invitations: Vec<Value> = match choice.current_id() {
        Some(id) if choice.is_owner() => dash
            .services
            .pending_invitations(&who.caller, id)
            .await?
            .into_iter()
            .map(|i| {
                json!({
                    "id": i.id.as_str(),
                    "email": i.email,
                    "role": i.role.as_str(),
                    "expires": dates::human(i.expires_at),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
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
            "invitations": invitations,
            "invited": shown.invited,
            "notice": shown.notice,
            "error": shown.error,
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
        render_page(
            dash,
            who,
            project,
            Shown {
                error: Some(user_message(e)),
                ..Shown::default()
            },
        )
        .await,
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

fn parse_role(raw: &str) -> Result<MemberRole, ServiceError> {
    MemberRole::parse(raw).ok_or_else(|| ServiceError::Invalid {
        param: Some("role"),
        message: "Choose a role: owner, member or reader.".into(),
    })
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// The email that carries an invitation link.
fn invitation_email(created: &CreatedInvitation, link: &str) -> (String, String) {
    let i = &created.invitation;
    (
        format!("You are invited to {} on Keyward", created.project.name),
        format!(
            "{inviter} invited you to the project \"{project}\" on Keyward as {role}.\n\n\
             Open this link to create your account, or to log in and accept:\n\n{link}\n\n\
             It works once and expires on {expires} (UTC). If you did not expect it,\n\
             ignore this email.\n",
            inviter = created.invited_by,
            project = created.project.name,
            role = i.role.as_str(),
            expires = dates::human(i.expires_at),
        ),
    )
}

pub async fn invite(
    State(dash): State<Dash>,
    who: SignedIn,
    headers: HeaderMap,
    Path(project): Path<String>,
    Form(f): Form<InviteForm>,
) -> Response {
    let result = async {
        let id = parse_project(&project)?;
        let role = parse_role(&f.role)?;
        dash.services.invite(&who.caller, &id, &f.email, role).await
    }
    .await;
    let created = match result {
        Ok(created) => created,
        Err(e) => return with_error(&dash, &who, Some(&project), &e).await,
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let link = format!(
        "{}/invite?token={}",
        dash.settings.site.base_url(host),
        created.token.expose()
    );
    let mailed = match &dash.settings.mailer {
        Some(mailer) => {
            let (subject, body) = invitation_email(&created, &link);
            mailer.send(&created.invitation.email, &subject, body);
            true
        }
        None => false,
    };
    let invited = json!({
        "email": created.invitation.email,
        "role": created.invitation.role.as_str(),
        "link": link,
        "mailed": mailed,
        "expires": dates::human(created.invitation.expires_at),
    });
    let page = render_page(
        &dash,
        &who,
        Some(created.project.id.as_str()),
        Shown {
            invited: Some(invited),
            ..Shown::default()
        },
    )
    .await;
    page.unwrap_or_else(IntoResponse::into_response)
}

pub async fn cancel_invitation(
    State(dash): State<Dash>,
    who: SignedIn,
    Path((project, invitation)): Path<(String, String)>,
) -> Response {
    let result = async {
        let id = parse_project(&project)?;
        let invitation = InvitationId::parse(&invitation).map_err(|e| ServiceError::Invalid {
            param: Some("invitation"),
            message: format!("{e}."),
        })?;
        dash.services
            .cancel_invitation(&who.caller, &id, &invitation)
            .await?;
        Ok::<_, ServiceError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/projects?project={id}&notice=cancelled")).into_response(),
        Err(e) => with_error(&dash, &who, Some(&project), &e).await,
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn set_role(
    State(dash): State<Dash>,
    who: SignedIn,
    Path((project, user)): Path<(String, String)>,
    Form(f): Form<RoleForm>,
) -> Response {
    let result = async {
        let id = parse_project(&project)?;
        let user = parse_user(&user)?;
        let role = parse_role(&f.role)?;
        dash.services
            .set_member_role(&who.caller, &id, &user, role)
            .await?;
        Ok::<_, ServiceError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/projects?project={id}&notice=member")).into_response(),
        Err(e) => with_error(&dash, &who, Some(&project), &e).await,
    }
}

fn parse_user(raw: &str) -> Result<UserId, ServiceError> {
    UserId::parse(raw).map_err(|e| ServiceError::Invalid {
        param: Some("user"),
        message: format!("{e}."),
    })
}

pub async fn remove_member(
    State(dash): State<Dash>,
    who: SignedIn,
    Path((project, user)): Path<(String, String)>,
) -> Response {
    let result = async {
        let id = parse_project(&project)?;
        let user = parse_user(&user)?;
        dash.services.remove_member(&who.caller, &id, &user).await?;
        Ok::<_, ServiceError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/projects?project={id}&notice=member")).into_response(),
        Err(e) => with_error(&dash, &who, Some(&project), &e).await,
    }
}
