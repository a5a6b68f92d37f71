//! Logs: JSON lines on stderr, filtered by `RUST_LOG` (default `info`; `off` for the demo,
//! whose output is on stdout).
//!
//! Lines go through a queue to one writer thread, which writes whatever has queued up
//! at once: under load one `write` for many lines every few milliseconds, and no
//! request waits on the stderr lock another holds or wakes a thread per line. The queue is bounded and a full one makes the logger wait, so
//! no line is lost; [`Flush`] (held by `main`) writes what is left before the exit.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines that may wait for the writer thread before a logger has to wait too.
const QUEUE_LINES: usize = 4096;
/// Batches are written once they reach this size, so a slow reader sees steady output.
const MAX_BATCH: usize = 64 * 1024;
/// While lines keep coming, the writer gathers them for this long between writes.
const BATCH_PAUSE: Duration = Duration::from_millis(2);
/// How long the exit waits for the queue to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Message {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// Installs the global subscriber; a second call (tests) is a no-op. The returned guard
/// writes the queued lines when dropped.
pub fn init(json: bool, default_filter: &str) -> Flush {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    let writer = std::thread::Builder::new().name("log-writer".to_owned()).spawn(move || write_lines(&rx));
    if writer.is_err() {
        let builder = builder.with_writer(std::io::stderr);
        let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
        return Flush(None);
    }
    let builder = builder.with_writer(Queue(tx.clone()));
    let installed = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    // Not installed (a second call): dropping the last sender ends the writer thread.
    Flush(installed.is_ok().then_some(tx))
}

/// Writes the queued lines when dropped.
#[derive(Debug)]
pub struct Flush(Option<SyncSender<Message>>);

impl Drop for Flush {
    fn drop(&mut self) {
        let Some(tx) = &self.0 else { return };
        let (done, written) = mpsc::channel();
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

#[derive(Debug, Clone)]
struct Queue(SyncSender<Message>);

/// One event's bytes, queued when the formatter is done with it.
struct Line<'a> {
    queue: &'a Queue,
    bytes: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.bytes);
        // The writer thread is gone only if stderr failed: then write here.
        if let Err(mpsc::SendError(Message::Line(line))) = self.queue.0.send(Message::Line(line)) {
            let _ = std::io::stderr().write_all(&line);
        }
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line { queue: self, bytes: Vec::new() }
    }
}

fn write_lines(rx: &Receiver<Message>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushed = Vec::new();
    let mut busy = false;
    loop {
        // Idle, wait for a line (it is written at once); busy, gather what came during a
        // short pause: a logger only wakes this thread when it was waiting, so under
        // load lines are queued without a wake-up each.
        let first = if busy {
            std::thread::sleep(BATCH_PAUSE);
            rx.try_recv().ok()
        } else {
            match rx.recv() {
                Ok(message) => Some(message),
                Err(_) => return,
            }
        };
        busy = first.is_some();
        let mut next = first;
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => batch.extend_from_slice(&line),
                Message::Flush(done) => flushed.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() && std::io::stderr().write_all(&batch).is_err() {
            return;
        }
        batch.clear();
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}
