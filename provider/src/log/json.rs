//! The `tracing` event format of the lifecycle lines, and the JSON pieces both writers share:
//! RFC 3339 timestamps and string escaping.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format the binary installs: `{"timestamp":…,"level":…,"target":…,"message":…,…}`.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(event.metadata().level().as_str())?;
        writer.write_str("\",\"target\":")?;
        write_json_str(&mut writer, event.metadata().target())?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("}\n")
    }
}

thread_local! {
    /// The last second this thread stamped, and its `YYYY-MM-DDTHH:MM:SS` text: lines of the same
    /// second share it (formatting the date for every line was the formatter's largest cost).
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Writes `time` as RFC 3339 UTC with microseconds, `2024-06-01T12:34:56.123456Z`, as
/// `tracing-subscriber`'s `SystemTime` timer does.
pub(super) fn write_timestamp(writer: &mut impl fmt::Write, time: SystemTime) -> fmt::Result {
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (cached, date) = SECOND.get();
    let mut text = [0; 27];
    text[..19].copy_from_slice(&date);
    if cached != secs {
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let of_day = secs % 86_400;
        let mut line = String::with_capacity(19);
        write!(
            line,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )?;
        text[..19].copy_from_slice(&line.as_bytes()[..19]);
        SECOND.set((secs, text[..19].try_into().map_err(|_| fmt::Error)?));
    }
    let mut micros = since_epoch.subsec_micros();
    text[19] = b'.';
    for digit in text[20..26].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    text[26] = b'Z';
    writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01: Howard
/// Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.writer.write_char(',')?;
                write_json_str(self.writer, field.name())?;
                self.writer.write_char(':')?;
                value(self.writer)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| write_json_str(w, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.field(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%display` fields and the message arrive here: escape them while they are formatted.
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

pub(super) fn write_json_str(writer: &mut impl fmt::Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

/// Escapes what JSON strings may not contain raw: quotes, backslashes and control characters.
pub(super) struct Escaped<'a, W: fmt::Write>(pub(super) &'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Every character to escape is ASCII, and no byte of a multi-byte UTF-8 character is,
        // so scanning bytes finds them and slicing there stays on character boundaries.
        let mut plain = 0;
        for (i, &b) in text.as_bytes().iter().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::traced_lines as lines;
    use std::time::Duration;

    #[test]
    fn an_event_becomes_one_json_object_with_its_fields_flattened() {
        let logged = lines(|| {
            tracing::info!(method = %"POST", status = 200u16, customer_id = Some(42i64), replayed = false, latency = 0.5, "request");
        });
        assert_eq!(logged.len(), 1);
        let line = &logged[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["method"], "POST");
        assert_eq!(line["status"], 200);
        assert_eq!(line["customer_id"], 42);
        assert_eq!(line["replayed"], false);
        assert_eq!(line["latency"], 0.5);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        assert_eq!(line["target"], module_path!());
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        let nasty = "say \"hi\"\\\n\t\u{1}\u{7f} ünïcode";
        let logged = lines(|| tracing::warn!(error = nasty, shown = %nasty, "{nasty}"));
        assert_eq!(logged[0]["error"], nasty);
        assert_eq!(logged[0]["shown"], nasty);
        assert_eq!(logged[0]["message"], nasty);
    }

    #[test]
    fn timestamps_match_tracing_subscribers_own_format() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
        // Ours for a known instant, twice (fresh and from the cached second), then a leap day.
        let instant = std::time::UNIX_EPOCH + Duration::new(1_717_245_296, 123_456_789);
        for _ in 0..2 {
            let mut ours = String::new();
            write_timestamp(&mut ours, instant).unwrap();
            assert_eq!(ours, "2024-06-01T12:34:56.123456Z");
        }
        let mut leap = String::new();
        write_timestamp(
            &mut leap,
            std::time::UNIX_EPOCH + Duration::from_secs(951_868_799),
        )
        .unwrap();
        assert_eq!(leap, "2000-02-29T23:59:59.000000Z");
        // And the same shape as the stock timer for now, to the second.
        let mut stock = String::new();
        SystemTime
            .format_time(&mut Writer::new(&mut stock))
            .unwrap();
        let mut ours = String::new();
        write_timestamp(&mut ours, std::time::SystemTime::now()).unwrap();
        assert_eq!(ours.len(), stock.len(), "{ours} vs {stock}");
        assert_eq!(ours[..4], stock[..4], "{ours} vs {stock}");
    }

    #[test]
    fn absent_optional_fields_are_left_out() {
        let none: Option<i64> = None;
        let logged = lines(|| tracing::info!(customer_id = none, "request"));
        assert!(logged[0].get("customer_id").is_none(), "{}", logged[0]);
    }
}
