//! Exposed keys: whoever holds a key may report it (holding it is proof
//! enough to kill it), and so may secret-scanning partners. A real, active
//! key is revoked at once with reason `exposed`, where it was found is
//! recorded, and its owner gets a notice.

use keyward_core::{key, time::now_unix, KeyHash};
use keyward_core::{Notification, OutboxMessage, RevokeReason};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::caller::{Caller, Principal};
use crate::error::Result;
use crate::Services;

/// Where a key was found, as the reporter says.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    pub url: Option<String>,
    pub source: Option<String>,
}

/// Whether a reported string is one of this installation's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    TruePositive,
    FalsePositive,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::TruePositive => "true_positive",
            Label::FalsePositive => "false_positive",
        }
    }
}

/// The verdict on one reported string.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// SHA-256 hex of the reported string, as reported.
    pub token_hash: String,
    pub label: Label,
}

/// A notice as the outbox keeps it for each channel (email, webhook): who
/// to tell and what happened, never a secret. Each channel renders it its
/// own way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The owner's email address.
    pub email: String,
    /// The notification's id (`notif_…`): a receiver sees each notice at
    /// least once and may drop repeats by it.
    pub id: String,
    /// E.g. `api_key.exposed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: i64,
    pub message: String,
    pub details: serde_json::Value,
}

impl Notice {
    fn of(email: &str, n: &Notification) -> Self {
        Notice {
            email: email.to_owned(),
            id: n.id.clone(),
            kind: n.kind.clone(),
            created_at: n.created_at,
            message: n.message.clone(),
            details: n.details.clone(),
        }
    }

    /// Reads an outbox row's payload.
    pub fn from_payload(payload: &str) -> std::result::Result<Self, String> {
        serde_json::from_str(payload).map_err(|e| format!("not a notice: {e}"))
    }
}

/// What a report did: a verdict per token, and how many messages it put
/// in the outbox (to wake its deliverer).
#[derive(Debug, Clone)]
pub struct Reported {
    pub verdicts: Vec<Verdict>,
    pub queued: usize,
}

impl Services {
    /// Revokes every real, active key among `tokens`; already revoked real
    /// keys are still true positives. Each revocation's notice, and its
    /// outbox messages for the configured channels, commit with it.
    pub async fn report_exposed(
        &self,
        tokens: &[String],
        sighting: &Sighting,
        source_ip: Option<String>,
    ) -> Result<Reported> {
        let reporter = Caller {
            principal: Principal::System,
            source_ip,
        };
        let mut verdicts = Vec::with_capacity(tokens.len());
        let mut queued = 0;
        for token in tokens {
            let hash = KeyHash::of(token);
            let found = match key::verify(token.as_bytes()) {
                Ok(_) => self.store.key_by_hash(&hash).await?,
                Err(_) => None,
            };
            let label = if found.is_some() {
                Label::TruePositive
            } else {
                Label::FalsePositive
            };
            verdicts.push(Verdict {
                token_hash: hash.to_hex(),
                label,
            });
            let Some(found) = found else { continue };
            if found.key.revoked.is_some() {
                continue;
            }
            let note = describe(sighting);
            let key = found.key;
            let owner = self.store.user(&key.owner_id).await?;
            // The notice is written in the revocation's transaction: if
            // the key is revoked, its owner is told.
            let at = now_unix();
            let notification = owner.as_ref().map(|owner| Notification {
                id: keyward_core::id::NotificationId::generate().to_string(),
                user_id: owner.id.clone(),
                kind: "api_key.exposed".into(),
                key_id: Some(key.id.clone()),
                project_id: key.project_id.clone(),
                message: format!(
                    "Your key \"{}\" ({}) was found exposed {} and has been revoked. Create a new key and update the apps that used it.",
                    key.name, key.redacted_value, note
                ),
                details: json!({
                    "key": {"id": key.id, "name": key.name, "redacted_value": key.redacted_value, "project_id": key.project_id},
                    "found_at": {"url": sighting.url, "source": sighting.source},
                    "revoked_at": at,
                }),
                created_at: at,
                read_at: None,
            });
            let outbox = match (&owner, &notification) {
                (Some(owner), Some(n)) => self.outbox_messages(&Notice::of(&owner.email, n)),
                _ => Vec::new(),
            };
            let (_, newly) = self
                .revoke_record(
                    &reporter,
                    key,
                    RevokeReason::Exposed,
                    Some(note),
                    notification.as_ref(),
                    &outbox,
                )
                .await?;
            if newly {
                queued += outbox.len();
            }
        }
        Ok(Reported { verdicts, queued })
    }

    /// One outbox message per configured channel, each carrying `notice`.
    fn outbox_messages(&self, notice: &Notice) -> Vec<OutboxMessage> {
        // Strings and JSON values (whose keys are strings) always serialize.
        let payload = serde_json::to_string(notice).expect("a notice is plain JSON");
        self.policy
            .notice_channels
            .iter()
            .map(|&channel| OutboxMessage {
                channel,
                payload: payload.clone(),
            })
            .collect()
    }

    /// The calling user's notifications, newest first.
    pub async fn notifications(
        &self,
        caller: &Caller,
        page: &keyward_core::Page,
    ) -> Result<keyward_core::Listed<Notification>> {
        let user = caller.require_user("organization.notifications.read")?;
        self.store
            .notifications(&user.id, page)
            .await
            .map_err(crate::audit::list_error(page))
    }
}

/// "at <url> (source: <source>)", in as much as the reporter said.
fn describe(s: &Sighting) -> String {
    let clip = |v: &str| v.chars().take(500).collect::<String>();
    match (&s.url, &s.source) {
        (Some(u), Some(src)) => format!("at {} (source: {})", clip(u), clip(src)),
        (Some(u), None) => format!("at {}", clip(u)),
        (None, Some(src)) => format!("by {}", clip(src)),
        (None, None) => "in public".to_owned(),
    }
}
