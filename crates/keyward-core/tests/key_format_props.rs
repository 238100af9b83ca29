//! Property tests of the key format: every generated key round-trips, and
//! every single-character change to a valid key is rejected.

use keyward_core::key::{self, KeyKind, PlainKey, PATTERN};
use proptest::prelude::*;

const ALPHABET: &[u8] = keyward_core::base62::ALPHABET;

fn any_kind() -> impl Strategy<Value = KeyKind> {
    prop_oneof![Just(KeyKind::Project), Just(KeyKind::Admin)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_keys_round_trip(kind in any_kind()) {
        let k = PlainKey::generate(kind);
        let parsed = PlainKey::parse(k.expose()).unwrap();
        prop_assert_eq!(parsed.kind(), kind);
        prop_assert_eq!(parsed.hash(), k.hash());
        prop_assert_eq!(k.expose().len(), kind.key_len());
        prop_assert!(k.expose()[kind.prefix().len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn any_random_part_gets_a_valid_checksum(
        kind in any_kind(),
        random in proptest::collection::vec(proptest::sample::select(ALPHABET.to_vec()), 40),
    ) {
        let mut s = kind.prefix().as_bytes().to_vec();
        s.extend_from_slice(&random);
        s.extend_from_slice(&key::checksum(&random));
        prop_assert_eq!(key::verify(&s), Ok(kind));
    }

    #[test]
    fn every_single_character_change_is_rejected(
        kind in any_kind(),
        position in 0usize..57,
        replacement in proptest::char::range('\u{20}', '\u{7e}'),
    ) {
        let k = PlainKey::generate(kind);
        let mut bytes = k.expose().as_bytes().to_vec();
        let position = position % bytes.len();
        prop_assume!(bytes[position] != replacement as u8);
        bytes[position] = replacement as u8;
        prop_assert!(key::verify(&bytes).is_err(), "accepted a key changed at {}", position);
    }

    #[test]
    fn dropping_or_adding_a_character_is_rejected(kind in any_kind(), position in 0usize..57) {
        let k = PlainKey::generate(kind);
        let mut shorter = k.expose().as_bytes().to_vec();
        shorter.remove(position % shorter.len());
        prop_assert!(key::verify(&shorter).is_err());
        let mut longer = k.expose().as_bytes().to_vec();
        longer.insert(position % longer.len(), b'A');
        prop_assert!(key::verify(&longer).is_err());
    }
}

/// Every character of R, replaced by every other character of the alphabet,
/// breaks the checksum: exhaustive for one key, not sampled.
#[test]
fn exhaustive_substitutions_in_the_random_part() {
    let k = PlainKey::generate(KeyKind::Project);
    let original = k.expose().as_bytes().to_vec();
    for pos in 0..original.len() {
        for &c in ALPHABET {
            if c == original[pos] {
                continue;
            }
            let mut changed = original.clone();
            changed[pos] = c;
            assert!(
                key::verify(&changed).is_err(),
                "position {pos} char {}",
                c as char
            );
        }
    }
}

#[test]
fn documented_pattern_describes_both_prefixes() {
    assert_eq!(PATTERN, r"sk-kw(?:admin)?-[0-9A-Za-z]{46}");
}
