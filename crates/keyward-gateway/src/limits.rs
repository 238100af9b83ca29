//! Per-key rate limits: requests and tokens per minute (GCRA, one TAT per
//! bucket) and concurrent requests. Behind the [`Limiter`] trait so that a
//! shared (Redis) implementation can replace the in-process one for
//! several replicas.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use keyward_core::gcra::{self, Decision, Quota};
use keyward_core::{KeyId, ProjectId};

use crate::table::Table;

/// Whose allowance a bucket holds: one key's, or its whole project's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(KeyId),
    Project(ProjectId),
    /// An unauthenticated caller, e.g. of the public exposure report.
    Ip(std::net::IpAddr),
}

/// What a bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Requests,
    Tokens,
}

/// Rate-limit state shared by the gateway's handlers.
pub trait Limiter: Send + Sync {
    /// Takes `n` units from the key's bucket if they conform.
    fn take(&self, who: &Subject, dim: Dimension, quota: Quota, n: u64) -> Decision;
    /// Settles a bucket after the fact: gives back unused units (`delta` < 0)
    /// or charges extra ones (`delta` > 0) without a check.
    fn adjust(&self, who: &Subject, dim: Dimension, quota: Quota, delta: i64);
    /// Counts a request in flight; `None` when `who` is at `max`.
    fn enter(&self, who: &Subject, max: u64) -> Option<InFlight>;
}

/// One request in flight; leaving it (drop) frees the slot.
pub struct InFlight(Arc<Buckets>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One subject's state: a GCRA theoretical arrival time per dimension, and
/// its requests in flight.
#[derive(Default)]
pub struct Buckets {
    requests: AtomicU64,
    tokens: AtomicU64,
    in_flight: AtomicI64,
}

impl Buckets {
    fn tat(&self, dim: Dimension) -> &AtomicU64 {
        match dim {
            Dimension::Requests => &self.requests,
            Dimension::Tokens => &self.tokens,
        }
    }

    /// Full buckets and nothing in flight: forgetting them changes nothing.
    fn at_rest(_: &Subject, b: &Buckets) -> bool {
        let now = now_nanos();
        b.in_flight.load(Ordering::Acquire) == 0
            && b.requests.load(Ordering::Acquire) <= now
            && b.tokens.load(Ordering::Acquire) <= now
    }
}

/// The in-process limiter. Buckets at rest (full, nothing in flight) are
/// forgotten as the table grows.
pub struct LocalLimiter {
    subjects: Table<Subject, Buckets>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            subjects: Table::new(Buckets::at_rest),
        }
    }
}

/// Nanoseconds on a monotonic clock, starting above zero.
pub fn now_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    start.elapsed().as_nanos() as u64 + 1_000_000_000_000
}

impl LocalLimiter {
    fn buckets(&self, who: &Subject) -> Arc<Buckets> {
        self.subjects.get_or_make(who, Buckets::default)
    }
}

impl Limiter for LocalLimiter {
    fn take(&self, who: &Subject, dim: Dimension, quota: Quota, n: u64) -> Decision {
        let buckets = self.buckets(who);
        let bucket = buckets.tat(dim);
        let now = now_nanos();
        let mut tat = bucket.load(Ordering::Acquire);
        loop {
            let decision = gcra::check(quota, tat, now, n);
            if !decision.allowed {
                return decision;
            }
            match bucket.compare_exchange_weak(
                tat,
                decision.tat,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }

    fn adjust(&self, who: &Subject, dim: Dimension, quota: Quota, delta: i64) {
        if delta == 0 {
            return;
        }
        let buckets = self.buckets(who);
        let now = now_nanos();
        let _ = buckets
            .tat(dim)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(if delta < 0 {
                    gcra::refund(quota, tat, now, delta.unsigned_abs())
                } else {
                    gcra::check(
                        Quota {
                            burst: u64::MAX / 2,
                            ..quota
                        },
                        tat,
                        now,
                        delta as u64,
                    )
                    .tat
                })
            });
    }

    fn enter(&self, who: &Subject, max: u64) -> Option<InFlight> {
        let buckets = self.buckets(who);
        let now = buckets.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InFlight(buckets);
        (now as u64 <= max).then_some(guard)
    }
}

/// `1s`, `6m0s`, `250ms`: how OpenAI writes reset times.
pub fn format_reset(nanos: u64) -> String {
    let mut text = String::with_capacity(8);
    write_reset(nanos, &mut text);
    text
}

/// [`format_reset`], written to `out`.
pub fn write_reset(nanos: u64, out: &mut impl std::fmt::Write) {
    let ms = nanos.div_ceil(1_000_000);
    let _ = if ms < 1000 {
        // The usual case, on every response: no formatting machinery.
        out.write_str(itoa::Buffer::new().format(ms))
            .and_then(|()| out.write_str("ms"))
    } else if ms < 60_000 {
        let secs = format!("{:.3}", ms as f64 / 1000.0);
        write!(out, "{}s", secs.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let whole = ms / 1000;
        write!(out, "{}m{}s", whole / 60, whole % 60)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(17_000_000), "17ms");
        assert_eq!(format_reset(1_000_000_000), "1s");
        assert_eq!(format_reset(1_500_000_000), "1.5s");
        assert_eq!(format_reset(360_000_000_000), "6m0s");
    }

    #[test]
    fn concurrency_slots_are_freed_on_drop() {
        let l = LocalLimiter::default();
        let k = Subject::Key(KeyId::generate());
        let a = l.enter(&k, 2).unwrap();
        let _b = l.enter(&k, 2).unwrap();
        assert!(l.enter(&k, 2).is_none());
        drop(a);
        assert!(l.enter(&k, 2).is_some());
    }

    #[test]
    fn tokens_settle_both_ways() {
        let l = LocalLimiter::default();
        let k = Subject::Project(ProjectId::generate());
        let q = Quota::per_minute_bursty(1000);
        assert!(l.take(&k, Dimension::Tokens, q, 900).allowed);
        assert!(!l.take(&k, Dimension::Tokens, q, 200).allowed);
        l.adjust(&k, Dimension::Tokens, q, -500);
        assert!(l.take(&k, Dimension::Tokens, q, 200).allowed);
        l.adjust(&k, Dimension::Tokens, q, 400);
        assert!(!l.take(&k, Dimension::Tokens, q, 100).allowed);
    }
}
