//! Log-in and sign-up throttling. A log-in attempt takes its place in the
//! counts for its email and its client's network *before* the password is
//! checked, so parallel attempts cannot get past the limit; a successful
//! log-in gives its place back, so people who know their password never
//! lock anyone out. Sign-ups have counts of their own and never block a
//! log-in. IPv6 clients are counted per /64, the block one subscriber
//! usually holds.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

/// How long attempts are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Log-in attempts allowed per email within the window (successful ones
/// give their place back and clear the email's count).
pub const PER_EMAIL: u32 = 5;
/// Failed log-ins allowed per client network within the window.
pub const PER_NETWORK: u32 = 30;
/// Sign-ups through the open form allowed per client network within the
/// window (invited sign-ups are not counted: each needs its own link).
pub const SIGNUPS_PER_NETWORK: u32 = 30;

pub struct LoginThrottle {
    counts: Cache<String, Arc<AtomicU32>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            counts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }
}

fn email_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

/// The network a client address is counted in: the address itself for
/// IPv4, its /64 for IPv6 (an IPv4-mapped address counts as IPv4).
pub fn network(ip: Option<&str>) -> String {
    match ip.and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(ip) => match keyward_core::net::throttle_block(ip) {
            IpAddr::V6(block) => format!("{block}/64"),
            v4 => v4.to_string(),
        },
        None => ip.unwrap_or("unknown").to_owned(),
    }
}

fn login_network_key(ip: Option<&str>) -> String {
    format!("login:{}", network(ip))
}

fn signup_network_key(ip: Option<&str>) -> String {
    format!("signup:{}", network(ip))
}

fn wait_message(what: &str) -> String {
    format!(
        "{what} Wait {} minutes, then try again.",
        WINDOW.as_secs() / 60
    )
}

/// A log-in attempt holding its place in the counts. Dropped without
/// [`LoginAttempt::succeeded`] or [`LoginAttempt::not_checked`], it stays
/// counted as a failure.
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    email: String,
    network: String,
}

impl LoginAttempt<'_> {
    /// The password was right: the email's failures are forgotten and the
    /// network's place is given back.
    pub fn succeeded(self) {
        self.throttle.counts.invalidate(&self.email);
        self.throttle.give_back(&self.network);
    }

    /// No password was checked (an empty form, a store failure): the
    /// attempt does not count.
    pub fn not_checked(self) {
        self.throttle.give_back(&self.email);
        self.throttle.give_back(&self.network);
    }
}

impl LoginThrottle {
    /// Takes a place under `key` if fewer than `limit` are taken.
    fn take(&self, key: &str, limit: u32) -> bool {
        self.counts
            .get_with_by_ref(key, || Arc::new(AtomicU32::new(0)))
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, key: &str) {
        if let Some(count) = self.counts.get(key) {
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Counts a log-in attempt for `email` from `ip` before its password is
    /// checked; refused, with the message to show, when either count is
    /// full.
    pub fn begin_login(&self, email: &str, ip: Option<&str>) -> Result<LoginAttempt<'_>, String> {
        let email = email_key(email);
        if !self.take(&email, PER_EMAIL) {
            return Err(wait_message(
                "Too many failed log-in attempts for this email.",
            ));
        }
        let network = login_network_key(ip);
        if !self.take(&network, PER_NETWORK) {
            self.give_back(&email);
            return Err(wait_message("Too many failed log-ins from your network."));
        }
        Ok(LoginAttempt {
            throttle: self,
            email,
            network,
        })
    }

    /// Counts a sign-up through the open form from `ip` (each costs a
    /// password hash); refused, with the message to show, when full.
    pub fn begin_signup(&self, ip: Option<&str>) -> Result<(), String> {
        if self.take(&signup_network_key(ip), SIGNUPS_PER_NETWORK) {
            Ok(())
        } else {
            Err(wait_message("Too many sign-ups from your network."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_a_success_clears_the_email() {
        let t = LoginThrottle::default();
        for _ in 0..PER_EMAIL {
            drop(t.begin_login("A@x.io", Some("1.2.3.4")).unwrap());
        }
        assert!(t.begin_login("a@x.io", Some("1.2.3.4")).is_err());
        assert!(t.begin_login("b@x.io", Some("1.2.3.4")).is_ok());
        t.counts.invalidate(&email_key("a@x.io"));
        t.begin_login("a@x.io", Some("1.2.3.4"))
            .unwrap()
            .succeeded();
        for _ in 0..PER_EMAIL {
            t.begin_login("a@x.io", Some("1.2.3.4"))
                .unwrap()
                .succeeded();
        }
        assert!(t.begin_login("a@x.io", Some("1.2.3.4")).is_ok());
    }

    #[test]
    fn places_are_taken_before_the_check_so_parallel_attempts_stop_at_the_limit() {
        let t = LoginThrottle::default();
        let held: Vec<_> = (0..30)
            .filter_map(|_| t.begin_login("v@x.io", Some("1.2.3.4")).ok())
            .collect();
        assert_eq!(held.len(), PER_EMAIL as usize);
    }

    #[test]
    fn successful_log_ins_and_sign_ups_do_not_lock_the_network_out() {
        let t = LoginThrottle::default();
        for n in 0..(PER_NETWORK * 2) {
            t.begin_login(&format!("u{n}@x.io"), Some("1.2.3.4"))
                .unwrap()
                .succeeded();
        }
        for _ in 0..SIGNUPS_PER_NETWORK {
            t.begin_signup(Some("1.2.3.4")).unwrap();
        }
        assert!(t.begin_signup(Some("1.2.3.4")).is_err());
        assert!(t.begin_login("last@x.io", Some("1.2.3.4")).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        assert_eq!(
            network(Some("2001:db8:1:2:aaaa::1")),
            network(Some("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            network(Some("2001:db8:1:2::1")),
            network(Some("2001:db8:1:3::1"))
        );
        assert_eq!(network(Some("::ffff:10.0.0.1")), "10.0.0.1");
        assert_eq!(network(Some("10.0.0.1")), "10.0.0.1");
        let t = LoginThrottle::default();
        for n in 0..PER_NETWORK {
            drop(
                t.begin_login(&format!("u{n}@x.io"), Some(&format!("2001:db8::{n:x}")))
                    .unwrap(),
            );
        }
        assert!(t.begin_login("next@x.io", Some("2001:db8::ffff")).is_err());
        assert!(t.begin_login("next@x.io", Some("2001:db9::1")).is_ok());
    }
}
