//! One module per page; each handler reads input, calls services, renders.

pub mod auth;
pub mod invitations;
pub mod keys;
pub mod limits;
pub mod notifications;
pub mod projects;
pub mod usage;

use keyward_core::ProjectId;
use keyward_core::{MemberRole, Project};
use keyward_service::{Caller, Services};
use serde_json::{json, Value};

use crate::error::DashError;

/// The caller's projects and the one a page is about: the one asked for,
/// else the oldest (every account's Default project).
pub struct ProjectChoice {
    pub all: Vec<(Project, MemberRole)>,
    pub current: Option<(Project, MemberRole)>,
}

impl ProjectChoice {
    pub async fn load(
        services: &Services,
        caller: &Caller,
        requested: Option<&str>,
    ) -> Result<Self, DashError> {
        let all = services.projects_with_roles(caller).await?;
        let wanted = requested
            .filter(|r| !r.is_empty())
            .map(ProjectId::parse)
            .transpose()
            .map_err(|e| {
                DashError::Service(keyward_service::ServiceError::Invalid {
                    param: Some("project"),
                    message: format!("{e}."),
                })
            })?;
        let current =
            match wanted {
                Some(id) => Some(all.iter().find(|(p, _)| p.id == id).cloned().ok_or_else(
                    || {
                        DashError::Service(keyward_service::ServiceError::NotFound {
                            what: "project",
                            id: id.to_string(),
                        })
                    },
                )?),
                None => all.last().cloned(),
            };
        Ok(ProjectChoice { all, current })
    }

    pub fn current_id(&self) -> Option<&ProjectId> {
        self.current.as_ref().map(|(p, _)| &p.id)
    }

    /// The caller may change things in the current project (owner or member).
    pub fn can_write(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|(_, r)| *r >= MemberRole::Member)
    }

    pub fn is_owner(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|(_, r)| *r == MemberRole::Owner)
    }

    /// For the project selector.
    pub fn to_json(&self) -> Value {
        let current = self.current_id();
        Value::Array(
            self.all
                .iter()
                .map(|(p, role)| {
                    json!({
                        "id": p.id.as_str(),
                        "name": p.name,
                        "role": role.as_str(),
                        "selected": Some(&p.id) == current,
                    })
                })
                .collect(),
        )
    }

    pub fn current_json(&self) -> Value {
        match &self.current {
            Some((p, role)) => {
                json!({ "id": p.id.as_str(), "name": p.name, "role": role.as_str() })
            }
            None => Value::Null,
        }
    }
}
