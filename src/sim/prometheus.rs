//! A real Prometheus (the Debian package's `/usr/bin/prometheus`) as a child process on
//! a free loopback port, scraping the gateway's APISIX metrics every second, its data in
//! a temporary directory. Killed when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::gateway::METRICS_PATH;

/// Where the Debian package installs it.
pub const BINARY: &str = "/usr/bin/prometheus";
/// How often it scrapes and evaluates.
pub const SCRAPE_INTERVAL: &str = "1s";
/// The job name of the gateway's scrape.
pub const JOB: &str = "apisix";
/// How long start-up may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const READY_POLL: Duration = Duration::from_millis(10);
/// Attempts at a free port (another process may take the one we picked).
const PORT_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus binary not found at {BINARY} or on PATH; install it with `apt-get install -y prometheus`")]
    Missing,
    #[error("prometheus: {context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("prometheus exited during start-up ({status}): {log}")]
    Exited { status: String, log: String },
    #[error("prometheus was not ready after {0:?}: {1}")]
    NotReady(Duration, String),
}

/// The running Prometheus. Dropping it kills the process and removes its data.
#[derive(Debug)]
pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
    /// Dropped after the child (field order): the data outlives the process.
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Reap it so the data directory is not removed under a live process.
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn binary() -> Option<PathBuf> {
    if Path::new(BINARY).is_file() {
        return Some(BINARY.into());
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("prometheus")).find(|p| p.is_file()))
}

/// The generated configuration: the gateway, every second.
pub fn config(gateway: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  \
         evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n  - job_name: {JOB}\n    \
         metrics_path: {METRICS_PATH}\n    static_configs:\n      - targets: ['{gateway}']\n"
    )
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PrometheusError {
    let context = context.into();
    move |source| PrometheusError::Io { context, source }
}

fn free_port() -> Result<u16, PrometheusError> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

/// `GET /-/ready` answered 200.
async fn ready(addr: SocketAddr) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else { return false };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await else { return false };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let Ok(req) = http::Request::get("/-/ready").header("host", addr.to_string()).body(Empty::<Bytes>::new()) else {
        return false;
    };
    match sender.send_request(req).await {
        Ok(res) => {
            let ok = res.status().is_success();
            let _ = res.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Starts Prometheus scraping `gateway` and waits until it is ready.
pub async fn start(gateway: SocketAddr) -> Result<Prometheus, PrometheusError> {
    let bin = binary().ok_or(PrometheusError::Missing)?;
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        match start_once(&bin, gateway).await {
            Err(PrometheusError::Exited { status, log }) if log.contains("address already in use") => {
                last = Some(PrometheusError::Exited { status, log });
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(PrometheusError::Missing))
}

async fn start_once(bin: &Path, gateway: SocketAddr) -> Result<Prometheus, PrometheusError> {
    let data = tempfile::Builder::new().prefix("sim-prometheus-").tempdir().map_err(io("creating its data dir"))?;
    let config_path = data.path().join("prometheus.yml");
    std::fs::write(&config_path, config(gateway)).map_err(io("writing its config"))?;
    let log_path = data.path().join("prometheus.log");
    let log = std::fs::File::create(&log_path).map_err(io("creating its log"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let mut child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", data.path().join("data").display()))
        .arg("--storage.tsdb.retention.time=1h")
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!("starting {}", bin.display())))?;
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_wait().map_err(io("waiting for it"))? {
            return Err(PrometheusError::Exited { status: status.to_string(), log: log_tail(&log_path) });
        }
        if ready(addr).await {
            tracing::debug!(%addr, elapsed_ms = started.elapsed().as_millis() as u64, "prometheus ready");
            return Ok(Prometheus { addr, child, _data: data });
        }
        tokio::time::sleep(READY_POLL).await;
    }
    Err(PrometheusError::NotReady(READY_TIMEOUT, log_tail(&log_path)))
}
