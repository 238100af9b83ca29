//! Log-in throttling: after too many failed attempts for one email, or from
//! one address, further attempts are refused for a while without checking
//! the password, so passwords cannot be guessed at speed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed log-ins allowed per email within the window.
pub const PER_EMAIL: u32 = 5;
/// Failed log-ins (and sign-ups) allowed per client address within the window.
pub const PER_IP: u32 = 30;

pub struct LoginThrottle {
    failures: Cache<String, Arc<AtomicU32>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }
}

fn email_key(email: &str) -> String {
    format!("email:{}", email.trim().to_lowercase())
}

fn ip_key(ip: Option<&str>) -> String {
    format!("ip:{}", ip.unwrap_or("unknown"))
}

impl LoginThrottle {
    fn count(&self, key: &str) -> u32 {
        self.failures
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn bump(&self, key: String) {
        self.failures
            .get_with(key, || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a log-in for `email` from `ip` may be tried now; if not, the
    /// message to show.
    pub fn check(&self, email: &str, ip: Option<&str>) -> Result<(), String> {
        let minutes = WINDOW.as_secs() / 60;
        if self.count(&email_key(email)) >= PER_EMAIL {
            return Err(format!(
                "Too many failed log-in attempts for this email. Wait {minutes} minutes, then try again."
            ));
        }
        if self.count(&ip_key(ip)) >= PER_IP {
            return Err(format!(
                "Too many attempts from your network. Wait {minutes} minutes, then try again."
            ));
        }
        Ok(())
    }

    /// Records a failed log-in (or any sign-up, which costs a password hash).
    pub fn failed(&self, email: Option<&str>, ip: Option<&str>) {
        if let Some(email) = email {
            self.bump(email_key(email));
        }
        self.bump(ip_key(ip));
    }

    /// A successful log-in clears the email's failures.
    pub fn succeeded(&self, email: &str) {
        self.failures.invalidate(&email_key(email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit() {
        let t = LoginThrottle::default();
        for _ in 0..PER_EMAIL {
            assert!(t.check("A@x.io", Some("1.2.3.4")).is_ok());
            t.failed(Some("a@x.io"), Some("1.2.3.4"));
        }
        assert!(t.check("a@x.io", Some("1.2.3.4")).is_err());
        assert!(t.check("b@x.io", Some("1.2.3.4")).is_ok());
        t.succeeded("a@x.io");
        assert!(t.check("a@x.io", Some("1.2.3.4")).is_ok());
    }
}
