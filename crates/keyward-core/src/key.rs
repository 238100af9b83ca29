//! The secret-key format, version 1. Scanners and other tools depend on it,
//! so it must never change silently:
//!
//! ```text
//! sk-kw-      R (40 × [0-9A-Za-z], CSPRNG)   C (6 × base62 of CRC-32(R))
//! sk-kwadmin- R                              C
//! ```
//!
//! C is the CRC-32 (IEEE 802.3) of R's ASCII bytes in base 62, most
//! significant digit first, left-padded with `0`. The checksum lets the
//! gateway reject a typo without a database read and lets scanners find real
//! keys with almost no false positives. At rest only the SHA-256 of the whole
//! key string is kept.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::base62;

/// Length of the random part R.
pub const RANDOM_LEN: usize = 40;
/// Length of the checksum part C.
pub const CHECKSUM_LEN: usize = 6;
/// Prefix of project (ordinary) keys.
pub const PROJECT_PREFIX: &str = "sk-kw-";
/// Prefix of admin keys, which manage an account's projects and keys.
pub const ADMIN_PREFIX: &str = "sk-kwadmin-";
/// A regular expression matching candidate keys, for scanners. A match is a
/// key only when its checksum verifies.
pub const PATTERN: &str = r"sk-kw(?:admin)?-[0-9A-Za-z]{46}";

/// Which kind of key a secret is, told by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `sk-kw-`: calls the gateway (and, when permitted, manages its project's keys).
    Project,
    /// `sk-kwadmin-`: manages every project its owner belongs to.
    Admin,
}

impl KeyKind {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Project => PROJECT_PREFIX,
            KeyKind::Admin => ADMIN_PREFIX,
        }
    }

    /// Total length of a key of this kind.
    pub fn key_len(self) -> usize {
        self.prefix().len() + RANDOM_LEN + CHECKSUM_LEN
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Project => "project",
            KeyKind::Admin => "admin",
        }
    }

    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "project" => Some(KeyKind::Project),
            "admin" => Some(KeyKind::Admin),
            _ => None,
        }
    }
}

/// Why a string is not a well-formed key. Never carries the input itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key does not start with `sk-kw-` or `sk-kwadmin-`")]
    Prefix,
    #[error("the key has the wrong length")]
    Length,
    #[error("the key contains a character outside 0-9, A-Z, a-z")]
    Alphabet,
    #[error("the key's checksum does not match; check it was copied whole")]
    Checksum,
}

/// A plaintext secret key. It exists in memory only while a key is being
/// created (to be shown once) or checked; `Debug` shows the redacted form and
/// there is deliberately no `Display`.
#[derive(Clone)]
pub struct PlainKey {
    kind: KeyKind,
    secret: SecretString,
}

impl PlainKey {
    /// Draws a new key of `kind` from the OS CSPRNG.
    pub fn generate(kind: KeyKind) -> Self {
        let mut buf = Vec::with_capacity(kind.key_len());
        buf.extend_from_slice(kind.prefix().as_bytes());
        let mut random = [0u8; RANDOM_LEN];
        base62::fill_random(&mut random);
        buf.extend_from_slice(&random);
        buf.extend_from_slice(&checksum(&random));
        let text = String::from_utf8(buf).expect("prefix and base62 are ASCII");
        PlainKey {
            kind,
            secret: SecretString::from(text),
        }
    }

