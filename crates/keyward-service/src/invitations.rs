//! Invitations: a project's owners invite people by email. The link is
//! shown once (and mailed when SMTP is set up); it works once, for seven
//! days, and only for the account with that email, which it also lets sign
//! up when sign-up is closed. Inviting answers the same whether or not the
//! email has an account, so the form cannot be used to find out.

use keyward_core::AuditAction;
use keyward_core::{time::now_unix, InvitationId, ProjectId};
use keyward_core::{Invitation, MemberRole, Project, User, UserRole};
use serde_json::json;

use crate::accounts::NewAccount;
use crate::audit::{entry, Target};
use crate::caller::Caller;
use crate::error::{Result, ServiceError};
use crate::token::{token_hash, SecretToken};
use crate::{validate, Services};

/// How long an invitation link works: 7 days.
pub const INVITATION_SECONDS: i64 = 7 * 86_400;

/// An invitation just made: its link's token exists only here.
#[derive(Debug)]
pub struct CreatedInvitation {
    pub invitation: Invitation,
    pub project: Project,
    /// Who invited (for the email).
    pub invited_by: String,
    pub token: SecretToken,
}

/// What an invitation link leads to.
#[derive(Debug, Clone)]
pub struct OpenInvitation {
    pub invitation: Invitation,
    pub project: Project,
    /// The inviter's email.
    pub invited_by: String,
}

fn unusable() -> ServiceError {
    ServiceError::invalid(
        "invitation",
        "This invitation link does not work: it was used already, it expired (links last 7 days), \
         or it was copied incompletely. Ask the project's owner for a new one.",
    )
}

fn invitation_target<'a>(id: &'a str, project: &'a ProjectId) -> Target<'a> {
    Target {
        id,
        project: Some(project),
        owner: None,
    }
}

impl Services {
    /// Invites `email` to `project` as `role`; owners only. The answer is
    /// the same whether or not `email` has an account.
    pub async fn invite(
        &self,
        caller: &Caller,
        project: &ProjectId,
        email: &str,
        role: MemberRole,
    ) -> Result<CreatedInvitation> {
        self.require_owner(caller, project).await?;
        let inviter = caller.require_user("organization.projects.write")?;
        let email = validate::email(email)?;
        let project = self
            .store
            .project(project)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", project))?;
        let now = now_unix();
        let token = SecretToken::generate();
        let invitation = Invitation {
            id: InvitationId::generate(),
            token_hash: token.hash(),
            project_id: project.id.clone(),
            email,
            role,
            invited_by: inviter.id.clone(),
            created_at: now,
            expires_at: now + INVITATION_SECONDS,
            accepted_at: None,
            accepted_by: None,
        };
        let audit = entry(
            caller,
            AuditAction::InvitationCreated,
            invitation_target(invitation.id.as_str(), &project.id),
            json!({ "email": invitation.email, "role": role.as_str(), "expires_at": invitation.expires_at }),
        );
        self.store.insert_invitation(&invitation, &audit).await?;
        Ok(CreatedInvitation {
            invitation,
            project,
            invited_by: inviter.email.clone(),
            token,
        })
    }

    /// A project's invitations not used yet, newest first; owners only.
    pub async fn pending_invitations(
        &self,
        caller: &Caller,
        project: &ProjectId,
    ) -> Result<Vec<Invitation>> {
        self.require_owner(caller, project).await?;
        Ok(self.store.pending_invitations(project, now_unix()).await?)
    }

    /// Withdraws an unused invitation; owners only.
    pub async fn cancel_invitation(
        &self,
        caller: &Caller,
        project: &ProjectId,
        id: &InvitationId,
    ) -> Result<()> {
        self.require_owner(caller, project).await?;
        let audit = entry(
            caller,
            AuditAction::InvitationDeleted,
            invitation_target(id.as_str(), project),
            json!({}),
        );
        if self.store.delete_invitation(project, id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::not_found("invitation", id))
        }
    }

    /// The invitation a link's token stands for, if it can still be used.
    pub async fn open_invitation(&self, token: &str) -> Result<OpenInvitation> {
        let invitation = self
            .store
            .invitation(&token_hash(token))
            .await?
            .filter(|i| i.accepted_at.is_none() && i.expires_at > now_unix())
            .ok_or_else(unusable)?;
        let project = self
            .store
            .project(&invitation.project_id)
            .await?
            .filter(|p| p.archived_at.is_none())
            .ok_or_else(unusable)?;
        let invited_by = self
            .store
            .user(&invitation.invited_by)
            .await?
            .map(|u| u.email)
            .unwrap_or_default();
        Ok(OpenInvitation {
            invitation,
            project,
            invited_by,
        })
    }

    /// The signed-in caller accepts an invitation meant for their email:
    /// they join its project with its role. Returns the project.
    pub async fn accept_invitation(&self, caller: &Caller, token: &str) -> Result<Project> {
        let user = caller.require_user("organization.projects.read")?;
        let open = self.open_invitation(token).await?;
        if open.invitation.email != user.email {
            return Err(ServiceError::invalid(
                "invitation",
                format!(
                    "This invitation is for {}, and you are logged in as {}. Log out, then open the link again and log in or sign up as {}.",
                    open.invitation.email, user.email, open.invitation.email
                ),
            ));
        }
        self.use_invitation(caller, user, &open).await?;
        Ok(open.project)
    }

    /// Creates the invited person's account (with the invitation's email)
    /// and makes them a member: the way in when sign-up is closed. Returns
    /// the account and the project they joined.
    pub async fn sign_up_invited(
        &self,
        caller: &Caller,
        token: &str,
        password: &str,
    ) -> Result<(User, Project)> {
        let open = self.open_invitation(token).await?;
        let (user, _) = self
            .create_account(
                caller,
                NewAccount {
                    email: &open.invitation.email,
                    password,
                    role: Some(UserRole::User),
                },
            )
            .await
            .map_err(|e| match e {
                ServiceError::Conflict(_) => ServiceError::Conflict(format!(
                    "{} has a Keyward account already: log in with it, then open this link again to accept.",
                    open.invitation.email
                )),
                other => other,
            })?;
        self.use_invitation(caller, &user, &open).await?;
        Ok((user, open.project))
    }

    async fn use_invitation(
        &self,
        caller: &Caller,
        user: &User,
        open: &OpenInvitation,
    ) -> Result<()> {
        let i = &open.invitation;
        let audit = entry(
            caller,
            AuditAction::InvitationAccepted,
            invitation_target(i.id.as_str(), &i.project_id),
            json!({ "email": i.email, "role": i.role.as_str(), "user_id": user.id.as_str() }),
        );
        self.store
            .accept_invitation(&i.token_hash, &user.id, now_unix(), &audit)
            .await?
            .map(|_| ())
            .ok_or_else(unusable)
    }
}
