//! Sends one notice beyond the dashboard: an email over SMTP, or a webhook
//! POST signed Stripe-style (`X-Keyward-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 over "<t>.<body>">`), each when configured. When to send and
//! how often to retry is the outbox's business (`outbox.rs`). A webhook's
//! URL may hold a token (Slack-style URLs do), so nothing here logs or
//! returns more of it than its scheme and host.

use std::time::Duration;

use hmac::{Hmac, Mac};
use keyward_core::NoticeChannel;
use keyward_service::Notice;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

use crate::config::{Smtp, SmtpSecurity, Webhook};

pub struct Notifier {
    mail: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    webhook: Option<WebhookTarget>,
    client: reqwest::Client,
}

struct WebhookTarget {
    url: String,
    /// The HMAC secret, from the environment; never logged or stored.
    secret: Option<String>,
}

/// Why one delivery failed, in words that carry no secret and no more of a
/// webhook URL than its scheme and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// Trying again cannot help (a malformed address, a mailbox the server
    /// refuses for good).
    pub permanent: bool,
}

impl Failure {
    fn retry(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            permanent: false,
        }
    }
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
                let url = reqwest::Url::parse(&w.url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or("webhook.url must be an http:// or https:// URL")?;
                let secret = match &w.secret_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!("webhook.secret_env names {var}, which is not set")
                    })?),
                    None => None,
                };
                Ok::<_, String>(WebhookTarget {
                    url: url.into(),
                    secret,
                })
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
        let (transport, from) = self.mail.clone()?;
        Some(std::sync::Arc::new(SmtpMailer { transport, from }))
    }

    /// Where notices go, for the log: the webhook by scheme and host only.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mail.is_some() {
            out.push("email (smtp)".to_owned());
        }
        if let Some(w) = &self.webhook {
            out.push(format!("webhook to {}", origin(&w.url)));
        }
        out
    }

    /// Makes one attempt at sending `notice` on `channel`.
    pub async fn send(&self, channel: NoticeChannel, notice: &Notice) -> Result<(), Failure> {
        match channel {
            NoticeChannel::Email => self.email(notice).await,
            NoticeChannel::Webhook => self.webhook(notice).await,
        }
    }

    async fn email(&self, notice: &Notice) -> Result<(), Failure> {
        let Some((transport, from)) = &self.mail else {
            return Err(Failure::retry(
                "email notices are not configured here any more ([smtp] is not set)",
            ));
        };
        let to = notice.email.parse::<Mailbox>().map_err(|e| Failure {
            message: format!("the owner's address is not a mailbox: {e}"),
            permanent: true,
        })?;
        let email = Message::builder()
            .from(from.clone())
            .to(to)
            .subject("A Keyward key of yours was exposed and has been revoked")
            .body(email_text(notice))
            .map_err(|e| Failure {
                message: format!("cannot build the email: {e}"),
                permanent: true,
            })?;
        transport.send(email).await.map(drop).map_err(|e| Failure {
            message: format!("SMTP: {}", with_causes(&e)),
            permanent: e.is_permanent(),
        })
    }

    async fn webhook(&self, notice: &Notice) -> Result<(), Failure> {
        let Some(target) = &self.webhook else {
            return Err(Failure::retry(
                "webhook notices are not configured here any more ([webhook] is not set)",
            ));
        };
        let body = webhook_body(notice);
        let mut req = self
            .client
            .post(&target.url)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(10));
        if let Some(secret) = &target.secret {
            let at = keyward_core::time::now_unix();
            req = req.header(
                "x-keyward-signature",
                signature(secret.as_bytes(), at, body.as_bytes()),
            );
        }
        let response = req.body(body).send().await.map_err(|e| {
            Failure::retry(format!(
                "{}: {}",
                origin(&target.url),
                with_causes(&e.without_url())
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Failure::retry(format!(
            "{} answered {status}",
            origin(&target.url)
        )))
    }
}

/// What a webhook receives: the notice as the notifications API shows it.
fn webhook_body(notice: &Notice) -> String {
    serde_json::json!({
        "object": "organization.notification",
        "id": notice.id,
        "type": notice.kind,
        "created_at": notice.created_at,
        "message": notice.message,
        "details": notice.details,
    })
    .to_string()
}

/// Sends the dashboard's emails (invitation links) by SMTP.
struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl keyward_dashboard::Mailer for SmtpMailer {
    /// Sends one email in the background, trying three times; the link is
    /// also shown to the owner who invited, so a lost email loses nothing.
    fn send(&self, to: &str, subject: &str, body: String) {
        let email = to
            .parse::<Mailbox>()
            .map_err(|e| e.to_string())
            .and_then(|to| {
                Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(subject)
                    .body(body)
                    .map_err(|e| e.to_string())
            });
        let email = match email {
            Ok(email) => email,
            Err(e) => return tracing::warn!(error = %e, "cannot build the invitation email"),
        };
        let transport = self.transport.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=3 {
                match transport.send(email.clone()).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %with_causes(&e), attempt, "cannot send the invitation email");
                        tokio::time::sleep(delay).await;
                        delay *= 4;
                    }
                }
            }
        });
    }
}

/// The email: what happened, to which key, where, and what to do.
fn email_text(notice: &Notice) -> String {
    let d = &notice.details;
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

/// The `X-Keyward-Signature` value for `body` sent at `timestamp` (Unix
/// seconds): `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
/// Signing the time with the body lets a receiver refuse a replayed
/// delivery once it is older than its tolerance.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A URL as far as it may be logged: `scheme://host[:port]`.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            (Some(host), None) => format!("{}://{host}", u.scheme()),
            (None, _) => format!("{}:", u.scheme()),
        },
        Err(_) => "(a URL that does not parse)".to_owned(),
    }
}

/// An error and its causes, `outer: inner: …` (reqwest's own text says only
/// "error sending request").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let s = signature(b"secret", 1_700_000_000, b"{}");
        let (t, v1) = s.split_once(",v1=").unwrap();
        assert_eq!(t, "t=1700000000");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
        assert_ne!(s, signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(s, signature(b"secret", 1_700_000_000, b"[]"));
    }

    #[test]
    fn only_scheme_and_host_of_a_url_are_shown() {
        assert_eq!(
            origin("https://hooks.example.com/services/T000/B000/XXXXSECRET?token=1"),
            "https://hooks.example.com"
        );
        assert_eq!(
            origin("http://user:pass@127.0.0.1:9000/hook/abc"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(origin("not a url /secret"), "(a URL that does not parse)");
    }
}
