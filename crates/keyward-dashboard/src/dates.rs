//! Calendar dates (UTC) for people: `Nov 22, 2026`, and `YYYY-MM-DD` as
//! date inputs send them.

const DAY: i64 = 86_400;
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a calendar date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Nov 22, 2026`.
pub fn human(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(DAY));
    format!("{} {d}, {y}", MONTHS[(m - 1) as usize])
}

/// `Nov 22`, for chart axes.
pub fn short(unix: i64) -> String {
    let (_, m, d) = civil(unix.div_euclid(DAY));
    format!("{} {d}", MONTHS[(m - 1) as usize])
}

/// `2026-11-22`, as `<input type="date">` wants it.
pub fn iso(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(DAY));
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
    let days = days_from_civil(year, month, day);
    // Reject dates such as Feb 30 that roll over into another month.
    (civil(days) == (year, month, day)).then_some(days * DAY)
}

/// The start of the UTC day holding `unix`.
pub fn day_start(unix: i64) -> i64 {
    unix - unix.rem_euclid(DAY)
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
        assert_eq!(day_start(1_795_305_601), 1_795_305_600);
    }
}
