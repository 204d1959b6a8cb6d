//! Where log lines go: a shared buffer that a background thread writes out
//! every [`FLUSH_INTERVAL`], or as soon as it holds [`FLUSH_AT`] bytes.
//!
//! A request that logs a line only appends to memory: no syscall, and no
//! wake-up of another thread per line (a channel to a blocked writer thread
//! cost one futex wake per request, most of the access log's price). This
//! is nginx's `access_log … buffer=64k flush=1s` trade with a shorter
//! interval. Lines are never dropped: when the output cannot keep up and the
//! buffer reaches [`BUFFER_CAP`], loggers wait for the writer;
//! [`FlushGuard`] writes what is left when the process ends.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in memory before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// A buffer this full is written at once instead of waiting for the interval.
pub const FLUSH_AT: usize = 64 * 1024;

/// A buffer this full makes loggers wait for the writer (lossless back-pressure).
pub const BUFFER_CAP: usize = 8 * 1024 * 1024;

/// How long the process waits at exit for what is buffered to be written:
/// an output that stays blocked (a full pipe nobody reads) must not keep
/// the process from ending.
pub const EXIT_FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// The logging side: hand it to `tracing_subscriber::fmt().with_writer(…)`.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is buffered and stops the writer thread when dropped (waiting
/// at most [`EXIT_FLUSH_DEADLINE`]); keep it alive for as long as the
/// process logs.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits on it for a full buffer or the end.
    filled: Condvar,
    /// Loggers wait on it while the buffer is at [`BUFFER_CAP`].
    drained: Condvar,
}

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    closed: bool,
    /// The writer thread has written everything and returned.
    finished: bool,
}

impl BatchedWriter {
    /// Starts the writer thread that moves lines to `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> std::io::Result<(BatchedWriter, FlushGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_out(&shared, out)
            })?;
        let guard = FlushGuard {
            shared: shared.clone(),
            thread: Some(thread),
        };
        Ok((BatchedWriter { shared }, guard))
    }

    /// Appends `bytes` (whole lines) to the buffer; what `Write` does,
    /// without a clone of the writer per line.
    pub fn append(&self, bytes: &[u8]) {
        let mut state = self.shared.lock();
        while state.buffer.len() >= BUFFER_CAP && !state.closed {
            state = self
                .shared
                .drained
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.closed && state.buffer.len() >= BUFFER_CAP {
            // The process is ending and its output does not drain.
            return;
        }
        let before = state.buffer.len();
        state.buffer.extend_from_slice(bytes);
        // Only the append that crosses the mark pays for a wake-up.
        if before < FLUSH_AT && state.buffer.len() >= FLUSH_AT {
            self.shared.filled.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer thread: swaps the buffer out and writes it, until closed and empty.
fn write_out(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(FLUSH_AT);
    loop {
        let closed = {
            let mut state = shared.lock();
            if state.buffer.len() < FLUSH_AT && !state.closed {
                state = shared
                    .filled
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut state.buffer, &mut batch);
            state.closed
        };
        shared.drained.notify_all();
        if !batch.is_empty() {
            // Nowhere to report a failing log output; the lines are gone either way.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
        }
        if closed {
            let mut state = shared.lock();
            if state.buffer.is_empty() {
                state.finished = true;
                shared.drained.notify_all();
                return;
            }
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.filled.notify_one();
        self.shared.drained.notify_all();
        let (state, _) = self
            .shared
            .drained
            .wait_timeout_while(state, EXIT_FLUSH_DEADLINE, |state| !state.finished)
            .unwrap_or_else(|e| e.into_inner());
        let finished = state.finished;
        drop(state);
        if let Some(thread) = self.thread.take().filter(|_| finished) {
            let _ = thread.join();
        }
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read while the writer thread holds it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_a_full_buffer() {
        let sink = Sink::default();
        let (mut writer, _guard) = BatchedWriter::spawn(sink.clone()).unwrap();
        writer.write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 20;
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(FLUSH_INTERVAL / 5);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"one line\n");
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (writer, guard) = BatchedWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        writer
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: std::collections::HashSet<&str> = written.lines().collect();
        assert_eq!(written.lines().count(), 80_000);
        for t in 0..4 {
            for i in [0, 9_999, 19_999] {
                assert!(lines.contains(format!("thread {t} line {i}").as_str()));
            }
        }
    }

    #[test]
    fn a_slow_output_makes_loggers_wait_instead_of_growing_the_buffer() {
        /// Takes a long pause on its first write, as a blocked pipe would.
        struct Stalling(Sink, bool);
        impl Write for Stalling {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                if !self.1 {
                    self.1 = true;
                    std::thread::sleep(Duration::from_millis(300));
                }
                self.0.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (mut writer, guard) = BatchedWriter::spawn(Stalling(sink.clone(), false)).unwrap();
        let line = vec![b'x'; 1023];
        let mut peak = 0;
        for _ in 0..(3 * BUFFER_CAP / 1024) {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
            peak = peak.max(writer.shared.lock().buffer.len());
        }
        assert!(peak <= BUFFER_CAP + 1024, "buffer grew to {peak}");
        drop(guard);
        assert_eq!(sink.0.lock().unwrap().len(), 3 * BUFFER_CAP);
    }

    #[test]
    fn the_guard_gives_up_on_an_output_that_never_drains() {
        /// Blocks its first write for far longer than the exit deadline.
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (mut writer, guard) = BatchedWriter::spawn(Stuck).unwrap();
        writer.write_all(&vec![b'x'; FLUSH_AT]).unwrap();
        std::thread::sleep(FLUSH_INTERVAL * 2);
        let started = std::time::Instant::now();
        drop(guard);
        assert!(started.elapsed() < EXIT_FLUSH_DEADLINE + Duration::from_secs(1));
    }
}
