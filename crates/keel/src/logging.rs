//! keel's log lines: the text `tracing-subscriber`'s default format writes
//! without colors (`2026-12-01T02:07:42.123456Z  INFO request method=GET
//! ...`), written at a fraction of its cost.
//!
//! `keel serve` logs a line per request, so the line's cost is paid by every
//! request. The default format writes the message a character at a time
//! (through its escaping writer) and the timestamp and level through
//! `format!` machinery: about 9,400 instructions a request line under
//! callgrind, a quarter of what keel serve spent per request beyond a
//! hand-written router. [`PlainLine`] writes the same bytes, with the same
//! escaping, in about a fifth of that: the date and time up to the second
//! are formatted once a second, and text with nothing to escape is copied
//! whole.
//!
//! A terminal keeps the default, colored format: a person reads it, and
//! speed does not matter there.
//!
//! Lines reach stderr through [`stderr_writer`], off the request threads.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::Layer;
use tracing_subscriber::registry::LookupSpan;

/// A writer to stderr for the `fmt` layer that does not write on the
/// caller's thread: each line is queued, and a thread of its own writes the
/// queue through a buffer, so a burst of lines costs one write to stderr,
/// not one each. `keel serve` logs a line per request; written in place,
/// each line was a system call on a request thread, and a slow reader of
/// stderr (a pipe, a terminal) held the request threads. No line is
/// dropped: when the queue is full a caller waits, as it did before. The
/// guard writes what is queued when dropped: keep it until the end of
/// `main`. It waits at most about a second for that (tracing-appender's
/// bound), so the queue is kept short enough to be written in far less:
/// [`QUEUED_LINES`].
pub fn stderr_writer() -> (
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("keel-log")
        .finish(std::io::BufWriter::new(std::io::stderr()))
}

/// Lines [`stderr_writer`] queues before a caller waits: about 1 MiB of
/// request lines, a few milliseconds of writing into a pipe or a file.
/// (tracing-appender's default, 128,000 lines, could take longer to write
/// out at exit than its guard waits.)
pub const QUEUED_LINES: usize = 8_192;

/// The format of a log line without colors, as the default format writes
/// it with its target hidden: timestamp (UTC, microseconds), level, the
/// spans the event is in, the message and the fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLine;

/// The `fmt` layer keel writes its logs with: [`PlainLine`] to `writer`, or
/// the default colored format when `ansi` (a terminal).
pub fn layer<S, W>(writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false);
    if ansi {
        Box::new(fmt.with_ansi(true))
    } else {
        Box::new(fmt.with_ansi(false).event_format(PlainLine))
    }
}

impl<S> FormatEvent<S, DefaultFields> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, DefaultFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str(level_text(*event.metadata().level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<DefaultFields>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        let mut fields = LineFields {
            writer: writer.by_ref(),
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The level as the default format pads it (five columns, right-aligned).
fn level_text(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Writes `now` as `2026-12-01T02:07:42.123456Z ` (the default format's
/// timestamp and the space after it). The part up to the second is kept per
/// thread and formatted again only when the second changes.
fn write_timestamp(writer: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let Ok(since_epoch) = now.duration_since(UNIX_EPOCH) else {
        return writer.write_str("<unknown time> ");
    };
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != seconds {
            text.clear();
            let date_time = chrono::DateTime::<chrono::Utc>::from(now);
            write!(text, "{}", date_time.format("%Y-%m-%dT%H:%M:%S"))?;
            *cached = seconds;
        }
        writer.write_str(text)
    })?;
    writer.write_char('.')?;
    write_digits(writer, u64::from(since_epoch.subsec_micros()), 6)?;
    writer.write_str("Z ")
}

/// An event's fields as the default format writes them: the message first
/// as it is (escaped), the others as `name=value` (`Debug`), one space
/// apart; `log.*` fields (metadata of a `log` record) left out.
struct LineFields<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl LineFields<'_> {
    /// Writes one field with `write` (given the writer and the field's
    /// name): after the separating space, unless an earlier field failed
    /// or it is a `log.*` field.
    fn field(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>, &str) -> fmt::Result) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separated = if self.first {
            self.first = false;
            Ok(())
        } else {
            self.writer.write_char(' ')
        };
        self.result = separated.and_then(|()| write(&mut self.writer, name));
    }

    /// A field other than the message: `name=` and its value.
    fn named(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        self.field(field, |writer, name| {
            writer.write_str(name.strip_prefix("r#").unwrap_or(name))?;
            writer.write_char('=')?;
            value(writer)
        });
    }

    /// An integer field (most of a request line's), written digit by digit
    /// rather than through `fmt`'s padding machinery.
    fn record_integer(&mut self, field: &Field, negative: bool, magnitude: u64) {
        if field.name() == "message" {
            let value = i128::from(magnitude) * if negative { -1 } else { 1 };
            return self.record_debug(field, &value);
        }
        self.named(field, |writer| {
            if negative {
                writer.write_char('-')?;
            }
            write_digits(writer, magnitude, 1)
        });
    }
}

