//! The generic cell rate algorithm: one "theoretical arrival time" (TAT)
//! per bucket, so a limit costs one integer of state per key.
//!
//! A limit of `limit` units per `period` emits one unit every
//! `T = period / limit`. A bucket tolerates a burst of `burst` units; a
//! request of `n` units conforms when `TAT' = max(TAT, now) + n·T` is no
//! more than `burst·T` ahead of now. In any interval of length L at most
//! `L / T + burst` units conform, so requests-per-minute limits use a burst
//! of `ceil(limit / 60)` (OpenAI's per-second quantisation): at most
//! `limit + ceil(limit / 60)` in any minute.

/// One limit: `limit` units per `period_nanos`, with a burst of `burst` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub burst: u64,
    pub period_nanos: u64,
}

const MINUTE_NANOS: u64 = 60_000_000_000;

impl Quota {
    /// Requests per minute, quantised per second.
    pub fn per_minute_smooth(limit: u64) -> Self {
        let limit = limit.max(1);
        Quota {
            limit,
            burst: limit.div_ceil(60),
            period_nanos: MINUTE_NANOS,
        }
    }

    /// Tokens per minute: the whole minute's allowance may be used at once,
    /// since one request can need many tokens.
    pub fn per_minute_bursty(limit: u64) -> Self {
        let limit = limit.max(1);
        Quota {
            limit,
            burst: limit,
            period_nanos: MINUTE_NANOS,
        }
    }

    fn interval(&self) -> u128 {
        u128::from(self.period_nanos) / u128::from(self.limit)
    }
}

/// The answer to a request for `n` units at time `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket's new TAT (unchanged when denied).
    pub tat: u64,
    /// Units that could still be taken right now.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset_nanos: u64,
    /// When denied: nanoseconds until the request would conform.
    pub retry_after_nanos: u64,
}

/// Decides whether `n` units may be taken from a bucket whose TAT is `tat`
/// (0 for a new bucket). Times are nanoseconds on a monotonic clock.
pub fn check(quota: Quota, tat: u64, now: u64, n: u64) -> Decision {
    let t = quota.interval();
    let tolerance = t * u128::from(quota.burst);
    let now_w = u128::from(now);
    let base = u128::from(tat).max(now_w);
    let new_tat = base + t * u128::from(n);
    let ahead = new_tat - now_w;
    let remaining_after = |tat_w: u128| -> u64 {
        let used = tat_w.saturating_sub(now_w);
        (tolerance.saturating_sub(used) / t.max(1)) as u64
    };
    if ahead <= tolerance {
        Decision {
            allowed: true,
            tat: new_tat as u64,
            remaining: remaining_after(new_tat),
            reset_nanos: ahead as u64,
            retry_after_nanos: 0,
        }
    } else {
        Decision {
            allowed: false,
            tat,
            remaining: remaining_after(base),
            reset_nanos: (base - now_w) as u64,
            retry_after_nanos: (ahead - tolerance) as u64,
        }
    }
}

/// Gives back `n` units taken earlier (e.g. tokens estimated but not used).
pub fn refund(quota: Quota, tat: u64, now: u64, n: u64) -> u64 {
    let back = (quota.interval() * u128::from(n)) as u64;
    tat.saturating_sub(back).max(now.min(tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn admitted(quota: Quota, arrivals: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut tat = 0;
        let mut ok = Vec::new();
        for now in arrivals {
            let d = check(quota, tat, now, 1);
            if d.allowed {
                tat = d.tat;
                ok.push(now);
            }
        }
        ok
    }

    #[test]
    fn at_most_limit_plus_burst_in_any_minute_under_overload() {
        for limit in [1u64, 5, 10, 60, 100] {
            let quota = Quota::per_minute_smooth(limit);
            // 10x overload for three minutes, starting at an arbitrary time.
            let start = 1_000 * SEC;
            let step = 60 * SEC / (limit * 10);
            let ok = admitted(quota, (0..limit * 30).map(|i| start + i * step));
            for (i, &t) in ok.iter().enumerate() {
                let in_window = ok[i..].iter().take_while(|&&u| u < t + 60 * SEC).count() as u64;
                assert!(
                    in_window <= limit + quota.burst,
                    "limit {limit}: {in_window} in one minute"
                );
            }
            // And the limit is actually reached over the three minutes.
            assert!(
                ok.len() as u64 >= 3 * limit,
                "limit {limit}: only {}",
                ok.len()
            );
        }
    }

    #[test]
    fn denial_says_when_to_retry_and_how_much_is_left() {
        let q = Quota::per_minute_smooth(60); // one a second, burst 1
        let d1 = check(q, 0, 10 * SEC, 1);
        assert!(d1.allowed);
        assert_eq!(d1.remaining, 0);
        let d2 = check(q, d1.tat, 10 * SEC + SEC / 2, 1);
        assert!(!d2.allowed);
        assert_eq!(d2.retry_after_nanos, SEC / 2);
        let d3 = check(q, d1.tat, 11 * SEC, 1);
        assert!(d3.allowed);
    }

    #[test]
    fn bursty_quota_takes_a_large_request_and_refunds() {
        let q = Quota::per_minute_bursty(10_000);
        let d = check(q, 0, SEC, 8_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2_000);
        assert!(!check(q, d.tat, SEC, 3_000).allowed);
        let tat = refund(q, d.tat, SEC, 6_000);
        assert!(check(q, tat, SEC, 3_000).allowed);
    }
}
