//! Logs: JSON lines on stderr, filtered by `RUST_LOG` (default `info`; `off` for the demo,
//! whose output is on stdout).
//!
//! Lines go through a queue to one writer thread, which writes whatever has queued up
//! at once: under load one `write` for many lines every few milliseconds, and no
//! request waits on the stderr lock another holds or wakes a thread per line. The queue is bounded and a full one makes the logger wait, so
//! no line is lost; [`Flush`] (held by `main`) writes what is left before the exit.

use std::io::{IsTerminal as _, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

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
/// writes the queued lines when dropped. Text has colour only on a terminal.
pub fn init(json: bool, default_filter: &str) -> Flush {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    let writer = std::thread::Builder::new().name("log-writer".to_owned()).spawn(move || write_lines(&rx));
    let queue = writer.is_ok().then(|| Queue(tx.clone()));
    let ansi = std::io::stderr().is_terminal();
    let main = match (json, queue) {
        (true, Some(q)) => fmt::layer().json().flatten_event(true).with_writer(q).boxed(),
        (true, None) => fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed(),
        (false, Some(q)) => fmt::layer().with_ansi(ansi).with_writer(q).boxed(),
        (false, None) => fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).boxed(),
    };
    #[allow(unused_mut)] // without the testbed, the one layer
    let mut layers = vec![main.with_filter(filter).boxed()];
    #[cfg(feature = "testbed")]
    layers.push(pod::layer());
    let installed = tracing_subscriber::registry().with(layers).try_init();
    // Not installed (a second call): dropping the last sender ends the writer thread.
    Flush(installed.is_ok().then_some(tx))
}

#[cfg(feature = "testbed")]
pub use self::pod::also_log_to;

/// The testbed's pod output: our events as the log of the pod the sim runs for the
/// server it runs in-process.
#[cfg(feature = "testbed")]
mod pod {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    use tracing::{Level, Subscriber};
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::fmt;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::registry::LookupSpan;

    /// Where our own events (`apisix_canary::*`, info and above) also go, as JSON lines:
    /// the output of the pods the testbed makes for what it runs in-process (`sim
    /// --with-webhook` the server, `demo` the server and the controller; `kubectl logs
    /// deploy/apisix-canary`), whatever RUST_LOG lets through to stderr. Set once; later
    /// calls are ignored.
    pub fn also_log_to(output: impl Write + Send + 'static) {
        let _ = POD_OUTPUT.set(Mutex::new(Box::new(output)));
    }

    static POD_OUTPUT: OnceLock<Mutex<Box<dyn Write + Send>>> = OnceLock::new();

    /// Our own events, as JSON, to the output set by `also_log_to` (none until then).
    pub(super) fn layer<S>() -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(|| PodLine(Vec::new()))
            .with_filter(filter_fn(|m| {
                POD_OUTPUT.get().is_some()
                    && *m.level() <= Level::INFO
                    && m.target().starts_with("apisix_canary")
                    && !m.target().starts_with("apisix_canary::cli::sim")
            }))
            .boxed()
    }

    /// One event's JSON line, written to `POD_OUTPUT` when the formatter is done with it.
    struct PodLine(Vec<u8>);

    impl Write for PodLine {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Drop for PodLine {
        fn drop(&mut self) {
            if let Some(output) = POD_OUTPUT.get() {
                let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
                let _ = output.write_all(&self.0);
            }
        }
    }
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
