//! The webhook server as a component of the [`Runtime`]: load the certificate, bind
//! the port, serve until the runtime stops, keep re-reading the certificate meanwhile.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use super::{DRAIN_TIMEOUT, Router, serve};
use crate::metrics::Metrics;
use crate::runtime::{BindError, Readiness, Runtime, bind};
use crate::tls::{CertStore, TlsError};

/// The readiness gate of the webhook server.
pub const CERTIFICATE_GATE: &str = "certificate loaded";

/// Everything `serve` needs, already parsed.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub reload_interval: Duration,
    /// After SIGTERM, how long to keep accepting while `/ready` is false, so the
    /// endpoint is gone from the Service before the port closes.
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
}

impl ServeConfig {
    /// Loopback on ports chosen by the OS: for tests and the simulated cluster.
    pub fn local(tls_cert: PathBuf, tls_key: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            addr: any,
            admin_addr: any,
            tls_cert,
            tls_key,
            reload_interval: crate::tls::DEFAULT_RELOAD_INTERVAL,
            shutdown_delay: Duration::ZERO,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// The webhook component once started.
#[derive(Debug)]
pub struct Webhooks {
    pub addr: SocketAddr,
    pub certs: Arc<CertStore>,
    pub metrics: Arc<Metrics>,
}

/// Starts the webhook server under `runtime`, serving the certificate files of
/// `config`. Nothing is spawned unless it all starts: a bad certificate or a busy port
/// leaves no task behind.
pub async fn spawn(runtime: &Runtime, config: &ServeConfig) -> Result<Webhooks, StartError> {
    spawn_with(runtime, config, None).await
}

/// [`spawn`], or with `certs` when a store fed by someone else (the self-signed Secret)
/// replaces the files: then nothing re-reads files.
pub async fn spawn_with(
    runtime: &Runtime,
    config: &ServeConfig,
    certs: Option<Arc<CertStore>>,
) -> Result<Webhooks, StartError> {
    let gate = runtime.gate(CERTIFICATE_GATE);
    let from_files = certs.is_none();
    let certs = match certs {
        Some(certs) => certs,
        None => CertStore::load(&config.tls_cert, &config.tls_key)?,
    };
    let tls = TlsAcceptor::from(certs.server_config()?);
    let listener = bind(config.addr).await?;
    let addr = listener.local_addr().unwrap_or(config.addr);
    gate.open();
    let metrics = Arc::new(runtime.register(Metrics::register));
    if from_files {
        let metrics = metrics.clone();
        let reload =
            certs.clone().reload_loop(config.reload_interval, runtime.stopping(), move |result| match result {
                Ok(true) => metrics.observe_cert_reload("swapped"),
                Ok(false) => {}
                Err(_) => metrics.observe_cert_reload("error"),
            });
        runtime.spawn(reload);
    }
    let router = Arc::new(Router::new(metrics.clone()));
    let (stopping, drain) = (runtime.stopping(), config.drain_timeout);
    runtime.spawn(async move {
        serve(listener, Some(tls), router, stopping, drain).await;
        tracing::info!("webhook server stopped");
    });
    Ok(Webhooks { addr, certs, metrics })
}

/// A started webhook server with its own runtime and admin port: what `serve
/// --webhook-only`, the tests and the simulated cluster run.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub certs: Arc<CertStore>,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    pub runtime: Runtime,
    shutdown_delay: Duration,
}

impl Running {
    /// Readiness off, keep serving for the shutdown delay, stop accepting, let
    /// in-flight requests finish; resolves when both ports are closed.
    pub async fn shutdown(self) {
        self.runtime.shutdown(self.shutdown_delay).await;
    }

    /// Readiness off and the listener closed at once, without the delay.
    pub fn stop_accepting(&self) {
        self.runtime.stop_components();
    }

    /// Resolves when both ports are closed.
    pub async fn wait(self) {
        self.runtime.wait().await;
    }
}

/// A runtime with the admin port and the webhook server.
pub async fn start(config: &ServeConfig) -> Result<Running, StartError> {
    let runtime = Runtime::new();
    let admin = bind(config.admin_addr).await?;
    let admin_addr = admin.local_addr().unwrap_or(config.admin_addr);
    let webhooks = spawn(&runtime, config).await?;
    crate::admin::spawn(&runtime, admin, config.drain_timeout);
    tracing::info!(addr = %webhooks.addr, %admin_addr, "serving webhooks");
    Ok(Running {
        addr: webhooks.addr,
        admin_addr,
        certs: webhooks.certs,
        readiness: runtime.readiness().clone(),
        metrics: webhooks.metrics,
        runtime,
        shutdown_delay: config.shutdown_delay,
    })
}
