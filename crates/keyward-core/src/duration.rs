//! Human durations such as `30d` or `12h`, as used by `--expires-in` and
//! rotation grace periods.

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration: write a whole number followed by s, m, h, d or w (for example 30d or 12h)")]
pub struct DurationError(pub String);

/// Parses `<n><unit>` (units s, m, h, d, w) or a bare number of seconds
/// into seconds.
pub fn parse_seconds(s: &str) -> Result<i64, DurationError> {
    let err = || DurationError(s.chars().take(32).collect());
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| err())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(err()),
    };
    n.checked_mul(scale).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_seconds("30d"), Ok(30 * 86_400));
        assert_eq!(parse_seconds("12h"), Ok(43_200));
        assert_eq!(parse_seconds("90"), Ok(90));
        assert_eq!(parse_seconds("1w"), Ok(604_800));
        assert!(parse_seconds("").is_err());
        assert!(parse_seconds("d").is_err());
        assert!(parse_seconds("3 days").is_err());
        assert!(parse_seconds("-1d").is_err());
        assert!(parse_seconds("99999999999999999999d").is_err());
    }
}
