//! GitHub's secret-scanning partner signatures: the body is signed with
//! ECDSA P-256 / SHA-256 by a key GitHub publishes as
//! `{"public_keys":[{"key_identifier","key","is_current"}]}` (by default
//! fetched from GitHub hourly; a file seeds them, and serves offline).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;

#[derive(Deserialize)]
struct KeyFile {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

/// Why a partner request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingHeaders,
    UnknownKey,
    NotCurrent,
    BadSignature,
    /// No key is known at all: no seed file, and GitHub could not be reached.
    NoKeys,
}

/// GitHub's published keys are fetched this often.
const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// A request naming an unknown key fetches them at once, at most this often:
/// random key ids must not make Keyward hammer GitHub.
const ON_DEMAND_EVERY: Duration = Duration::from_secs(60);

type Keys = HashMap<String, (VerifyingKey, bool)>;

/// The current set of GitHub's keys: seeded from a file, refreshed from
/// GitHub's published URL hourly and when a request names a key id not
/// seen yet.
#[derive(Clone, Default)]
pub struct GithubKeys {
    keys: Arc<RwLock<Keys>>,
    source: Option<Arc<Source>>,
}

struct Source {
    url: String,
    client: reqwest::Client,
    /// When a request last made us fetch; held while fetching, so
    /// concurrent requests wait for that one fetch.
    last_on_demand: tokio::sync::Mutex<Option<Instant>>,
}

impl GithubKeys {
    /// The keys in `seed_file` (when given), refreshed from `url` (when
    /// given) once [`GithubKeys::refresh_hourly`] runs.
    pub fn new(
        seed_file: Option<&Path>,
        url: Option<String>,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let keys = match seed_file {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Self::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Keys::new(),
        };
        Ok(GithubKeys {
            keys: Arc::new(RwLock::new(keys)),
            source: url.map(|url| {
                Arc::new(Source {
                    url,
                    client,
                    last_on_demand: tokio::sync::Mutex::new(None),
                })
            }),
        })
    }

    /// Parses GitHub's JSON; every key must be a valid P-256 PEM.
    pub fn parse(json: &[u8]) -> Result<Keys, String> {
        let file: KeyFile = serde_json::from_slice(json)
            .map_err(|e| format!("not GitHub's public-keys JSON ({{\"public_keys\":[…]}}): {e}"))?;
        file.public_keys
            .into_iter()
            .map(|k| {
                let key = VerifyingKey::from_public_key_pem(&k.key).map_err(|e| {
                    format!(
                        "key {} is not a P-256 public key in PEM: {e}",
                        k.key_identifier
                    )
                })?;
                Ok((k.key_identifier, (key, k.is_current)))
            })
            .collect()
    }

    fn replace(&self, keys: Keys) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// Checks `signature` (base64 of a DER ECDSA signature) over `body` with
    /// the current key named `key_id`. A key id not known yet fetches
    /// GitHub's keys first (at most once a minute): GitHub may have rotated.
    pub async fn check(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refusal> {
        match self.verify(key_id, signature, body) {
            Err(Refusal::UnknownKey | Refusal::NoKeys) if self.refresh_on_demand().await => {
                self.verify(key_id, signature, body)
            }
            other => other,
        }
    }

    fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let (Some(key_id), Some(signature)) = (key_id, signature) else {
            return Err(Refusal::MissingHeaders);
        };
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        if keys.is_empty() {
            return Err(Refusal::NoKeys);
        }
        let (key, current) = keys.get(key_id).ok_or(Refusal::UnknownKey)?;
        if !current {
            return Err(Refusal::NotCurrent);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| Refusal::BadSignature)?;
        let signature = Signature::from_der(&der).map_err(|_| Refusal::BadSignature)?;
        key.verify(body, &signature)
            .map_err(|_| Refusal::BadSignature)
    }

    /// Fetches the keys now unless a request made us fetch them less than
    /// a minute ago; whether new keys were stored.
    async fn refresh_on_demand(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let mut last = source.last_on_demand.lock().await;
        if last.is_some_and(|t| t.elapsed() < ON_DEMAND_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        self.refresh(source, "a request named a key id not known yet")
            .await
    }

    /// Fetches GitHub's keys now and every hour after, in the background;
    /// a failed fetch keeps the keys there are.
    pub fn refresh_hourly(&self) -> Option<tokio::task::JoinHandle<()>> {
        let source = self.source.clone()?;
        let keys = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            loop {
                tick.tick().await;
                keys.refresh(&source, "hourly").await;
            }
        }))
    }

    async fn refresh(&self, source: &Source, why: &str) -> bool {
        match fetch(source).await {
            Ok(keys) => {
                tracing::info!(
                    count = keys.len(),
                    why,
                    "fetched GitHub's secret-scanning keys"
                );
                self.replace(keys);
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    url = %source.url,
                    why,
                    "cannot refresh GitHub's secret-scanning keys; keeping the ones there are (secret_scanning.github_public_keys_file seeds them offline)"
                );
                false
            }
        }
    }

    /// The URL the keys are refreshed from, if any.
    pub fn url(&self) -> Option<&str> {
        self.source.as_ref().map(|s| s.url.as_str())
    }
}

async fn fetch(source: &Source) -> Result<Keys, String> {
    let response = source
        .client
        .get(&source.url)
        .header("accept", "application/json")
        // GitHub's API refuses requests without a User-Agent.
        .header("user-agent", concat!("keyward/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GitHub answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let keys = GithubKeys::parse(&body)?;
    if keys.is_empty() {
        return Err("the published list holds no key".into());
    }
    Ok(keys)
}