/// Writes `value` in decimal, zero-padded to `width` digits (at most 20).
fn write_digits(writer: &mut Writer<'_>, value: u64, width: usize) -> fmt::Result {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    while rest > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // Only ASCII digits were written.
    writer.write_str(std::str::from_utf8(&digits[start..]).map_err(|_| fmt::Error)?)
}

impl Visit for LineFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |writer, _| Escaped(writer).write_str(value));
        } else {
            self.named(field, |writer| write!(writer, "{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_integer(field, false, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_integer(field, value < 0, value.unsigned_abs());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "message" {
            return self.record_debug(field, &value);
        }
        self.named(field, |writer| {
            writer.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.field(field, |writer, _| write!(Escaped(writer), "{value:?}"));
        } else {
            self.named(field, |writer| write!(writer, "{value:?}"));
        }
    }
}

/// Writes text with the control characters a terminal acts on escaped, as
/// the default format escapes a message (ESC, BEL, BS, FF, DEL as `\x..`,
/// C1 controls as `\u{..}`). Text with none of them is copied whole.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // C1 controls (U+0080..U+009F) are 0xC2 0x80..0x9F in UTF-8.
        let plain = !text
            .bytes()
            .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2));
        if plain {
            return self.0.write_str(text);
        }
        for ch in text.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

/// Log output kept in memory, for tests: a writer that appends to a
/// shared buffer (clones share it).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl CapturedLog {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        self.0
            .lock()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    //! The plain line is the default format's line, byte for byte, after
    //! the timestamp.

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// The same events through one layer: every line, timestamps cut off.
    fn lines_of(plain: bool) -> Vec<String> {
        let captured = CapturedLog::default();
        let writer = captured.clone();
        let make_writer = move || writer.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(make_writer)
            .with_ansi(false)
            .with_target(false);
        let events = || {
            let method = "GET";
            let micros = 1_234_u128;
            tracing::info!(
                %method,
                path = "/users/7",
                status = 200_u16,
                latency_ms = format_args!("{}.{:03}", micros / 1000, micros % 1000),
                statements = 1_u64,
                "request"
            );
            let span = tracing::info_span!("job", id = 7, r#type = "seed");
            let _entered = span.enter();
            tracing::warn!(
                failed = true,
                delta = -3_i64,
                zero = 0_u64,
                largest = u64::MAX,
                smallest = i64::MIN,
                detail = ?Some("x"),
                "a message with an \x1b[31mescape\x1b[0m, a bell\x07 and a C1 \u{9b} control"
            );
            tracing::error!("{}", "plain message, no fields");
        };
        if plain {
            let subscriber = tracing_subscriber::registry().with(fmt.event_format(PlainLine));
            tracing::subscriber::with_default(subscriber, events);
        } else {
            let subscriber = tracing_subscriber::registry().with(fmt);
            tracing::subscriber::with_default(subscriber, events);
        }
        captured
            .text()
            .lines()
            .map(|line| {
                let (stamp, rest) = line.split_once(' ').expect("a timestamp");
                assert!(
                    chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with('Z'),
                    "{line}"
                );
                assert_eq!(stamp.len(), "2026-12-01T02:07:42.123456Z".len(), "{line}");
                rest.to_owned()
            })
            .collect()
    }

    #[test]
    fn plain_lines_are_the_default_format_without_colors() {
        let plain = lines_of(true);
        assert_eq!(plain.len(), 3, "{plain:?}");
        assert_eq!(plain, lines_of(false));
        assert_eq!(
            plain[0],
            " INFO request method=GET path=\"/users/7\" status=200 latency_ms=1.234 statements=1"
        );
        assert!(plain[1].contains("\\x1b[31mescape") && plain[1].contains("\\u{9b}"));
    }

    #[test]
    fn the_timestamp_is_utc_to_the_microsecond() {
        let mut line = String::new();
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_764_555_462_000_042);
        // The same second twice (the second write takes the cached text),
        // then the next one, which must not.
        for at in [
            at,
            at + std::time::Duration::from_micros(900_000),
            at + std::time::Duration::from_secs(1),
        ] {
            write_timestamp(&mut Writer::new(&mut line), at).expect("written");
        }
        assert_eq!(
            line,
            "2025-12-01T02:17:42.000042Z 2025-12-01T02:17:42.900042Z 2025-12-01T02:17:43.000042Z "
        );
    }
}
