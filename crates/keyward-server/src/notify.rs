//! Delivers notices about exposed keys beyond the dashboard: an email over
//! SMTP and a signed webhook, each when configured. Delivery runs in the
//! background and retries a few times; a failure is logged, never shown to
//! the reporter.

use std::time::Duration;

use hmac::{Hmac, Mac};
use keyward_service::Notice;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

use crate::config::{Smtp, SmtpSecurity, Webhook};

#[derive(Clone)]
pub struct Notifier {
    mail: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    webhook: Option<(String, Option<String>)>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(
        smtp: Option<&Smtp>,
        webhook: Option<&Webhook>,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let mail = smtp
            .map(|s| {
                let builder = match s.security {
                    SmtpSecurity::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                    }
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                            .map_err(|e| format!("smtp.host {}: {e}", s.host))?
                    }
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                        .map_err(|e| format!("smtp.host {}: {e}", s.host))?,
                };
                let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(20)));
                if let Some(user) = &s.username {
                    let password = match &s.password_env {
                        Some(var) => std::env::var(var).map_err(|_| {
                            format!("smtp.password_env names {var}, which is not set")
                        })?,
                        None => String::new(),
                    };
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                let from: Mailbox = s
                    .from
                    .parse()
                    .map_err(|e| format!("smtp.from `{}` is not an email address: {e}", s.from))?;
                Ok::<_, String>((builder.build(), from))
            })
            .transpose()?;
        let webhook = webhook
            .map(|w| {
                let secret = match &w.secret_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("webhook.secret_env names {var}, which is not set")
                    })?),
                    None => None,
                };
                Ok::<_, String>((w.url.clone(), secret))
            })
            .transpose()?;
        Ok(Notifier {
            mail,
            webhook,
            client,
        })
    }

    /// The dashboard's mailer (invitation links), when SMTP is set up.
    pub fn mailer(&self) -> Option<std::sync::Arc<dyn keyward_dashboard::Mailer>> {
        self.mail.as_ref()?;
        Some(std::sync::Arc::new(self.clone()))
    }

    /// Sends every notice in the background.
    pub fn deliver(&self, notices: Vec<Notice>) {
        if notices.is_empty() || (self.mail.is_none() && self.webhook.is_none()) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            for notice in notices {
                me.send(&notice).await;
            }
        });
    }

    async fn send(&self, notice: &Notice) {
        if let Some((transport, from)) = &self.mail {
            let email = notice
                .email
                .parse::<Mailbox>()
                .map_err(|e| e.to_string())
                .and_then(|to| {
                    Message::builder()
                        .from(from.clone())
                        .to(to)
                        .subject("A Keyward key of yours was exposed and has been revoked")
                        .body(email_text(notice))
                        .map_err(|e| e.to_string())
                });
            match email {
                Ok(email) => retry("email", || transport.send(email.clone())).await,
                Err(e) => tracing::warn!(error = %e, "cannot build the notice email"),
            }
        }
        if let Some((url, secret)) = &self.webhook {
            let body = serde_json::json!({
                "object": "organization.notification",
                "id": notice.notification.id,
                "type": notice.notification.kind,
                "created_at": notice.notification.created_at,
                "message": notice.notification.message,
                "details": notice.notification.details,
            })
            .to_string();
            let signature = secret.as_ref().map(|s| sign(s.as_bytes(), body.as_bytes()));
            retry("webhook", || {
                let mut req = self
                    .client
                    .post(url)
                    .header("content-type", "application/json")
                    .timeout(Duration::from_secs(10))
                    .body(body.clone());
                if let Some(sig) = &signature {
                    req = req.header("x-keyward-signature", sig);
                }
                async move { req.send().await.and_then(|r| r.error_for_status()) }
            })
            .await;
        }
    }
}

impl keyward_dashboard::Mailer for Notifier {
    /// Sends one email in the background, with retries.
    fn send(&self, to: &str, subject: &str, body: String) {
        let Some((transport, from)) = self.mail.clone() else {
            return;
        };
        let email = to
            .parse::<Mailbox>()
            .map_err(|e| e.to_string())
            .and_then(|to| {
                Message::builder()
                    .from(from)
                    .to(to)
                    .subject(subject)
                    .body(body)
                    .map_err(|e| e.to_string())
            });
        match email {
            Ok(email) => {
                tokio::spawn(async move {
                    retry("email", || transport.send(email.clone())).await;
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot build the email"),
        }
    }
}

/// The email: what happened, to which key, where, and what to do.
fn email_text(notice: &Notice) -> String {
    let d = &notice.notification.details;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("unknown").to_owned();
    let when = d["revoked_at"]
        .as_i64()
        .map_or_else(|| "just now".to_owned(), keyward_core::time::format_utc);
    format!(
        "Your Keyward key \"{name}\" ({redacted}, id {id})\n\
         was reported exposed and was revoked at {when} UTC.\n\n\
         Found at: {url}\n\
         Reported by: {source}\n\n\
         Every request made with it now fails. Create a new key on the\n\
         API keys page and update the apps that used the old one.\n",
        name = text(&d["key"]["name"]),
        redacted = text(&d["key"]["redacted_value"]),
        id = text(&d["key"]["id"]),
        url = text(&d["found_at"]["url"]),
        source = text(&d["found_at"]["source"]),
    )
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn retry<F, Fut, T, E>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut delay = Duration::from_millis(200);
    for n in 1..=4 {
        match attempt().await {
            Ok(_) => return,
            Err(e) if n < 4 => {
                tracing::warn!(error = %e, attempt = n, "{what} notice failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => tracing::error!(error = %e, "{what} notice could not be delivered"),
        }
    }
}
