//! One process runtime for every component (the webhook server, the certificate
//! reloader, later the controller): one metrics registry, one cancellation token and
//! task tracker, named readiness gates, and the admin port that reports them.
//!
//! ```text
//!  component ──register──▶ Registry ──▶ /metrics
//!            ──gate("certificate").open()──▶ Readiness ──▶ /ready (all open, not stopping)
//!            ──spawn(token)──▶ TaskTracker
//!  SIGTERM ──▶ /ready 503 ──(delay)──▶ cancel ──▶ components drain ──▶ admin port closes
//! ```
//!
//! kubert offers the same shape but is built on kube 1.1, not our kube 5; this is the
//! small part of it we need. Readiness never depends on leadership: every replica
//! serves webhooks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Named conditions that must all hold for `/ready`.
#[derive(Debug, Default)]
pub struct Readiness {
    gates: Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
    shutting_down: AtomicBool,
}

/// One readiness condition, opened by the component that owns it.
#[derive(Debug, Clone)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    pub fn open(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn close(&self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Readiness {
    /// A new gate, closed until its component opens it.
    pub fn gate(&self, name: &'static str) -> Gate {
        let flag = Arc::new(AtomicBool::new(false));
        self.gates.lock().unwrap_or_else(|p| p.into_inner()).push((name, flag.clone()));
        Gate(flag)
    }

    /// From SIGTERM on, `/ready` fails so the Service stops sending us reviews.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// `Ok` when ready; otherwise what is missing, for the `/ready` body.
    pub fn check(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".to_owned());
        }
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        let waiting: Vec<&str> =
            gates.iter().filter(|(_, open)| !open.load(Ordering::Acquire)).map(|(name, _)| *name).collect();
        if waiting.is_empty() { Ok(()) } else { Err(format!("waiting for: {}", waiting.join(", "))) }
    }

    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds a TCP listener, naming the address when it fails.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })
}

/// The shared parts of the process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    readiness: Arc<Readiness>,
    /// Cancelled when the components are to stop.
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Cancelled after the components have stopped: `spawn_last` tasks go last.
    admin_stop: CancellationToken,
    admin: TaskTracker,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::with_prefix("apisix_canary")),
                readiness: Arc::new(Readiness::default()),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                admin_stop: CancellationToken::new(),
                admin: TaskTracker::new(),
            }),
        }
    }

    /// Lets a component register its metrics in the one registry.
    pub fn register<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.inner.registry.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        let registry = self.inner.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.inner.readiness
    }

    /// A new readiness gate named `name`, closed until opened.
    pub fn gate(&self, name: &'static str) -> Gate {
        self.inner.readiness.gate(name)
    }

    /// Fires when the components are to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// Runs a component's task until it returns; [`Runtime::shutdown`] waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task);
    }

    /// Runs a task that must outlive the components (the admin port): it is told to
    /// stop only once every component has finished.
    pub fn spawn_last<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.admin.spawn(task(self.inner.admin_stop.clone()));
    }

    /// Readiness off, then after `delay` every component is told to stop; resolves
    /// when all of them and the admin port have finished.
    pub async fn shutdown(&self, delay: Duration) {
        self.inner.readiness.set_shutting_down();
        tokio::time::sleep(delay).await;
        self.stop_now().await;
    }

    /// Readiness off and every component told to stop at once; resolves when all have
    /// finished, the admin port last.
    pub async fn stop_now(&self) {
        self.stop_components();
        self.wait().await;
    }

    /// Readiness off and the stop signal sent, without waiting.
    pub fn stop_components(&self) {
        self.inner.readiness.set_shutting_down();
        self.inner.stop.cancel();
    }

    /// Resolves when every component has stopped, then closes the admin port.
    pub async fn wait(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.admin_stop.cancel();
        self.inner.admin.close();
        self.inner.admin.wait().await;
    }
}

/// A periodic loop's clock: a tick every period (the first one period after the start;
/// a late tick delays the next ones rather than bunching them) until `stop`.
pub struct Ticker {
    tick: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticker {
    pub fn new(every: Duration, stop: CancellationToken) -> Self {
        let start = tokio::time::Instant::now() + every;
        let mut tick = tokio::time::interval_at(start, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { tick, stop }
    }

    /// Waits for the next tick: `false` once stopped.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => !self.stop.is_cancelled(),
            () = self.stop.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_open_and_not_stopping() {
        let r = Readiness::default();
        assert!(r.is_ready(), "no gate, nothing to wait for");
        let cert = r.gate("certificate");
        let caches = r.gate("caches synced");
        assert_eq!(r.check(), Err("waiting for: certificate, caches synced".to_owned()));
        cert.open();
        assert_eq!(r.check(), Err("waiting for: caches synced".to_owned()));
        caches.open();
        assert!(r.is_ready());
        caches.close();
        assert!(!r.is_ready());
        caches.open();
        r.set_shutting_down();
        assert_eq!(r.check(), Err("shutting down".to_owned()));
    }

    #[tokio::test]
    async fn shutdown_stops_components_before_the_admin_port() {
        let rt = Runtime::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let (token, flag) = (rt.stopping(), stopped.clone());
        rt.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::Release);
        });
        tokio::time::timeout(Duration::from_secs(5), rt.shutdown(Duration::ZERO)).await.expect("shutdown ends");
        assert!(stopped.load(Ordering::Acquire), "shutdown waited for the component");
    }
}
