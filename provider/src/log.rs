//! One JSON object per log line, written straight into a shared output buffer.
//!
//! Two writers share one line shape (`timestamp`, `level`, `target`, `message`, then fields):
//! - [`JsonLine`], the `tracing` event format for the few lifecycle lines (listening, signals,
//!   drain), without the stock JSON formatter's per-event map of `serde_json::Value`s;
//! - [`Access`], the one line per request, written without `tracing`'s per-field dispatch: at
//!   100,000 requests/s the dispatch and `fmt` machinery cost more than the rest of a charge
//!   (`cargo xtask bench provider`). It honours `PROVIDER_LOG` like any event of its target.
//!
//! [`LogBuffer`] batches the lines into few writes instead of one `write(2)` per line.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
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
fn write_timestamp(writer: &mut impl fmt::Write, time: SystemTime) -> fmt::Result {
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

fn write_json_str(writer: &mut impl fmt::Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

/// Escapes what JSON strings may not contain raw: quotes, backslashes and control characters.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

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

/// The `target` of access lines: `PROVIDER_LOG=warn,provider::access=info` keeps only them.
pub const ACCESS_TARGET: &str = "provider::access";

/// One answered request, as its access line says it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub outcome: &'a str,
    pub customer_id: Option<i64>,
    pub idempotency_key: bool,
    pub error: Option<&'a str>,
    pub latency_us: u64,
}

thread_local! {
    /// The line being built: one allocation per thread, reused for every request.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
}

impl Access<'_> {
    /// Writes the line into `out` (one `write_all`, so lines never interleave).
    pub fn log(&self, out: &LogBuffer) {
        LINE.with(|line| {
            // Only re-entered if writing a line could log, which it cannot; skip rather than panic.
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            if self.format(&mut line, SystemTime::now()).is_ok() {
                out.write_line(line.as_bytes());
            }
        });
    }

    /// The same shape [`JsonLine`] gives an INFO event of [`ACCESS_TARGET`] with these fields.
    fn format(&self, line: &mut String, now: SystemTime) -> fmt::Result {
        // Quotes ride along with the constant parts: fewer, longer copies.
        let mut number = itoa::Buffer::new();
        line.push_str("{\"timestamp\":\"");
        write_timestamp(line, now)?;
        // The target is ACCESS_TARGET (a test holds the two together).
        line.push_str("\",\"level\":\"INFO\",\"target\":\"provider::access\",\"message\":\"request\",\"method\":\"");
        Escaped(&mut *line).write_str(self.method)?;
        line.push_str("\",\"path\":\"");
        Escaped(&mut *line).write_str(self.path)?;
        line.push_str("\",\"status\":");
        line.push_str(number.format(self.status));
        line.push_str(",\"outcome\":\"");
        Escaped(&mut *line).write_str(self.outcome)?;
        line.push('"');
        if let Some(customer_id) = self.customer_id {
            line.push_str(",\"customer_id\":");
            line.push_str(number.format(customer_id));
        }
        line.push_str(if self.idempotency_key {
            ",\"idempotency_key\":true"
        } else {
            ",\"idempotency_key\":false"
        });
        if let Some(error) = self.error {
            line.push_str(",\"error\":");
            write_json_str(line, error)?;
        }
        line.push_str(",\"latency_us\":");
        line.push_str(number.format(self.latency_us));
        line.push_str("}\n");
        Ok(())
    }
}

/// Lines a shard holds before they are written out (a full shard is one `write(2)`).
const SHARD_BYTES: usize = 32 * 1024;
/// Shards, assigned to threads in turn: more than the runtime has workers on a small node.
const SHARDS: usize = 8;

/// An output shared by all threads, buffered per thread: each thread appends its lines to its own
/// shard, written out when full, every `period` by a small thread (see [`LogBuffer::stdout`]), and
/// by [`LogBuffer::flush`] before the process exits.
///
/// With one buffer for all, every line moved the lock and the buffer's tail between the cores'
/// caches; a shard is touched by one thread (and the flusher). Each line is appended whole, so
/// lines never interleave; one thread's lines keep their order, and lines of different threads
/// may be out of order by up to one period (each line carries its timestamp). If the process is
/// killed with SIGKILL, at most one period of lines is lost.
#[derive(Clone)]
pub struct LogBuffer(Arc<Shared>);

struct Shared {
    out: Mutex<Box<dyn io::Write + Send>>,
    shards: [Shard; SHARDS],
}

/// One cache line (pair) per shard, so neighbouring shards' locks don't share one.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Vec<u8>>);

thread_local! {
    /// This thread's shard index, handed out in turn on its first line.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl LogBuffer {
    /// Standard output, flushed every `period` by a thread named `log-flush`.
    pub fn stdout(period: Duration) -> LogBuffer {
        let out = LogBuffer::new(Box::new(io::stdout()));
        let flusher = out.clone();
        std::thread::Builder::new()
            .name("log-flush".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(period);
                    flusher.flush();
                }
            })
            .expect("the OS can start one more thread at start-up");
        out
    }

    /// Any output, written to when a shard fills and by [`LogBuffer::flush`].
    pub fn new(out: Box<dyn io::Write + Send>) -> LogBuffer {
        LogBuffer(Arc::new(Shared {
            out: Mutex::new(out),
            shards: Default::default(),
        }))
    }

    /// Writes out every buffered line; errors (stdout closed) leave nothing else to report to.
    pub fn flush(&self) {
        // Locks are always taken shard first, then output, as `write_line` does.
        for shard in &self.0.shards {
            let mut lines = lock(&shard.0);
            if !lines.is_empty() {
                let _ = lock(&self.0.out).write_all(&lines);
                lines.clear();
            }
        }
        let _ = lock(&self.0.out).flush();
    }

    /// Appends one whole line; an output that fails (stdout closed) loses lines, not requests.
    pub fn write_line(&self, line: &[u8]) {
        let mut lines = lock(&self.0.shards[SHARD.with(|i| *i)].0);
        if lines.capacity() == 0 {
            lines.reserve_exact(SHARD_BYTES);
        }
        lines.extend_from_slice(line);
        if lines.len() >= SHARD_BYTES - 1024 {
            let _ = lock(&self.0.out).write_all(&lines);
            lines.clear();
            // A huge line (a long URI) grew the shard: give the memory back.
            lines.shrink_to(SHARD_BYTES);
        }
    }
}

