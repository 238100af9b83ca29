//! Change notices for caches of keys: in-process hooks fire at once; other
//! processes (the CLI, other replicas) are seen through the audit log, which
//! records every change in the same transaction as the change itself.
//!
//! The audit log's `seq` is a sequence, and PostgreSQL hands out sequence
//! values when a row is inserted, not when its transaction commits: a
//! revocation that takes seq 41 and commits after seq 42 would be skipped by
//! a reader that only asks for `seq > 42`. So the reader remembers every
//! number it skipped (a gap) and asks for those again on each read, until
//! they appear or are old enough that their transaction must have rolled
//! back ([`GAP_PATIENCE`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_core::{AuditTarget, KeyId, ProjectId};

use crate::error::Result;
use crate::Services;

/// Something whose cached copies must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Key(KeyId),
    Project(ProjectId),
}

/// How long a skipped sequence number is asked for again. A transaction
/// open longer than this that then commits a change is seen only when the
/// cache entry expires (five minutes); rolled-back inserts leave gaps that
/// never fill, and are forgotten after this.
pub const GAP_PATIENCE: Duration = Duration::from_secs(15 * 60);

/// The most skipped numbers remembered; past this the oldest are dropped.
const MAX_GAPS: usize = 10_000;

/// The most skipped numbers asked for in one read.
const GAPS_PER_READ: usize = 500;

/// Where a reader of the change feed stands: the highest sequence number
/// seen, and the numbers below it not seen yet, with when they were skipped.
#[derive(Debug, Clone, Default)]
pub struct ChangeCursor {
    high: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl ChangeCursor {
    /// How many skipped numbers are still awaited.
    pub fn gaps(&self) -> usize {
        self.gaps.len()
    }

    /// Takes in the sequence numbers of rows just read (new ones in
    /// ascending order), recording the numbers skipped between them.
    fn advance(&mut self, new: &[i64], found_gaps: &[i64], now: Instant) {
        for seq in found_gaps {
            self.gaps.remove(seq);
        }
        for &seq in new {
            if seq <= self.high {
                continue;
            }
            // A huge jump (a sequence moved by hand) is not tracked number
            // by number; only the numbers just below the new row are.
            let from = (self.high + 1).max(seq - MAX_GAPS as i64);
            for skipped in from..seq {
                self.gaps.insert(skipped, now);
            }
            self.high = seq;
        }
        self.gaps
            .retain(|_, skipped| now.duration_since(*skipped) < GAP_PATIENCE);
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
    }
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
    pub async fn change_cursor(&self) -> Result<ChangeCursor> {
        Ok(ChangeCursor {
            high: self.store.audit_seq_now().await?,
            gaps: BTreeMap::new(),
        })
    }

    /// Changes recorded by any process since `cursor` last read (including
    /// those that committed late with a lower sequence number); moves the
    /// cursor past them.
    pub async fn changes_since(&self, cursor: &mut ChangeCursor) -> Result<Vec<Change>> {
        let awaited: Vec<i64> = cursor.gaps.keys().take(GAPS_PER_READ).copied().collect();
        let late = self.store.audit_targets_at(&awaited).await?;
        let new = self.store.audit_targets_since(cursor.high, 1000).await?;
        let late_seqs: Vec<i64> = late.iter().map(|c| c.seq).collect();
        let new_seqs: Vec<i64> = new.iter().map(|c| c.seq).collect();
        cursor.advance(&new_seqs, &late_seqs, Instant::now());
        Ok(late
            .into_iter()
            .chain(new)
            .filter_map(|c| change_of(c.target_type?, &c.target_id))
            .collect())
    }
}

/// What an audit entry about `id`, of kind `target`, means for caches of
/// keys. Every kind is named: a new one is a compile error here until it is
/// decided whether its changes must drop cached keys.
fn change_of(target: AuditTarget, id: &str) -> Option<Change> {
    match target {
        AuditTarget::ApiKey | AuditTarget::AdminApiKey => KeyId::parse(id).ok().map(Change::Key),
        AuditTarget::Project => ProjectId::parse(id).ok().map(Change::Project),
        // A member removed revokes their keys, each audited on its own;
        // accounts and invitations are not cached by the gateway.
        AuditTarget::User | AuditTarget::ProjectMember | AuditTarget::ProjectInvitation => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_numbers_are_awaited_until_they_appear_or_age_out() {
        let t0 = Instant::now();
        let mut c = ChangeCursor::default();
        c.advance(&[1, 2, 5], &[], t0);
        assert_eq!(c.high, 5);
        assert_eq!(c.gaps.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
        c.advance(&[6], &[4], t0);
        assert_eq!(c.gaps.keys().copied().collect::<Vec<_>>(), vec![3]);
        c.advance(&[], &[], t0 + GAP_PATIENCE);
        assert_eq!(c.gaps(), 0);
        assert_eq!(c.high, 6);
    }

    #[test]
    fn a_huge_jump_tracks_a_bounded_number_of_gaps() {
        let mut c = ChangeCursor::default();
        c.advance(&[i64::MAX / 2], &[], Instant::now());
        assert_eq!(c.gaps(), MAX_GAPS);
        assert_eq!(c.high, i64::MAX / 2);
    }
}
