//! The text log format (`--log-format pretty`): tracing-subscriber's own
//! format, except for the access line, written here without its generic
//! machinery, since a busy server writes one per request.
//!
//! The access line reads as tracing-subscriber writes it (timestamp, level,
//! target, `name=value` fields; no span prefix, since it is logged outside
//! the request's span and carries the request id itself); what it
//! saves is the work: the timestamp's date and time of day are formatted
//! once a second, integers and milliseconds without `core::fmt`, and no
//! styling is looked up when there is none. Written to a terminal (colours
//! on) the line goes through tracing-subscriber's format, as every other
//! line does.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime as Timestamp;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the access line, which `server::access` logs.
pub const ACCESS_TARGET: &str = "wedge::access";

/// tracing-subscriber's text format, with the access line written by hand.
#[derive(Default)]
pub struct TextFormat {
    others: Format<Full, Timestamp>,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes() || meta.target() != ACCESS_TARGET {
            return self.others.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer, SystemTime::now())?;
        // The level right-aligned in five columns, as tracing-subscriber
        // writes it.
        write!(writer, " {:>5} {}: ", meta.level().as_str(), meta.target())?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// `2026-12-03T11:35:43.550121Z`, as tracing-subscriber's `SystemTime`
/// writes it: UTC, to the microsecond.
fn write_timestamp(writer: &mut impl Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        /// The second last formatted on this thread, and its text up to
        /// the seconds (`2026-12-03T11:35:43`).
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            let whole = UNIX_EPOCH + std::time::Duration::from_secs(second);
            text.clear();
            write!(text, "{}", humantime::format_rfc3339_seconds(whole))?;
            text.truncate(text.trim_end_matches('Z').len());
            *cached = second;
        }
        writer.write_str(text)
    })?;
    let micros = since_epoch.subsec_micros();
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    writer.write_char('.')?;
    for _ in digits.len()..6 {
        writer.write_char('0')?;
    }
    writer.write_str(digits)?;
    writer.write_char('Z')
}

/// Writes an event's fields as `name=value`, space-separated, as
/// tracing-subscriber's default field format does.
struct Fields<'a, W> {
    writer: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    fn write(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(self.writer));
        }
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.write(field, |w| write_millis(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Display fields (`%value`) arrive here, and write as Display.
        self.write(field, |w| write!(w, "{value:?}"));
    }
}

/// A count of milliseconds to the microsecond (as the access line's `ms`
/// and `instantiate_ms` are) written as `{:?}` writes it (`0.0`, `1.25`,
/// `12.5`), without float formatting; anything else through `{:?}`.
fn write_millis(writer: &mut impl Write, millis: f64) -> fmt::Result {
    let micros = (millis * 1000.0).round();
    if !(0.0..1e15).contains(&micros) || micros / 1000.0 != millis {
        return write!(writer, "{millis:?}");
    }
    // Exact: in range, a whole number of microseconds.
    let micros = micros as u64;
    let mut digits = itoa::Buffer::new();
    writer.write_str(digits.format(micros / 1000))?;
    writer.write_char('.')?;
    let fraction = micros % 1000;
    if fraction == 0 {
        return writer.write_char('0');
    }
    let (mut fraction, mut places) = (fraction, 3);
    while fraction % 10 == 0 {
        fraction /= 10;
        places -= 1;
    }
    let digits = digits.format(fraction);
    for _ in digits.len()..places {
        writer.write_char('0')?;
    }
    writer.write_str(digits)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .expect("capture lock")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("utf-8")
        }
    }

    /// An access event as `Metered` logs it, with `ms` as given.
    fn access_event(ms: f64, instantiate_ms: f64) {
        let id = String::from("4ca9bf923beabf02");
        tracing::info!(
            target: "wedge::access",
            id = %id,
            client = %"127.0.0.1:56718",
            method = %http::Method::GET,
            path = %"/api/hello",
            route = %"-",
            status = 200u16,
            bytes_in = 0u64,
            bytes_out = 12_345u64,
            ms,
            instantiate_ms,
            cache = %"-",
            complete = true,
        );
    }

    /// What each format writes for the same events, timestamps cut off.
    fn written(format: impl Fn(Captured) -> tracing::Dispatch, events: impl Fn()) -> Vec<String> {
        let captured = Captured::default();
        tracing::dispatcher::with_default(&format(captured.clone()), events);
        captured
            .text()
            .lines()
            .map(|line| line.split_once(' ').expect("a timestamp").1.to_owned())
            .collect()
    }

    #[test]
    fn the_access_line_reads_as_tracing_subscriber_writes_it() {
        let events = || {
            for (ms, instantiate) in [
                (0.0, 0.0),
                (0.751, 0.211),
                (1.25, 0.05),
                (12.5, 0.001),
                (1000.0, 3.1),
                (123_456.789, 0.12),
                (f64::NAN, 1e-7),
            ] {
                access_event(ms, instantiate);
            }
            tracing::info!(target: "wedge::live", route = "/x", "route added");
        };
        let ours = written(
            |out| {
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(out)
                    .event_format(TextFormat::default())
                    .into()
            },
            events,
        );
        let theirs = written(
            |out| {
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(out)
                    .into()
            },
            events,
        );
        assert_eq!(ours.len(), 8);
        assert_eq!(ours, theirs);
        assert!(ours[1].contains("bytes_out=12345 ms=0.751 instantiate_ms=0.211 cache=-"));
    }

    #[test]
    fn timestamps_are_rfc3339_to_the_microsecond_in_utc() {
        let at =
            |secs, micros| UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        let mut text = String::new();
        for (time, expected) in [
            (at(1_796_297_743, 550_121), "2026-12-03T11:35:43.550121Z"),
            (at(1_796_297_743, 7), "2026-12-03T11:35:43.000007Z"),
            (at(1_796_297_744, 0), "2026-12-03T11:35:44.000000Z"),
            (at(0, 999_999), "1970-01-01T00:00:00.999999Z"),
        ] {
            text.clear();
            write_timestamp(&mut text, time).expect("written");
            assert_eq!(text, expected);
        }
    }
}
