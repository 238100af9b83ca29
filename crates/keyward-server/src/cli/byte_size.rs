//! Sizes on the command line: `10MB`, `512 KiB`, `2000000`. Decimal units
//! (KB, MB, GB) are powers of 1000, binary ones (KiB, MiB, GiB) powers of
//! 1024, and a bare number is bytes; case does not matter.

const UNITS: [(&str, u64); 7] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

/// A size in bytes, for clap.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = match unit.as_str() {
        "" => Some(1),
        unit => UNITS.iter().find(|(name, _)| *name == unit).map(|u| u.1),
    };
    let invalid = || {
        format!("`{text}` is not a size; write a whole number with an optional unit, e.g. 10MB, 512KiB or 2000000 (bytes)")
    };
    let (Ok(number), Some(multiplier)) = (number.parse::<u64>(), multiplier) else {
        return Err(invalid());
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large; the most is {} bytes", u64::MAX))
}

/// `bytes` exactly, in the largest unit that divides it: `10 MB`,
/// `512 KiB`, `10000001 bytes`.
pub fn show(bytes: u64) -> String {
    let named = ["GB", "MB", "KB", "GiB", "MiB", "KiB"]
        .into_iter()
        .find_map(|name| {
            let unit = UNITS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?.1;
            (bytes >= unit && bytes.is_multiple_of(unit))
                .then(|| format!("{} {name}", bytes / unit))
        });
    named.unwrap_or_else(|| format!("{bytes} bytes"))
}

/// The smallest whole number of megabytes holding `bytes`, as a flag
/// value: what to pass to search a file of that size.
pub fn whole_megabytes_above(bytes: u64) -> String {
    format!("{}MB", bytes.div_ceil(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse("10MB"), Ok(10_000_000));
        assert_eq!(parse("10mb"), Ok(10_000_000));
        assert_eq!(parse("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("2000000"), Ok(2_000_000));
        assert_eq!(parse("7B"), Ok(7));
        for bad in ["", "MB", "ten MB", "10 parsecs", "-1MB", "1.5MB"] {
            assert!(parse(bad).unwrap_err().contains("e.g. 10MB"), "{bad}");
        }
        assert!(parse("99999999999GB").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_show_exactly() {
        assert_eq!(show(10_000_000), "10 MB");
        assert_eq!(show(10_485_760), "10 MiB");
        assert_eq!(show(2048), "2 KiB");
        assert_eq!(show(10_000_001), "10000001 bytes");
        assert_eq!(show(999), "999 bytes");
        assert_eq!(show(1_500_000_000), "1500 MB");
        assert_eq!(whole_megabytes_above(10_000_001), "11MB");
        assert_eq!(whole_megabytes_above(10_000_000), "10MB");
    }
}
