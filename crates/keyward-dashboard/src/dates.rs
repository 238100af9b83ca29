//! Calendar dates (UTC) for people: `Nov 22, 2026`, and `YYYY-MM-DD` as
//! date inputs send them.

use keyward_core::time::{civil, from_civil};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Nov 22, 2026`.
pub fn human(unix: i64) -> String {
    let (y, m, d) = civil(unix);
    format!("{} {d}, {y}", MONTHS[(m - 1) as usize])
}

/// `Nov 22`, for chart axes.
pub fn short(unix: i64) -> String {
    let (_, m, d) = civil(unix);
    format!("{} {d}", MONTHS[(m - 1) as usize])
}

/// `2026-11-22`, as `<input type="date">` wants it.
pub fn iso(unix: i64) -> String {
    let (y, m, d) = civil(unix);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The Unix second a `YYYY-MM-DD` date starts (UTC).
pub fn parse_iso(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let unix = from_civil(year, month, day);
    // Reject dates such as Feb 30 that roll over into another month.
    (civil(unix) == (year, month, day)).then_some(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(human(0), "Jan 1, 1970");
        assert_eq!(iso(1_795_305_600), "2026-11-22");
        assert_eq!(human(1_795_305_600 + 3600), "Nov 22, 2026");
        assert_eq!(parse_iso("2026-11-22"), Some(1_795_305_600));
        assert_eq!(parse_iso("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_iso("2023-02-29"), None);
        assert_eq!(parse_iso("nope"), None);
    }
}
