//! The same load with `hey` (Debian package `hey`, what issue 12's first table used):
//! HTTP/1.1 keep-alive connections, one per worker, a closed loop for a fixed time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What one `hey` run reported.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub throughput: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub ok: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
}

pub fn available() -> bool {
    Command::new("hey").output().is_ok()
}

/// `hey -z DURATION -c CONCURRENCY -host localhost -m POST -T application/json -D BODY
/// https://ADDR/PATH`.
pub fn run(addr: SocketAddr, path: &str, body: &Path, concurrency: usize, duration: Duration) -> Summary {
    let out = Command::new("hey")
        .arg("-z")
        .arg(format!("{}ms", duration.as_millis()))
        .arg("-c")
        .arg(concurrency.to_string())
        // Without it hey sends the SNI "localhost:PORT", which rustls refuses.
        .args(["-host", "localhost", "-m", "POST", "-T", "application/json", "-D"])
        .arg(body)
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("hey");
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn secs(s: &str) -> Duration {
    Duration::from_secs_f64(s.trim().trim_end_matches("secs").trim().parse().unwrap_or(0.0))
}

fn parse(out: &str) -> Summary {
    let mut summary = Summary::default();
    let mut section = "";
    for line in out.lines().map(str::trim) {
        if line.ends_with(':') && !line.starts_with('[') {
            section = line;
            continue;
        }
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            summary.throughput = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50% in ") {
            summary.p50 = secs(v);
        } else if let Some(v) = line.strip_prefix("99% in ") {
            summary.p99 = secs(v);
        } else if let Some(rest) = line.strip_prefix('[') {
            let (code, count) = rest.split_once(']').unwrap_or_default();
            let n: u64 = count.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(0);
            if section.starts_with("Status code") && code == "200" {
                summary.ok += n;
            } else {
                summary.failures += n;
                summary.first_failure.get_or_insert_with(|| line.to_owned());
            }
        }
    }
    summary
}