/// A panic while holding a lock leaves at worst a partial line; keep logging.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

/// Hands each event's bytes to [`LogBuffer::write_line`]: `tracing-subscriber` writes an event,
/// newline included, with one `write_all`.
pub struct EventWriter<'a>(&'a LogBuffer);

impl io::Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// An output that keeps what is written, for reading back as lines.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| serde_json::from_str(line).expect("every line is one JSON object"))
                .collect()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        captured.json_lines()
    }

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

    fn access_lines(accesses: &[Access<'_>]) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        for access in accesses {
            access.log(&out);
        }
        out.flush();
        captured.json_lines()
    }

    const CHARGED: Access<'static> = Access {
        method: "POST",
        path: "/v1/charges",
        status: 200,
        outcome: "charged",
        customer_id: Some(42),
        idempotency_key: false,
        error: None,
        latency_us: 17,
    };

    #[test]
    fn an_access_line_has_the_shape_of_the_same_tracing_event() {
        let mut direct = access_lines(&[CHARGED]).remove(0);
        let mut traced = lines(|| {
            tracing::info!(
                target: ACCESS_TARGET,
                method = "POST",
                path = "/v1/charges",
                status = 200u16,
                outcome = "charged",
                customer_id = Some(42i64),
                idempotency_key = false,
                error = None::<&str>,
                latency_us = 17u64,
                "request"
            )
        })
        .remove(0);
        for line in [&mut direct, &mut traced] {
            let stamp = line["timestamp"].take();
            assert!(stamp.as_str().unwrap().ends_with('Z'), "{stamp}");
        }
        assert_eq!(direct, traced);
        assert_eq!(direct["target"], "provider::access");
    }

    #[test]
    fn access_lines_escape_what_the_client_sent_and_leave_out_absent_fields() {
        let path = "/\"}{\\\n\u{1}ü";
        let error = "bad \"value\"\n";
        let logged = access_lines(&[
            Access {
                path,
                status: 400,
                outcome: "bad_request",
                customer_id: None,
                error: Some(error),
                idempotency_key: true,
                ..CHARGED
            },
            CHARGED,
        ]);
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0]["path"], path);
        assert_eq!(logged[0]["error"], error);
        assert_eq!(logged[0]["idempotency_key"], true);
        assert!(logged[0].get("customer_id").is_none(), "{}", logged[0]);
        assert!(logged[1].get("error").is_none(), "{}", logged[1]);
        assert_eq!(logged[1]["customer_id"], 42);
        assert_eq!(logged[1]["latency_us"], 17);
    }

    #[test]
    fn extreme_numbers_are_written_exactly() {
        let logged = access_lines(&[Access {
            customer_id: Some(i64::MIN),
            latency_us: u64::MAX,
            ..CHARGED
        }]);
        assert_eq!(logged[0]["customer_id"], i64::MIN);
        assert_eq!(logged[0]["latency_us"], u64::MAX);
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_once_each_and_in_order_per_thread() {
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        std::thread::scope(|scope| {
            for thread in 0..(SHARDS + 3) {
                let out = out.clone();
                scope.spawn(move || {
                    for n in 0..2_000 {
                        out.write_line(format!("{{\"thread\":{thread},\"n\":{n}}}\n").as_bytes());
                    }
                });
            }
        });
        // Full shards were written out on their own, before any flush.
        assert!(!captured.0.lock().unwrap().is_empty());
        out.flush();
        let mut next = vec![0; SHARDS + 3];
        for line in captured.json_lines() {
            let thread = line["thread"].as_u64().unwrap() as usize;
            assert_eq!(line["n"], next[thread], "thread {thread} out of order");
            next[thread] += 1;
        }
        assert_eq!(next, vec![2_000; SHARDS + 3]);
    }

    /// Writers filling their shards while another thread flushes take the same two locks: in
    /// opposite orders they deadlock (as a first version did within seconds under load).
    #[test]
    fn flushing_while_writers_fill_their_shards_does_not_deadlock() {
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        let (done, finished) = std::sync::mpsc::channel();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let out = out.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        out.write_line(&[b'x'; 200]);
                    }
                    let _ = done.send(());
                })
            })
            .collect();
        let flusher = {
            let out = out.clone();
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    out.flush();
                }
                let _ = done.send(());
            })
        };
        for _ in 0..5 {
            finished
                .recv_timeout(Duration::from_secs(20))
                .expect("writers and flusher finish: no deadlock");
        }
        for thread in writers.into_iter().chain([flusher]) {
            thread.join().unwrap();
        }
        out.flush();
        assert_eq!(captured.0.lock().unwrap().len(), 4 * 20_000 * 200);
    }

    #[test]
    fn a_line_larger_than_a_shard_is_written_whole() {
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        let path = "/".repeat(3 * SHARD_BYTES);
        Access {
            path: &path,
            ..CHARGED
        }
        .log(&out);
        CHARGED.log(&out);
        out.flush();
        let logged = captured.json_lines();
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0]["path"], path.as_str());
        assert_eq!(logged[1]["path"], "/v1/charges");
    }
}
