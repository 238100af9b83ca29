//! Usage and costs, as the OpenAI-shaped usage API, the CLI and the
//! dashboard report them: per time bucket, optionally grouped.

use keyward_core::{time::now_unix, Access, EndpointGroup, KeyId, ProjectId};
use keyward_core::{UsageFilter, UsageRow};

use crate::caller::{Caller, Principal};
use crate::error::{Result, ServiceError};
use crate::Services;

/// The latest time the usage API accepts: the last second of year 9999.
/// Bounding times keeps every bucket computation far from overflow.
pub const LATEST_TIME: i64 = 253_402_300_799;

/// A bucket width the usage API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketWidth {
    Minute,
    Hour,
    Day,
}

impl BucketWidth {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1m" => Some(BucketWidth::Minute),
            "1h" => Some(BucketWidth::Hour),
            "1d" => Some(BucketWidth::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            BucketWidth::Minute => 60,
            BucketWidth::Hour => 3600,
            BucketWidth::Day => 86_400,
        }
    }

    /// OpenAI's default and largest number of buckets per page.
    pub fn page_limits(self) -> (u32, u32) {
        match self {
            BucketWidth::Minute => (60, 1440),
            BucketWidth::Hour => (24, 168),
            BucketWidth::Day => (7, 31),
        }
    }
}

/// A usage question.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub start: i64,
    pub end: Option<i64>,
    pub width: BucketWidth,
    pub by_project: bool,
    pub by_key: bool,
    pub by_model: bool,
    pub project_ids: Vec<ProjectId>,
    pub key_ids: Vec<KeyId>,
    pub models: Vec<String>,
    /// Buckets per page.
    pub limit: u32,
    /// Start of the first bucket of this page (from a previous `next_page`).
    pub page: Option<i64>,
}

/// One time bucket and its groups.
#[derive(Debug, Clone)]
pub struct UsageBucket {
    pub start: i64,
    pub end: i64,
    pub results: Vec<UsageRow>,
}

/// A page of buckets, and where the next page starts.
#[derive(Debug, Clone)]
pub struct UsagePage {
    pub buckets: Vec<UsageBucket>,
    pub next_page: Option<i64>,
}

impl Services {
    /// Usage in the projects the caller may read, bucketed and grouped.
    pub async fn usage(&self, caller: &Caller, q: &UsageQuery) -> Result<UsagePage> {
        let visible = self.usage_projects(caller).await?;
        let projects = if q.project_ids.is_empty() {
            visible
        } else {
            if let Some(p) = q.project_ids.iter().find(|p| !visible.contains(p)) {
                return Err(ServiceError::not_found("project", p));
            }
            q.project_ids.clone()
        };
        let width = q.width.seconds();
        let now = now_unix();
        for (param, t) in [("start_time", Some(q.start)), ("end_time", q.end)] {
            if t.is_some_and(|t| !(0..=LATEST_TIME).contains(&t)) {
                return Err(ServiceError::invalid(
                    param,
                    format!("`{param}` must be Unix seconds from 0 to {LATEST_TIME} (the end of year 9999)."),
                ));
            }
        }
        let end = q.end.unwrap_or(now + 1);
        if end <= q.start {
            return Err(ServiceError::invalid(
                "end_time",
                "`end_time` must be after `start_time` (Unix seconds).",
            ));
        }
        let first = q.page.unwrap_or(q.start);
        let first = first - first.rem_euclid(width);
        let limit = i64::from(q.limit.max(1));
        let page_end = end.min(first.saturating_add(width.saturating_mul(limit)));
        let rows = self
            .store
            .usage(&UsageFilter {
                projects,
                keys: q.key_ids.clone(),
                models: q.models.clone(),
                from: first.max(q.start - q.start.rem_euclid(width)),
                to: page_end,
                bucket_seconds: width,
                by_project: q.by_project,
                by_key: q.by_key,
                by_model: q.by_model,
            })
            .await?;
        let mut buckets: Vec<UsageBucket> = Vec::new();
        let mut t = first;
        while t < page_end {
            buckets.push(UsageBucket {
                start: t,
                end: t + width,
                results: Vec::new(),
            });
            t += width;
        }
        for row in rows {
            if let Some(b) = buckets.iter_mut().find(|b| b.start == row.bucket_start) {
                b.results.push(row);
            }
        }
        Ok(UsagePage {
            buckets,
            next_page: (page_end < end).then_some(page_end),
        })
    }

    /// Projects whose usage the caller may read.
    async fn usage_projects(&self, caller: &Caller) -> Result<Vec<ProjectId>> {
        match &caller.principal {
            Principal::ProjectKey(key) => {
                if !key.allows(EndpointGroup::Usage, Access::Read) {
                    return Err(ServiceError::PermissionDenied {
                        scope: EndpointGroup::Usage.scope(Access::Read),
                        hint: "Check that your restricted API key has the usage permission.",
                    });
                }
                Ok(key.key.project_id.iter().cloned().collect())
            }
            Principal::Cli | Principal::System => Ok(self
                .store
                .all_projects()
                .await?
                .into_iter()
                .map(|p| p.id)
                .collect()),
            Principal::User { user, .. } => self.member_project_ids(&user.id).await,
        }
    }
}