    /// Checks prefix, length, alphabet and checksum; no store is involved.
    pub fn parse(candidate: &str) -> Result<Self, KeyFormatError> {
        let kind = verify(candidate.as_bytes())?;
        Ok(PlainKey {
            kind,
            secret: SecretString::from(candidate.to_owned()),
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The full secret, for the single moment it is shown to its owner.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.expose())
    }

    /// `sk-kw-Ab3d...9xYz`: safe to store, list and log.
    pub fn redacted(&self) -> String {
        redact(self.expose())
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({})", self.redacted())
    }
}

/// Verifies a candidate key given as bytes and tells its kind. This is the
/// allocation-free check used on the gateway's hot path and by scanners.
pub fn verify(candidate: &[u8]) -> Result<KeyKind, KeyFormatError> {
    let kind = if candidate.starts_with(ADMIN_PREFIX.as_bytes()) {
        KeyKind::Admin
    } else if candidate.starts_with(PROJECT_PREFIX.as_bytes()) {
        KeyKind::Project
    } else {
        return Err(KeyFormatError::Prefix);
    };
    if candidate.len() != kind.key_len() {
        return Err(KeyFormatError::Length);
    }
    let body = &candidate[kind.prefix().len()..];
    if !body.iter().all(|&b| base62::is_base62(b)) {
        return Err(KeyFormatError::Alphabet);
    }
    let (random, check) = body.split_at(RANDOM_LEN);
    if checksum(random) != check {
        return Err(KeyFormatError::Checksum);
    }
    Ok(kind)
}

/// C: CRC-32 of the random part, as six base-62 digits.
pub fn checksum(random: &[u8]) -> [u8; CHECKSUM_LEN] {
    base62::encode_fixed::<CHECKSUM_LEN>(u64::from(crc32fast::hash(random)))
}

/// The first 10 characters, `...`, the last 4. Applied to anything shorter
/// than 14 characters it hides everything.
pub fn redact(key: &str) -> String {
    match (
        key.get(..10),
        key.len().checked_sub(4).and_then(|i| key.get(i..)),
    ) {
        (Some(head), Some(tail)) if key.len() >= 14 => format!("{head}...{tail}"),
        _ => "...".to_owned(),
    }
}

/// How OpenAI shows a wrong key in an error: the first 8 characters, one `*`
/// per hidden character, the last 4. Used on any presented string, key or not.
pub fn mask(presented: &str) -> String {
    let chars: Vec<char> = presented.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let mut out = String::with_capacity(chars.len());
    out.extend(&chars[..8]);
    out.extend(std::iter::repeat_n('*', chars.len() - 12));
    out.extend(&chars[chars.len() - 4..]);
    out
}

/// SHA-256 of the whole key string: what the store keeps and looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(KeyHash(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time equality, for comparisons outside an index lookup.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// A `BuildHasher` for maps keyed by [`KeyHash`]: the SHA-256 is already
/// uniformly random, so its first eight bytes are the hash; no second
/// hash function runs on the hot path.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHashBuilder;

/// The hasher [`KeyHashBuilder`] builds.
#[derive(Debug, Default)]
pub struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `Hash for [u8; 32]` writes the 32 bytes in one call; anything else
        // (unexpected) is folded in rather than dropped.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHashHasher;

    fn build_hasher(&self) -> KeyHashHasher {
        KeyHashHasher(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cross-checked with Python's `zlib.crc32`, so the format is pinned
    /// independently of this implementation.
    #[test]
    fn known_answer() {
        let key = "sk-kw-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd0omAup";
        let parsed = PlainKey::parse(key).unwrap();
        assert_eq!(parsed.kind(), KeyKind::Project);
        assert_eq!(
            parsed.hash().to_hex(),
            "82499225f7cd8ca37ad41c9ad9b9ecf3adbc0d4bc478562d90368d9dce772bd2"
        );
        assert_eq!(parsed.redacted(), "sk-kw-0123...mAup");
        assert_eq!(
            PlainKey::parse("sk-kw-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd0omAuq").unwrap_err(),
            KeyFormatError::Checksum
        );
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        for kind in [KeyKind::Project, KeyKind::Admin] {
            let key = PlainKey::generate(kind);
            assert_eq!(key.expose().len(), kind.key_len());
            assert!(key.expose().starts_with(kind.prefix()));
            assert_eq!(PlainKey::parse(key.expose()).unwrap().kind(), kind);
        }
        assert_eq!(KeyKind::Project.key_len(), 52);
        assert_eq!(KeyKind::Admin.key_len(), 57);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = PlainKey::generate(KeyKind::Project);
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.expose()));
        assert!(shown.contains(&key.redacted()));
    }

    #[test]
    fn rejects_each_kind_of_malformation() {
        assert_eq!(verify(b"sk-xx-abc"), Err(KeyFormatError::Prefix));
        assert_eq!(verify(b"sk-kw-abc"), Err(KeyFormatError::Length));
        let mut bad = PlainKey::generate(KeyKind::Project)
            .expose()
            .as_bytes()
            .to_vec();
        bad[10] = b'_';
        assert_eq!(verify(&bad), Err(KeyFormatError::Alphabet));
    }

    #[test]
    fn mask_matches_openai_style() {
        assert_eq!(mask("sk-abcdefgh1234"), "sk-abcde***1234");
        assert_eq!(mask("short"), "*****");
    }
}
