//! Where access lines wait to be written: one buffer, appended to under a
//! short lock by every worker, and written out in batches by one thread of
//! its own.
//!
//! A request's only cost is a copy of its line into the buffer: no
//! allocation, no channel message, no wake-up of another thread per line
//! (tracing-appender's writer, used before, made all three; with it the
//! access log cost a pinned one-core portero 14% of its requests per
//! second, nginx's own 7%: BENCHMARKS.md). The writer
//! thread sleeps while nothing is buffered; after the first line it waits
//! up to [`INTERVAL`] for more, or until [`BATCH`] bytes are buffered, and
//! writes them with one `write`. A slow terminal or disk only makes the
//! buffer grow; beyond [`MAX_BACKLOG`] lines are dropped (and counted)
//! rather than requests held.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest a line waits in the buffer while traffic trickles in.
pub(super) const INTERVAL: Duration = Duration::from_millis(100);
/// Buffered bytes that are written at once, without waiting.
pub(super) const BATCH: usize = 64 * 1024;
/// Buffered bytes beyond which lines are dropped.
pub(super) const MAX_BACKLOG: usize = 16 * 1024 * 1024;

pub(super) struct Buffer {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    dropped: u64,
    closing: bool,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: keep them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues one line (with its newline); never waits for the writer.
    pub(super) fn push(&self, line: &[u8]) {
        let mut s = self.lock();
        let before = s.lines.len();
        if before + line.len() > MAX_BACKLOG {
            s.dropped += 1;
            return;
        }
        s.lines.extend_from_slice(line);
        let after = s.lines.len();
        drop(s);
        // The writer sleeps on an empty buffer, and waits for a batch after
        // the first line: wake it at those two moments only.
        if before == 0 || (before < BATCH && after >= BATCH) {
            self.wake.notify_one();
        }
    }
}

/// Writes what is buffered until dropped; dropping it writes the rest and
/// waits for the writer thread.
pub struct Flush {
    buffer: Arc<Buffer>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.buffer.lock().closing = true;
        self.buffer.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A buffer whose lines a new thread writes to `out`.
pub(super) fn start(out: Box<dyn Write + Send>) -> std::io::Result<(Arc<Buffer>, Flush)> {
    let buffer = Arc::new(Buffer {
        state: Mutex::default(),
        wake: Condvar::new(),
    });
    let b = buffer.clone();
    let thread = std::thread::Builder::new()
        .name("portero-access-log".into())
        .spawn(move || run(&b, out))?;
    let flush = Flush {
        buffer: buffer.clone(),
        thread: Some(thread),
    };
    Ok((buffer, flush))
}

fn run(buffer: &Buffer, mut out: Box<dyn Write + Send>) {
    let mut batch: Vec<u8> = Vec::with_capacity(2 * BATCH);
    loop {
        let (dropped, closing) = {
            let mut s = buffer.lock();
            while s.lines.is_empty() && !s.closing {
                s = buffer
                    .wake
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if s.lines.len() < BATCH && !s.closing {
                s = buffer
                    .wake
                    .wait_timeout(s, INTERVAL)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            // The emptied batch buffer becomes the next one to fill: the
            // allocations go round.
            batch.clear();
            std::mem::swap(&mut s.lines, &mut batch);
            (std::mem::take(&mut s.dropped), s.closing)
        };
        // A write error (a full disk, a closed terminal) loses these lines;
        // there is nowhere better to say so than the next ones.
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "portero: {dropped} access lines dropped: the log could not be written fast enough"
            );
        }
        let _ = out.flush();
        if batch.capacity() > 4 * BATCH {
            batch = Vec::with_capacity(2 * BATCH);
        }
        if closing && buffer.lock().lines.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read, counting `write` calls.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_flush_is_dropped() {
        let out = Shared::default();
        let (buffer, flush) = start(Box::new(out.clone())).unwrap();
        let lines: Vec<String> = (0..20_000).map(|i| format!("line {i}\n")).collect();
        for l in &lines {
            buffer.push(l.as_bytes());
        }
        drop(flush);
        let (text, writes) = out.0.lock().unwrap().clone();
        assert_eq!(String::from_utf8(text).unwrap(), lines.concat());
        // Batches, not a write per line.
        assert!(writes < 200, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn a_lone_line_is_written_without_more_traffic() {
        let out = Shared::default();
        let (buffer, _flush) = start(Box::new(out.clone())).unwrap();
        buffer.push(b"one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.0.lock().unwrap().0, b"one\n");
    }

    /// A `Write` that blocks until released.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Shared);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (m, c) = &*self.0;
            let mut go = m.lock().unwrap();
            while !*go {
                go = c.wait(go).unwrap();
            }
            self.1.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_beyond_the_backlog_and_says_so() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Shared::default();
        let (buffer, flush) = start(Box::new(Stuck(gate.clone(), out.clone()))).unwrap();
        buffer.push(b"first\n");
        // The writer takes "first" and blocks on it; then the backlog fills.
        while !buffer.lock().lines.is_empty() {
            std::thread::yield_now();
        }
        let line = [b'x'; 1023]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        let fits = MAX_BACKLOG / line.len();
        for _ in 0..fits + 10 {
            buffer.push(&line);
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(flush);
        let text = String::from_utf8(out.0.lock().unwrap().0.clone()).unwrap();
        assert!(text.starts_with("first\n"));
        assert_eq!(text.matches('x').count(), fits * 1023);
        assert!(
            text.contains("portero: 10 access lines dropped"),
            "{}",
            &text[text.len() - 200..]
        );
    }
}
