//! Change notices for caches of keys: in-process hooks fire at once; other
//! processes (the CLI, other replicas) are seen through the audit log, which
//! records every change in the same transaction as the change itself.

use std::sync::Arc;

use keyward_core::{KeyId, ProjectId};

use crate::error::Result;
use crate::Services;

/// Something whose cached copies must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Key(KeyId),
    Project(ProjectId),
}

pub(crate) type Hook = Arc<dyn Fn(&Change) + Send + Sync>;

impl Services {
    /// Calls `hook` after every change made through these services.
    pub fn on_change(&self, hook: impl Fn(&Change) + Send + Sync + 'static) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(hook));
    }

    pub(crate) fn changed(&self, change: Change) {
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone();
        for hook in hooks {
            hook(&change);
        }
    }

    /// Where the change feed stands now.
    pub async fn change_cursor(&self) -> Result<i64> {
        Ok(self.store.audit_seq_now().await?)
    }

    /// Changes recorded after `cursor` by any process, and the new cursor.
    pub async fn changes_since(&self, cursor: i64) -> Result<(Vec<Change>, i64)> {
        let rows = self.store.audit_targets_since(cursor, 1000).await?;
        let next = rows.last().map_or(cursor, |(seq, _, _)| *seq);
        let changes = rows
            .into_iter()
            .filter_map(|(_, kind, id)| match kind.as_str() {
                "api_key" | "admin_api_key" => KeyId::parse(&id).ok().map(Change::Key),
                "project" => ProjectId::parse(&id).ok().map(Change::Project),
                _ => None,
            })
            .collect();
        Ok((changes, next))
    }
}
