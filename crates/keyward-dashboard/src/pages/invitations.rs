//! An invitation link (`/invite?token=…`): the invited person creates their
//! account there, or logs in and accepts. The token travels in the query
//! and in form bodies, never in a path, so access logs never hold it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keyward_service::{Caller, OpenInvitation, Principal, ServiceError};
use serde::Deserialize;
use serde_json::json;

use super::auth::{start, RequestIp};
use crate::dates;
use crate::error::{status_of, user_message, DashError};
use crate::render;
use crate::visitor::{SignedIn, Visitor};
use crate::Dash;

#[derive(Deserialize, Default)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub struct JoinForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

fn render_page(
    open: &OpenInvitation,
    visitor: &Visitor,
    token: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let i = &open.invitation;
    (
        status,
        render::html(
            "invite.html",
            json!({
                "title": format!("Join {}", open.project.name),
                "csrf": visitor.csrf,
                "token": token,
                "project": open.project.name,
                "role": i.role.as_str(),
                "email": i.email,
                "invited_by": open.invited_by,
                "expires": dates::human(i.expires_at),
                "signed_in_as": visitor.caller.as_ref().and_then(|c| c.user()).map(|u| u.email.clone()),
                // Tokens are base62: nothing to escape in the query.
                "login": format!("/login?next=%2Finvite%3Ftoken%3D{token}"),
                "error": error,
            }),
        ),
    )
        .into_response()
}

/// Shows `e` on the invitation's page, or alone when the link no longer works.
async fn with_error(dash: &Dash, visitor: &Visitor, token: &str, e: ServiceError) -> Response {
    match dash.services.open_invitation(token).await {
        Ok(open) => render_page(&open, visitor, token, Some(user_message(&e)), status_of(&e)),
        Err(_) => DashError::from(e).into_response(),
    }
}

pub async fn page(
    State(dash): State<Dash>,
    visitor: Visitor,
    Query(q): Query<TokenQuery>,
) -> Response {
    match dash.services.open_invitation(&q.token).await {
        Ok(open) => render_page(&open, &visitor, &q.token, None, StatusCode::OK),
        Err(e) => DashError::from(e).into_response(),
    }
}

/// Creates the invited person's account and joins the project.
pub async fn sign_up(
    State(dash): State<Dash>,
    visitor: Visitor,
    req_ip: RequestIp,
    Form(f): Form<JoinForm>,
) -> Response {
    let ip = req_ip.0;
    let system = Caller {
        principal: Principal::System,
        source_ip: ip.clone(),
    };
    match dash
        .services
        .sign_up_invited(&system, &f.token, &f.password)
        .await
    {
        Ok((user, project)) => {
            start(
                &dash,
                &user,
                ip,
                &format!("/api-keys?project={}", project.id),
            )
            .await
        }
        Err(e) => with_error(&dash, &visitor, &f.token, e).await,
    }
}

/// The signed-in account accepts an invitation for its email.
pub async fn accept(
    State(dash): State<Dash>,
    who: SignedIn,
    visitor: Visitor,
    Form(f): Form<TokenQuery>,
) -> Response {
    match dash.services.accept_invitation(&who.caller, &f.token).await {
        Ok(project) => Redirect::to(&format!("/api-keys?project={}", project.id)).into_response(),
        Err(e) => with_error(&dash, &visitor, &f.token, e).await,
    }
}
