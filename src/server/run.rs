//! The `serve` process: bind both ports, load the certificate, serve until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{DRAIN_TIMEOUT, Router, serve};
use crate::admin::{Admin, Readiness};
use crate::metrics::Metrics;
use crate::tls::{CertStore, TlsError};

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
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A started server: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub certs: Arc<CertStore>,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    shutdown_delay: Duration,
    task: JoinHandle<()>,
}

impl Running {
    /// Readiness off, keep serving for the shutdown delay, stop accepting, let
    /// in-flight requests finish; resolves when both ports are closed.
    pub async fn shutdown(self) {
        self.readiness.set_shutting_down();
        tokio::time::sleep(self.shutdown_delay).await;
        self.stop_accepting();
        self.wait().await;
    }

    /// Readiness off and the listener closed at once, without the delay.
    pub fn stop_accepting(&self) {
        self.readiness.set_shutting_down();
        self.shutdown.cancel();
    }

    /// Resolves when both ports are closed.
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

/// Loads the certificate, binds both ports and serves in the background.
pub async fn start(config: &ServeConfig) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let shutdown = CancellationToken::new();
    let certs = CertStore::load(&config.tls_cert, &config.tls_key)?;
    readiness.set_cert_loaded();
    let tls = TlsAcceptor::from(certs.server_config()?);
    {
        let metrics = metrics.clone();
        certs.clone().spawn_reloader(config.reload_interval, shutdown.clone(), move |result| match result {
            Ok(true) => metrics.observe_cert_reload("swapped"),
            Ok(false) => {}
            Err(_) => metrics.observe_cert_reload("error"),
        });
    }

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
    };
    let https = bind(config.addr).await?;
    let admin = bind(config.admin_addr).await?;
    let local = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let (addr, admin_addr) = (local(&https, config.addr), local(&admin, config.admin_addr));
    tracing::info!(%addr, %admin_addr, "serving webhooks");

    let admin_shutdown = CancellationToken::new();
    let router = Arc::new(Router::new(metrics.clone()));
    let admin_handler = Arc::new(Admin { metrics: metrics.clone(), readiness: readiness.clone() });
    let drain = config.drain_timeout;
    let task = {
        let (shutdown, admin_shutdown) = (shutdown.clone(), admin_shutdown.clone());
        tokio::spawn(async move {
            let admin_task = tokio::spawn(serve(admin, None, admin_handler, admin_shutdown.clone(), drain));
            // The admin port keeps answering (`/ready` false) until the webhooks drained.
            serve(https, Some(tls), router, shutdown, drain).await;
            admin_shutdown.cancel();
            let _ = admin_task.await;
            tracing::info!("server stopped");
        })
    };
    let shutdown_delay = config.shutdown_delay;
    Ok(Running { addr, admin_addr, certs, readiness, metrics, shutdown, shutdown_delay, task })
}
