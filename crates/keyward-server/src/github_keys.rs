//! GitHub's secret-scanning partner signatures: the body is signed with
//! ECDSA P-256 / SHA-256 by a key GitHub publishes as
//! `{"public_keys":[{"key_identifier","key","is_current"}]}`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

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
}

/// The current set of GitHub's keys, replaceable by a refresh.
#[derive(Clone, Default)]
pub struct GithubKeys {
    keys: Arc<RwLock<HashMap<String, (VerifyingKey, bool)>>>,
}

impl GithubKeys {
    /// Parses GitHub's JSON; every key must be a valid P-256 PEM.
    pub fn parse(json: &[u8]) -> Result<HashMap<String, (VerifyingKey, bool)>, String> {
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

    pub fn load_file(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let keys = Self::default();
        keys.replace(Self::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?);
        Ok(keys)
    }

    pub fn replace(&self, keys: HashMap<String, (VerifyingKey, bool)>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// Checks `signature` (base64 of a DER ECDSA signature) over `body` with
    /// the current key named `key_id`.
    pub fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let (Some(key_id), Some(signature)) = (key_id, signature) else {
            return Err(Refusal::MissingHeaders);
        };
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
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

    /// Refreshes from `url` every hour; a failed refresh keeps the old keys.
    pub fn refresh_from(
        &self,
        url: String,
        client: reqwest::Client,
    ) -> tokio::task::JoinHandle<()> {
        let keys = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let fetched = async {
                    let body = client
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .bytes()
                        .await
                        .map_err(|e| e.to_string())?;
                    Self::parse(&body)
                };
                match fetched.await {
                    Ok(k) => keys.replace(k),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot refresh GitHub's secret-scanning keys; keeping the old ones")
                    }
                }
            }
        })
    }
}
