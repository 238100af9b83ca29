//! Secrets that stand for a person in a browser: session cookies and
//! invitation links. A random token is handed out once; only its SHA-256
//! is stored, so a copy of the database cannot be used in their place.

use keyward_core::{base62, KeyHash};

const TOKEN_CHARS: usize = 43; // 43 base62 characters: over 256 bits

/// A token as its holder has it. It has no `Display` and its `Debug` hides
/// it, so it cannot end up in a log by accident.
pub struct SecretToken(String);

impl SecretToken {
    pub(crate) fn generate() -> Self {
        let mut random = [0u8; TOKEN_CHARS];
        base62::fill_random(&mut random);
        SecretToken(random.iter().map(|&b| char::from(b)).collect())
    }

    /// The token, for the one place it is handed out (a cookie, a link).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its stored form.
    pub(crate) fn hash(&self) -> String {
        token_hash(&self.0)
    }
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(…)")
    }
}

/// The stored form of a token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    KeyHash::of(token).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hidden_and_stored_hashed() {
        let (a, b) = (SecretToken::generate(), SecretToken::generate());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), TOKEN_CHARS);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), a.expose());
    }
}
