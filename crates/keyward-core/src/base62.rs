//! The base-62 alphabet shared by secret keys and public ids.

/// `0-9A-Za-z`, in that order; the order is part of the key format.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `b` is one of the 62 characters.
pub fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Fills `out` with characters drawn uniformly from [`ALPHABET`] using the
/// operating system's CSPRNG.
///
/// Rejection sampling keeps the draw uniform: a random byte is used only when
/// it is below 248 (the largest multiple of 62 that fits in a byte), so no
/// character is more likely than another.
pub fn fill_random(out: &mut [u8]) {
    fill_from(out, |pool| os_random(pool));
}

/// Fills `out` from the operating system's CSPRNG.
pub fn os_random(out: &mut [u8]) {
    getrandom::fill(out).expect("the operating system's random number generator failed");
}

/// [`fill_random`] drawing its random bytes from `random`, 64 at a time.
pub fn fill_from(out: &mut [u8], mut random: impl FnMut(&mut [u8; 64])) {
    const ACCEPT_BELOW: u8 = 62 * 4;
    let mut pool = [0u8; 64];
    let mut filled = 0;
    while filled < out.len() {
        random(&mut pool);
        for &b in &pool {
            if b < ACCEPT_BELOW {
                out[filled] = ALPHABET[usize::from(b % 62)];
                filled += 1;
                if filled == out.len() {
                    break;
                }
            }
        }
    }
}

/// Writes `value` in base 62, most significant digit first, left-padded with
/// `0` to exactly `N` digits. `value` must fit in `N` digits.
pub fn encode_fixed<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    debug_assert_eq!(value, 0, "value does not fit in {N} base-62 digits");
    out
}

/// Reads a base-62 number; `None` when a character is outside the alphabet.
pub fn decode(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'A'..=b'Z' => d - b'A' + 10,
            b'a'..=b'z' => d - b'a' + 36,
            _ => return None,
        };
        acc.checked_mul(62)?.checked_add(u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_pads_and_orders_most_significant_first() {
        assert_eq!(&encode_fixed::<6>(0), b"000000");
        assert_eq!(&encode_fixed::<6>(61), b"00000z");
        assert_eq!(&encode_fixed::<6>(62), b"000010");
        assert_eq!(&encode_fixed::<6>(u64::from(u32::MAX)), b"4gfFC3");
    }

    #[test]
    fn decode_inverts_encode() {
        for v in [0u64, 1, 61, 62, 3843, 123_456_789, u64::from(u32::MAX)] {
            assert_eq!(decode(&encode_fixed::<6>(v)), Some(v));
        }
        assert_eq!(decode(b"ab-"), None);
    }

    #[test]
    fn random_characters_cover_the_alphabet_uniformly() {
        let mut buf = vec![0u8; 62 * 2000];
        fill_random(&mut buf);
        let mut counts = [0u32; 62];
        for b in &buf {
            counts[ALPHABET.iter().position(|a| a == b).unwrap()] += 1;
        }
        // Each character expects 2000 draws; a modulo bias of 256 % 62 would
        // push the first 8 characters ~25% above the rest.
        for (i, c) in counts.iter().enumerate() {
            assert!((1700..2300).contains(c), "character {i} drawn {c} times");
        }
    }
}
