//! The text log line, written without tracing-subscriber's general
//! formatter: a server writes one line per request, and that formatter
//! builds the date from the clock for every line and writes every field
//! through styled `Debug` wrappers. This one keeps the same layout
//!
//! ```text
//! 2026-11-30T06:03:52.769367Z  INFO keyward_gateway::request_id: served id=req_… status=200
//! ```
//!
//! with the date and time of the current second formatted once per thread.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// See the module documentation.
pub struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_time(&mut w, SystemTime::now())?;
        let meta = event.metadata();
        w.write_str(match *meta.level() {
            Level::ERROR => "ERROR ",
            Level::WARN => " WARN ",
            Level::INFO => " INFO ",
            Level::DEBUG => "DEBUG ",
            Level::TRACE => "TRACE ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                w.write_str(span.name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(w, "{{{fields}}}")?;
                    }
                }
                w.write_str(": ")?;
            }
        }
        w.write_str(meta.target())?;
        w.write_str(":")?;
        let mut fields = Fields {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_char('\n')
    }
}

/// Writes ` name=value` for each field; the message bare. Pieces go to the
/// writer as they are, numbers through `itoa`: `write!` would run each
/// field through the formatting machinery.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.w.write_char(' ')?;
            if field.name() != "message" {
                self.w.write_str(field.name())?;
                self.w.write_char('=')?;
            }
            value(self.w)
        })();
    }

    fn number(&mut self, field: &Field, value: impl itoa::Integer) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| write!(w, "{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(w, "{value:?}"));
    }
}

thread_local! {
    /// The second last formatted on this thread, and its text.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-30T06:03:52.769367Z ` (UTC, microseconds).
fn write_time(w: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = date_time(secs);
        SECOND.set((secs, text));
    }
    // The 19 bytes are ASCII digits and separators.
    w.write_str(std::str::from_utf8(&text).unwrap_or("????-??-??T??:??:??"))?;
    let mut micros = *b".000000Z ";
    put_digits(&mut micros[1..7], u64::from(since.subsec_micros()));
    w.write_str(std::str::from_utf8(&micros).unwrap_or(".??????Z "))
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, in UTC.
fn date_time(secs: u64) -> [u8; 19] {
    let rem = secs % 86_400;
    let (year, month, day) = keyward_core::time::civil(secs as i64);
    let mut text = [0u8; 19];
    put_digits(&mut text[0..4], year.clamp(0, 9999) as u64);
    put_digits(&mut text[5..7], u64::from(month));
    put_digits(&mut text[8..10], u64::from(day));
    put_digits(&mut text[11..13], rem / 3600);
    put_digits(&mut text[14..16], rem / 60 % 60);
    put_digits(&mut text[17..19], rem % 60);
    text[4] = b'-';
    text[7] = b'-';
    text[10] = b'T';
    text[13] = b':';
    text[16] = b':';
    text
}

/// Writes `value`'s last `out.len()` decimal digits, zero-padded, into `out`.
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates_match_known_instants() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_251_199, "2024-02-29T23:59:59"),
            (1_796_016_232, "2026-11-30T05:23:52"),
            (4_102_444_800, "2100-01-01T00:00:00"),
        ] {
            assert_eq!(
                std::str::from_utf8(&date_time(secs)).unwrap(),
                text,
                "{secs}"
            );
        }
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_has_the_default_layout() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .event_format(Line)
            .finish();
        let before = SystemTime::now();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(id = "req_1", method = %"POST", path = "/v1/x", status = 200u16, elapsed_ms = 3u64, cached = true, delta = -5i64, "served");
            let span = tracing::warn_span!("call", upstream = "fake");
            let _in = span.enter();
            tracing::warn!(error = %std::io::Error::other("refused"), "upstream call failed");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert_eq!(time.len(), 27, "{time}");
        assert!(time.ends_with('Z'), "{time}");
        assert_eq!(&time[19..20], ".", "{time}");
        assert!(time[20..26].bytes().all(|b| b.is_ascii_digit()), "{time}");
        let expected = std::str::from_utf8(&date_time(
            before.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        ))
        .unwrap()
        .to_owned();
        let later = std::str::from_utf8(&date_time(
            (before + Duration::from_secs(1))
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        ))
        .unwrap()
        .to_owned();
        assert!(
            time.starts_with(&expected) || time.starts_with(&later),
            "{time}"
        );
        assert_eq!(
            rest,
            " INFO keyward::logging::line::tests: served id=\"req_1\" method=POST path=\"/v1/x\" status=200 elapsed_ms=3 cached=true delta=-5"
        );
        let (_, rest) = lines[1].split_once(' ').unwrap();
        assert_eq!(
            rest,
            " WARN call{upstream=\"fake\"}: keyward::logging::line::tests: upstream call failed error=refused"
        );
    }
}
