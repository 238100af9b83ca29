//! Who is calling a service, and what they may reach.

use keyward_core::{Access, EndpointGroup, ProjectId};
use keyward_core::{Actor, MemberRole, User};

use crate::error::{Result, ServiceError};
use crate::keys::ActiveKey;
use crate::Services;

/// The authenticated party behind a call.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A person, through an admin key or a dashboard session: reaches the
    /// projects they are a member of, as far as their role there allows.
    User { user: User, via: Actor },
    /// A project key: reaches its own project only, within its permissions
    /// (and those of every key above it).
    ProjectKey(Box<ActiveKey>),
    /// The operator at the machine, through the CLI: reaches everything.
    Cli,
    /// Keyward itself (expiry sweeps): reaches everything.
    System,
}

/// A principal plus where the call came from, for the audit log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub source_ip: Option<String>,
}

impl Caller {
    pub fn cli() -> Self {
        Caller {
            principal: Principal::Cli,
            source_ip: None,
        }
    }

    /// The actor recorded in the audit log and in `created_by`.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::User { via, .. } => via.clone(),
            Principal::ProjectKey(key) => Actor::Key(key.key.id.clone()),
            Principal::Cli => Actor::Cli,
            Principal::System => Actor::System,
        }
    }

    /// The person acting, if any.
    pub fn user(&self) -> Option<&User> {
        match &self.principal {
            Principal::User { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The user a request acts as, required for account-level operations.
    pub(crate) fn require_user(&self, scope: &str) -> Result<&User> {
        self.user().ok_or_else(|| ServiceError::PermissionDenied {
            scope: scope.to_owned(),
            hint:
                "Account-level operations need an admin key (sk-kwadmin-…) or a dashboard session.",
        })
    }
}

const PROJECT_KEY_HINT: &str =
    "Check that you have the correct role in the project (owner, member, reader), and if you are using a restricted API key, that it has the necessary scopes.";

impl Services {
    /// Checks that `caller` may use the keys of `project` with `needed`
    /// access. A project the caller cannot see at all answers NotFound.
    pub(crate) async fn authorize_keys(
        &self,
        caller: &Caller,
        project: &ProjectId,
        needed: Access,
    ) -> Result<()> {
        let granted = match &caller.principal {
            Principal::Cli | Principal::System => Access::Write,
            Principal::User { user, .. } => match self.store.membership(project, &user.id).await? {
                None => return Err(ServiceError::not_found("project", project)),
                Some(MemberRole::Reader) => Access::Read,
                Some(MemberRole::Member | MemberRole::Owner) => Access::Write,
            },
            Principal::ProjectKey(key) => {
                if key.key.project_id.as_ref() != Some(project) {
                    return Err(ServiceError::not_found("project", project));
                }
                key.lineage()
                    .map(|k| k.permissions.access(EndpointGroup::Keys))
                    .min()
                    .unwrap_or(Access::None)
            }
        };
        if granted >= needed {
            Ok(())
        } else {
            Err(ServiceError::PermissionDenied {
                scope: EndpointGroup::Keys.scope(needed),
                hint: PROJECT_KEY_HINT,
            })
        }
    }

    /// The caller's role in `project`; NotFound when they are not a member.
    pub(crate) async fn project_role(
        &self,
        caller: &Caller,
        project: &ProjectId,
    ) -> Result<MemberRole> {
        match &caller.principal {
            Principal::Cli | Principal::System => Ok(MemberRole::Owner),
            Principal::User { user, .. } => self
                .store
                .membership(project, &user.id)
                .await?
                .ok_or_else(|| ServiceError::not_found("project", project)),
            Principal::ProjectKey(_) => Err(ServiceError::PermissionDenied {
                scope: "organization.projects".into(),
                hint: "Project keys manage only their own project's keys; use an admin key (sk-kwadmin-…) for projects.",
            }),
        }
    }
}
