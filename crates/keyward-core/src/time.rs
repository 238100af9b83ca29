//! Wall-clock time as Unix seconds, the unit of every stored timestamp.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Seconds in a day: Unix time has no leap seconds.
pub const DAY: i64 = 86_400;

/// `(year, month 1-12, day 1-31)` of the UTC date of `unix`.
pub fn civil(unix: i64) -> (i64, u32, u32) {
    let days = unix.div_euclid(DAY);
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The Unix second of 00:00 UTC on a calendar date; the inverse of
/// [`civil`] for valid dates (Feb 30 rolls over into March).
pub fn from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY
}

/// The start of the UTC day holding `unix`.
pub fn day_start(unix: i64) -> i64 {
    unix - unix.rem_euclid(DAY)
}

/// `YYYY-MM-DD HH:MM` in UTC, for people reading CLI output.
pub fn format_utc(unix: i64) -> String {
    let (year, month, day) = civil(unix);
    let secs = unix.rem_euclid(DAY);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The Unix second at which the UTC calendar month holding `unix` began:
/// monthly budgets reset then.
pub fn month_start(unix: i64) -> i64 {
    let (_, _, day) = civil(unix);
    day_start(unix) - i64::from(day - 1) * DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_utc(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(format_utc(month_start(1_795_000_000)), "2026-11-01 00:00");
        assert_eq!(format_utc(month_start(951_782_400)), "2000-02-01 00:00");
        assert_eq!(from_civil(2000, 2, 29), 951_782_400);
        assert_eq!(civil(from_civil(2026, 11, 22)), (2026, 11, 22));
        assert_eq!(day_start(1_795_000_000), from_civil(2026, 11, 18));
    }
}
