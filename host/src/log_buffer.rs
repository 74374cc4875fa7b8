//! Where log lines go once the server serves: appended to a buffer in
//! memory, and written to stderr by a thread of its own in batches.
//!
//! A serving thread pays for formatting its line and copying it into the
//! buffer under a lock held for that copy; it never waits for stderr and
//! never wakes another thread per line (only when the buffer was empty).
//! The log thread, woken by the first line of a batch, waits
//! [`BATCH_WINDOW`] for more, then writes them all in one go: under load,
//! a few hundred access-log lines per `write`. Past [`MAX_PENDING`] bytes
//! waiting (stderr slower than the lines arrive), lines are dropped and
//! counted (`wedge_log_lines_dropped_total`), never blocking a request.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the log thread gathers lines after the first of a batch: the
/// most a line waits before it is written.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Bytes of lines that may wait; past them new lines are dropped. At a
/// hundred thousand 200-byte lines a second, a batch is 200 KB, so this
/// absorbs a stall of stderr of about 50 ms at that rate, and of seconds
/// at the rates one core serves.
pub const MAX_PENDING: usize = 1 << 20;

/// The writing side: cheap to clone, one per log line.
#[derive(Clone)]
pub struct LogBuffer {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    closed: bool,
}

/// Writes what waits and stops the log thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogBuffer {
    /// Starts the log thread, writing to `out`.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(LogBuffer, FlushGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("wedge-log".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run(out)
            })?;
        Ok((
            LogBuffer {
                shared: shared.clone(),
            },
            FlushGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Lines dropped so far because too many waited.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bytes: still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            let closed = {
                let mut state = self.lock();
                while state.pending.is_empty() && !state.closed {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if state.pending.is_empty() {
                    return; // Closed, and everything written.
                }
                state.closed
            };
            if !closed {
                std::thread::sleep(BATCH_WINDOW);
            }
            std::mem::swap(&mut batch, &mut self.lock().pending);
            // Nothing to tell anyone if stderr is gone.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > MAX_PENDING {
                batch = Vec::new();
            }
        }
    }
}

impl Write for LogBuffer {
    /// Appends one formatted event (the fmt layer writes each in one call).
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if state.pending.len() + line.len() > MAX_PENDING {
            drop(state);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        drop(state);
        if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// A `Write` that records what reached it and in how many writes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<StdMutex<(Vec<u8>, usize)>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut seen = self.0.lock().expect("recorder lock");
            seen.0.extend_from_slice(bytes);
            seen.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_all_are_out_after_the_guard() {
        let recorder = Recorder::default();
        let (buffer, guard) = LogBuffer::start(recorder.clone()).expect("the log thread");
        let mut expected = Vec::new();
        for i in 0..1000 {
            let line = format!("line {i}\n");
            expected.extend_from_slice(line.as_bytes());
            buffer.clone().write_all(line.as_bytes()).expect("buffered");
        }
        drop(guard);
        let seen = recorder.0.lock().expect("recorder lock");
        assert_eq!(seen.0, expected);
        assert!(seen.1 < 100, "{} writes for 1000 lines", seen.1);
        assert_eq!(buffer.dropped_lines(), 0);
    }

    #[test]
    fn past_the_limit_lines_are_dropped_and_counted() {
        /// A stderr that never takes anything: the log thread is stuck.
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (buffer, guard) = LogBuffer::start(Stuck(stuck)).expect("the log thread");
        let line = vec![b'x'; 64 << 10];
        for _ in 0..(3 * MAX_PENDING / line.len()) {
            buffer.clone().write_all(&line).expect("never an error");
        }
        assert!(buffer.dropped_lines() > 0);
        drop(release);
        drop(guard);
    }
}
