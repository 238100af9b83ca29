//! Dashboard sessions: a random token in the browser's cookie, only its
//! SHA-256 in the store. Logging out deletes the row, so a copied cookie
//! stops working at once.

use keyward_core::time::now_unix;
use keyward_core::{Actor, Session, User};

use crate::caller::{Caller, Principal};
use crate::error::Result;
use crate::token::{token_hash, SecretToken};
use crate::Services;

/// How long a session lasts after logging in: 14 days.
pub const SESSION_SECONDS: i64 = 14 * 86_400;

/// A session token as the browser holds it (in its cookie only).
pub type SessionToken = SecretToken;

/// The stored form of a session token: hex SHA-256.
pub fn session_hash(token: &str) -> String {
    token_hash(token)
}

impl Services {
    /// Starts a session for `user` (who has just proved who they are) and
    /// returns the token to put in the cookie.
    pub async fn start_session(
        &self,
        user: &User,
        source_ip: Option<String>,
    ) -> Result<SessionToken> {
        let now = now_unix();
        // Housekeeping on log-in keeps the table small without a sweeper.
        self.store.delete_expired_sessions(now).await?;
        let token = SessionToken::generate();
        self.store
            .insert_session(&Session {
                token_hash: token.hash(),
                user_id: user.id.clone(),
                created_at: now,
                expires_at: now + SESSION_SECONDS,
                source_ip,
            })
            .await?;
        Ok(token)
    }

    /// The caller a session token stands for, if the session exists and has
    /// not expired.
    pub async fn session_caller(
        &self,
        token: &str,
        source_ip: Option<String>,
    ) -> Result<Option<Caller>> {
        let hash = session_hash(token);
        let Some(session) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        if session.expires_at <= now_unix() {
            self.store.delete_session(&hash).await?;
            return Ok(None);
        }
        let Some(user) = self.store.user(&session.user_id).await? else {
            return Ok(None);
        };
        Ok(Some(Caller {
            principal: Principal::User {
                via: Actor::User(user.id.clone()),
                user,
            },
            source_ip,
        }))
    }

    /// Ends the session `token` belongs to (log out). Ending an unknown or
    /// ended session is not an error.
    pub async fn end_session(&self, token: &str) -> Result<()> {
        self.store.delete_session(&session_hash(token)).await?;
        Ok(())
    }
}
