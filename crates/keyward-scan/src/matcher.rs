//! Finding keys in a buffer: one `memmem` pass for the literal `sk-kw`, then
//! the exact key check at each hit. Real text almost never contains the
//! prefix, so nearly every byte is looked at only by the vectorised search.

use keyward_core::base62::is_base62;
use keyward_core::key::{self, KeyKind};
use memchr::memmem::Finder;

/// What every key starts with; `sk-kw-` and `sk-kwadmin-` both do.
pub const PREFIX: &[u8] = b"sk-kw";

/// The longest key (`sk-kwadmin-` + 46): how far past a prefix a check reads.
pub const MAX_KEY_LEN: usize = 57;

/// A verified key at `start..start + kind.key_len()` of the searched buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMatch {
    pub start: usize,
    pub kind: KeyKind,
}

impl KeyMatch {
    pub fn end(&self) -> usize {
        self.start + self.kind.key_len()
    }
}

/// The prefix searcher, built once and shared by every buffer a thread scans.
#[derive(Clone)]
pub struct Matcher {
    finder: Finder<'static>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            finder: Finder::new(PREFIX),
        }
    }
}

impl Matcher {
    /// Calls `found` for every key that starts in `hay[from..until]`, in
    /// order. Bytes outside that window are read only as context: the byte
    /// before a key and the bytes of the key and the one after it, so a
    /// caller scanning a stream passes a window that ends [`MAX_KEY_LEN`] + 1
    /// bytes before the end of what it holds, unless it holds the end.
    pub fn each_key(&self, hay: &[u8], from: usize, until: usize, mut found: impl FnMut(KeyMatch)) {
        let until = until.min(hay.len());
        if from >= until {
            return;
        }
        // A prefix starting before `until` may end after it.
        let search_end = (until + PREFIX.len() - 1).min(hay.len());
        for offset in self.finder.find_iter(&hay[from..search_end]) {
            let start = from + offset;
            if let Some(kind) = key_at(hay, start) {
                found(KeyMatch { start, kind });
            }
        }
    }

    /// Every key in `hay`.
    pub fn keys(&self, hay: &[u8]) -> Vec<KeyMatch> {
        let mut out = Vec::new();
        self.each_key(hay, 0, hay.len(), |m| out.push(m));
        out
    }
}

/// The kind of the key starting at `start`, if a whole key stands there: a
/// known prefix, exactly 46 base-62 characters with a valid checksum, and no
/// base-62 character touching either end. The boundaries keep a key-shaped
/// run inside a longer token (a hash, a base64 blob) from being reported.
fn key_at(hay: &[u8], start: usize) -> Option<KeyKind> {
    if start > 0 && is_base62(hay[start - 1]) {
        return None;
    }
    let rest = &hay[start + PREFIX.len()..];
    let kind = if rest.first() == Some(&b'-') {
        KeyKind::Project
    } else if rest.starts_with(b"admin-") {
        KeyKind::Admin
    } else {
        return None;
    };
    let end = start + kind.key_len();
    let candidate = hay.get(start..end)?;
    if hay.get(end).is_some_and(|&b| is_base62(b)) {
        return None;
    }
    key::verify(candidate).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::PlainKey;

    const KNOWN: &str = "sk-kw-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd0omAup";

    fn starts(hay: &[u8]) -> Vec<usize> {
        Matcher::default()
            .keys(hay)
            .iter()
            .map(|m| m.start)
            .collect()
    }

    #[test]
    fn finds_both_kinds_with_their_offsets() {
        let admin = PlainKey::generate(KeyKind::Admin);
        let hay = format!("a = \"{KNOWN}\"\nb={}", admin.expose());
        let found = Matcher::default().keys(hay.as_bytes());
        assert_eq!(
            found,
            vec![
                KeyMatch {
                    start: 5,
                    kind: KeyKind::Project
                },
                KeyMatch {
                    start: 5 + KNOWN.len() + 4,
                    kind: KeyKind::Admin
                },
            ]
        );
        assert_eq!(&hay[found[1].start..found[1].end()], admin.expose());
    }

    #[test]
    fn a_key_may_fill_the_whole_input() {
        assert_eq!(starts(KNOWN.as_bytes()), vec![0]);
    }

    #[test]
    fn a_wrong_checksum_is_not_a_key() {
        let bad = KNOWN.replace("mAup", "mAuq");
        assert_eq!(starts(bad.as_bytes()), Vec::<usize>::new());
    }

    #[test]
    fn a_key_inside_a_longer_token_is_not_reported() {
        for hay in [
            format!("x{KNOWN}"),
            format!("{KNOWN}0"),
            format!("Z{KNOWN}z"),
        ] {
            assert_eq!(starts(hay.as_bytes()), Vec::<usize>::new(), "{hay}");
        }
        // Punctuation is a boundary.
        for hay in [
            format!("_{KNOWN}_"),
            format!("/{KNOWN}."),
            format!("-{KNOWN}-"),
        ] {
            assert_eq!(starts(hay.as_bytes()), vec![1], "{hay}");
        }
    }

    #[test]
    fn truncated_keys_and_bare_prefixes_are_ignored() {
        for hay in ["sk-kw", "sk-kw-", "sk-kwadmin", "sk-kwx-", &KNOWN[..51]] {
            assert_eq!(starts(hay.as_bytes()), Vec::<usize>::new(), "{hay}");
        }
    }

    #[test]
    fn the_window_bounds_where_keys_start_not_where_they_end() {
        let hay = format!("..{KNOWN}..");
        let m = Matcher::default();
        let mut seen = Vec::new();
        m.each_key(hay.as_bytes(), 0, 3, |k| seen.push(k.start));
        assert_eq!(seen, vec![2]);
        seen.clear();
        m.each_key(hay.as_bytes(), 0, 2, |k| seen.push(k.start));
        m.each_key(hay.as_bytes(), 3, hay.len(), |k| seen.push(k.start));
        assert_eq!(seen, Vec::<usize>::new());
    }
}
