//! Projects: create, list, retrieve, rename, archive.

use keyward_core::AuditAction;
use keyward_core::Micros;
use keyward_core::{time::now_unix, ProjectId, UserId};
use keyward_core::{Listed, MemberRole, Page, Project, RateLimits};
use serde_json::json;

use crate::audit::{entry, list_error, Target};
use crate::caller::Caller;
use crate::error::{Result, ServiceError};
use crate::keys::LimitsPatch;
use crate::{validate, Services};

/// Changes to a project: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub rate_limits: LimitsPatch,
    pub monthly_budget: Option<Option<Micros>>,
}

impl Services {
    /// Creates a project owned by the calling user.
    pub async fn create_project(&self, caller: &Caller, name: &str) -> Result<Project> {
        let user = caller.require_user("organization.projects.write")?;
        let name = validate::required_name("name", name)?;
        self.insert_project_owned_by(caller, &user.id, name).await
    }

    /// Inserts a new project with `owner` as its first member.
    pub(crate) async fn insert_project_owned_by(
        &self,
        caller: &Caller,
        owner: &UserId,
        name: String,
    ) -> Result<Project> {
        let project = Project {
            id: ProjectId::generate(),
            name,
            created_at: now_unix(),
            archived_at: None,
            rate_limits: RateLimits::default(),
            monthly_budget: None,
        };
        let audit = entry(
            caller,
            AuditAction::ProjectCreated,
            Target {
                id: project.id.as_str(),
                project: Some(&project.id),
                owner: Some(owner),
            },
            json!({ "name": project.name }),
        );
        self.store.insert_project(&project, owner, &audit).await?;
        Ok(project)
    }

    /// The caller's projects, newest first.
    pub async fn list_projects(
        &self,
        caller: &Caller,
        include_archived: bool,
        page: &Page,
    ) -> Result<Listed<Project>> {
        let user = caller.require_user("organization.projects.read")?;
        let listed = self
            .store
            .projects_of(&user.id, include_archived, page)
            .await
            .map_err(list_error(page))?;
        Ok(Listed {
            items: listed.items.into_iter().map(|(p, _)| p).collect(),
            has_more: listed.has_more,
        })
    }

    pub async fn project(&self, caller: &Caller, id: &ProjectId) -> Result<Project> {
        self.project_role(caller, id).await?;
        self.store
            .project(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", id))
    }

    /// Changes a project's name, project-wide rate limits or monthly
    /// budget; owners only.
    pub async fn update_project(
        &self,
        caller: &Caller,
        id: &ProjectId,
        patch: ProjectPatch,
    ) -> Result<Project> {
        let mut project = self.owned_project(caller, id).await?;
        if let Some(name) = &patch.name {
            project.name = validate::required_name("name", name)?;
        }
        project.rate_limits = crate::keys::patch_limits(project.rate_limits, patch.rate_limits)?;
        if let Some(b) = patch.monthly_budget {
            project.monthly_budget = b;
        }
        let audit = entry(
            caller,
            AuditAction::ProjectUpdated,
            Target {
                id: id.as_str(),
                project: Some(id),
                owner: None,
            },
            json!({
                "name": project.name,
                "rate_limits": project.rate_limits,
                "monthly_budget_micros": project.monthly_budget,
            }),
        );
        self.store.update_project(&project, &audit).await?;
        self.changed(crate::Change::Project(id.clone()));
        Ok(project)
    }

    /// Archives a project: its keys stop working and no new ones can be made.
    /// Idempotent; owners only.
    pub async fn archive_project(&self, caller: &Caller, id: &ProjectId) -> Result<Project> {
        let mut project = self.owned_project(caller, id).await?;
        if project.archived_at.is_none() {
            let now = now_unix();
            let audit = entry(
                caller,
                AuditAction::ProjectArchived,
                Target {
                    id: id.as_str(),
                    project: Some(id),
                    owner: None,
                },
                json!({}),
            );
            self.store.archive_project(id, now, &audit).await?;
            self.changed(crate::Change::Project(id.clone()));
            project.archived_at = Some(now);
        }
        Ok(project)
    }

    /// Ids of every project `user` is a member of, archived ones included.
    pub(crate) async fn member_project_ids(&self, user: &UserId) -> Result<Vec<ProjectId>> {
        let all = self.every_project_of(user, true).await?;
        Ok(all.into_iter().map(|(p, _)| p.id).collect())
    }

    /// Every project `user` is a member of, with their role in it, newest
    /// first, read page by page.
    pub(crate) async fn every_project_of(
        &self,
        user: &UserId,
        include_archived: bool,
    ) -> Result<Vec<(Project, MemberRole)>> {
        let mut all = Vec::new();
        let mut page = Page {
            after: None,
            limit: crate::MAX_PAGE,
        };
        loop {
            let Listed { items, has_more } = self
                .store
                .projects_of(user, include_archived, &page)
                .await
                .map_err(list_error(&page))?;
            page.after = items.last().map(|(p, _)| p.id.to_string());
            all.extend(items);
            if !has_more {
                return Ok(all);
            }
        }
    }

    /// Every project, for the operator's CLI.
    pub async fn all_projects(&self) -> Result<Vec<Project>> {
        Ok(self.store.all_projects().await?)
    }

    async fn owned_project(&self, caller: &Caller, id: &ProjectId) -> Result<Project> {
        if self.project_role(caller, id).await? != MemberRole::Owner {
            return Err(ServiceError::PermissionDenied {
                scope: "organization.projects.write".into(),
                hint: "Only a project's owners can rename or archive it.",
            });
        }
        self.store
            .project(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", id))
    }
}
