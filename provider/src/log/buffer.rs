//! Per-thread buffering of whole log lines into one shared output, flushed when full, on a
//! period and on exit.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
mod tests {
    use super::*;
    use crate::testing::Captured;

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
        assert!(!captured.bytes().is_empty());
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
        assert_eq!(captured.bytes().len(), 4 * 20_000 * 200);
    }

    #[test]
    fn a_line_larger_than_a_shard_is_written_whole() {
        let captured = Captured::default();
        let out = LogBuffer::new(Box::new(captured.clone()));
        let path = "/".repeat(3 * SHARD_BYTES);
        out.write_line(format!("{{\"path\":\"{path}\"}}\n").as_bytes());
        out.write_line(b"{\"path\":\"/v1/charges\"}\n");
        out.flush();
        let logged = captured.json_lines();
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0]["path"], path.as_str());
        assert_eq!(logged[1]["path"], "/v1/charges");
    }
}
