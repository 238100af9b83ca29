//! Project members: who belongs to a project and with which role (owner,
//! member, reader). Anyone in a project may see its members; only owners
//! change them, and a project always keeps at least one owner.

use keyward_core::AuditAction;
use keyward_core::{time::now_unix, ProjectId, UserId};
use keyward_core::{KeyRecord, MemberRole, Project, Revocation, RevokeReason, User};
use serde_json::json;

use crate::audit::{entry, Target};
use crate::caller::Caller;
use crate::changes::Change;
use crate::error::{Result, ServiceError};
use crate::keys::revocation_audit;
use crate::Services;

fn member_target<'a>(project: &'a ProjectId, user: &'a UserId) -> Target<'a> {
    Target {
        id: user.as_str(),
        project: Some(project),
        owner: None,
    }
}

impl Services {
    /// The caller's projects with the caller's role in each, newest first
    /// (archived ones left out).
    pub async fn projects_with_roles(&self, caller: &Caller) -> Result<Vec<(Project, MemberRole)>> {
        let user = caller.require_user("organization.projects.read")?;
        self.every_project_of(&user.id, false).await
    }

    /// The caller's role in `project`; NotFound when they are not a member.
    pub async fn role_in(&self, caller: &Caller, project: &ProjectId) -> Result<MemberRole> {
        self.project_role(caller, project).await
    }

    /// A project's members with their roles, owners first.
    pub async fn project_members(
        &self,
        caller: &Caller,
        project: &ProjectId,
    ) -> Result<Vec<(User, MemberRole)>> {
        self.project_role(caller, project).await?;
        let mut out = Vec::new();
        for (id, role) in self.store.members(project).await? {
            if let Some(user) = self.store.user(&id).await? {
                out.push((user, role));
            }
        }
        Ok(out)
    }

    /// Changes the role of one of `project`'s members; owners only.
    /// People join through invitations ([`Services::invite`]), so no form
    /// tells whether an email has an account.
    pub async fn set_member_role(
        &self,
        caller: &Caller,
        project: &ProjectId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<User> {
        self.require_owner(caller, project).await?;
        if self.store.membership(project, user).await?.is_none() {
            return Err(ServiceError::not_found("project member", user));
        }
        let user = self.user(user).await?;
        if role != MemberRole::Owner {
            self.keep_an_owner(project, &user.id).await?;
        }
        let audit = entry(
            caller,
            AuditAction::MemberSet,
            member_target(project, &user.id),
            json!({ "email": user.email, "role": role.as_str() }),
        );
        self.store
            .upsert_member(project, &user.id, role, now_unix(), &audit)
            .await?;
        Ok(user)
    }

    /// Removes a member from `project`; owners only.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        project: &ProjectId,
        user: &UserId,
    ) -> Result<()> {
        self.require_owner(caller, project).await?;
        self.keep_an_owner(project, user).await?;
        let audit = entry(
            caller,
            AuditAction::MemberRemoved,
            member_target(project, user),
            json!({}),
        );
        // Their keys in the project end with their membership, in the same
        // transaction (keys made under them die with them).
        let revocation = Revocation {
            at: now_unix(),
            by: caller.actor().label(),
            reason: RevokeReason::MemberRemoved,
            note: None,
        };
        let key_audit = |key: &KeyRecord| revocation_audit(caller, key, &revocation);
        let Some(revoked) = self
            .store
            .remove_member(project, user, &audit, &revocation, &key_audit)
            .await?
        else {
            return Err(ServiceError::not_found("project member", user));
        };
        for id in revoked {
            self.changed(Change::Key(id));
        }
        Ok(())
    }

    pub(crate) async fn require_owner(&self, caller: &Caller, project: &ProjectId) -> Result<()> {
        if self.project_role(caller, project).await? == MemberRole::Owner {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied {
                scope: "organization.projects.write".into(),
                hint: "Only a project's owners can change its members.",
            })
        }
    }

    /// Fails if `user` is the project's only owner (so demoting or removing
    /// them would leave nobody able to manage it).
    async fn keep_an_owner(&self, project: &ProjectId, user: &UserId) -> Result<()> {
        let owners: Vec<UserId> = self
            .store
            .members(project)
            .await?
            .into_iter()
            .filter(|(_, r)| *r == MemberRole::Owner)
            .map(|(u, _)| u)
            .collect();
        if owners.len() == 1 && owners[0] == *user {
            return Err(ServiceError::Invalid {
                param: Some("role"),
                message: "A project needs at least one owner: make someone else an owner first."
                    .into(),
            });
        }
        Ok(())
    }
}
