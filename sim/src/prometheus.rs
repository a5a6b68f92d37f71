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
/// How often it scrapes and evaluates, unless told otherwise.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// The job name of the gateway's scrape.
pub const JOB: &str = "apisix";
/// How long start-up may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const READY_POLL: Duration = Duration::from_millis(10);
const SCRAPE_POLL: Duration = Duration::from_millis(100);
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
    #[error("prometheus had not scraped the gateway after {0:?}")]
    NotScraping(Duration),
}

/// The running Prometheus. Dropping it kills the process and removes its data.
#[derive(Debug)]
pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
    /// The watchdog's stdin: when this process ends in any way (even SIGKILL) the pipe
    /// closes and the watchdog kills Prometheus, so no server outlives its sim.
    _watchdog: Option<tokio::process::ChildStdin>,
    /// Dropped after the child (field order): the data outlives the process.
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the gateway has been scraped (`up{job="apisix"} == 1`). Prometheus
    /// throttles target discovery and scrape reloads to 5 s (hard-coded in 2.42), so the
    /// first scrape comes some 5 to 6 s after start, while `/-/ready` answers at once.
    pub async fn wait_scraping(&self, timeout: Duration) -> Result<Duration, PrometheusError> {
        let started = Instant::now();
        let query = format!("/api/v1/query?query=up%7Bjob%3D%22{JOB}%22%7D%3D%3D1");
        while started.elapsed() < timeout {
            if let Some((200, body)) = get(self.addr, &query).await {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if v.pointer("/data/result/0").is_some() {
                    return Ok(started.elapsed());
                }
            }
            tokio::time::sleep(SCRAPE_POLL).await;
        }
        Err(PrometheusError::NotScraping(timeout))
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

/// The generated configuration: the gateway, every `interval` (whole milliseconds).
pub fn config(gateway: SocketAddr, interval: Duration) -> String {
    let interval = format!("{}ms", interval.as_millis().max(1));
    format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
         evaluation_interval: {interval}\nscrape_configs:\n  - job_name: {JOB}\n    \
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

/// A GET on a fresh connection: status and body; `None` when nothing answered.
async fn get(addr: SocketAddr, path_and_query: &str) -> Option<(u16, Bytes)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path_and_query).header("host", addr.to_string()).body(Empty::<Bytes>::new()).ok()?;
    let res = sender.send_request(req).await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.into_body().collect().await.ok()?.to_bytes()))
}

/// `GET /-/ready` answered 200.
async fn ready(addr: SocketAddr) -> bool {
    get(addr, "/-/ready").await.is_some_and(|(status, _)| status == 200)
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// A `sh` that kills `pid` once its stdin closes: when we drop the returned end, or
/// when this process dies without running any destructor.
fn watchdog(pid: u32) -> Option<tokio::process::ChildStdin> {
    let script = format!("read _; kill {pid} 2>/dev/null");
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tracing::warn!(error = %e, "no watchdog for prometheus; it is still killed on drop"))
        .ok()?;
    sh.stdin.take()
}

/// Starts Prometheus (`bin`, else the Debian package's) scraping `gateway` every
/// `interval` and waits until it is ready.
pub async fn start(gateway: SocketAddr, bin: Option<&Path>, interval: Duration) -> Result<Prometheus, PrometheusError> {
    let bin = bin.map(Path::to_path_buf).or_else(binary).ok_or(PrometheusError::Missing)?;
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        match start_once(&bin, gateway, interval).await {
            Err(PrometheusError::Exited { status, log }) if log.contains("address already in use") => {
                last = Some(PrometheusError::Exited { status, log });
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(PrometheusError::Missing))
}

async fn start_once(bin: &Path, gateway: SocketAddr, interval: Duration) -> Result<Prometheus, PrometheusError> {
    let data = tempfile::Builder::new().prefix("sim-prometheus-").tempdir().map_err(io("creating its data dir"))?;
    let config_path = data.path().join("prometheus.yml");
    std::fs::write(&config_path, config(gateway, interval)).map_err(io("writing its config"))?;
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
    let watchdog = child.id().and_then(watchdog);
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_wait().map_err(io("waiting for it"))? {
            return Err(PrometheusError::Exited { status: status.to_string(), log: log_tail(&log_path) });
        }
        if ready(addr).await {
            tracing::debug!(%addr, elapsed_ms = started.elapsed().as_millis() as u64, "prometheus ready");
            return Ok(Prometheus { addr, child, _watchdog: watchdog, _data: data });
        }
        tokio::time::sleep(READY_POLL).await;
    }
    Err(PrometheusError::NotReady(READY_TIMEOUT, log_tail(&log_path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_interval_is_configurable_and_bounds_the_timeout() {
        let gateway = SocketAddr::from((Ipv4Addr::LOCALHOST, 9080));
        let config = config(gateway, Duration::from_secs(5));
        for line in ["scrape_interval: 5000ms", "scrape_timeout: 5000ms", "evaluation_interval: 5000ms"] {
            assert!(config.contains(line), "{line} in:\n{config}");
        }
        assert!(config.contains("targets: ['127.0.0.1:9080']"), "{config}");
        assert!(super::config(gateway, SCRAPE_INTERVAL).contains("scrape_interval: 1000ms"));
    }
}
