//! Scale: `serve` (webhooks and controller, its own process) over N opted-in Deployments
//! of the simulated cluster. [`run`]: no release running; how long until every Canary is
//! `Initialized`, then serve's and the sim's memory and idle CPU. [`releases`]: R of them
//! released at once, with traffic through the gateway; serve's peak memory, its tick lag,
//! its API writes per release (the sim's audit log) and the Prometheus queries per
//! interval (Prometheus's own counters). Run by `benches/scale.rs` and, small, by
//! `tests/scale.rs`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apisix_canary::api::canary::Phase;
use apisix_canary::api::canary::v1beta1::Canary;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use serde_json::json;

use crate::e2e::World;
use crate::reaction::{self, NAMESPACE};

/// kubectl processes applying the Deployments side by side.
const APPLIERS: usize = 4;

/// (resident MiB, CPU seconds so far) of process `pid`.
pub fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (rss, (ticks(11) + ticks(12)) / 100.0)
}

/// The namespace and `n` opted-in apps (`reaction::app_with`), applied by the real
/// kubectl in [`APPLIERS`] processes at once; how long that took.
fn install(w: &World, n: usize, interval: &str) -> Duration {
    let started = Instant::now();
    let ns = w.file("scale-ns.yaml", &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"));
    w.ok(&["apply", "-f", &ns]);
    let mut appliers = Vec::new();
    for lane in 0..APPLIERS {
        let apps: Vec<String> = (lane..n).step_by(APPLIERS).map(|i| reaction::app_with(i, interval)).collect();
        if apps.is_empty() {
            continue;
        }
        let file = w.file(&format!("scale-apps-{lane}.yaml"), &apps.join("---\n"));
        let child = std::process::Command::new(&w.kubectl)
            .args(["apply", "-f", &file])
            .env("KUBECONFIG", &w.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        appliers.push(child);
    }
    for child in appliers {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    started.elapsed()
}

async fn client(w: &World) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&w.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// How many of `app-0` .. `app-{n-1}`'s Canaries are in one of `phases`.
/// The Canaries as a watch keeps them, ready: polling them with lists would cost the
/// sim a list of every Canary each second, work it would not do for `serve`.
async fn watched(canaries: Api<Canary>) -> Store<Canary> {
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(canaries, watcher::Config::default()));
    tokio::spawn(stream.for_each(|_| async {}));
    store.wait_until_ready().await.unwrap();
    store
}

/// How many of the first `n` Canaries are in one of `phases`.
fn count(canaries: &Store<Canary>, n: usize, phases: &[Phase]) -> usize {
    let wanted: std::collections::HashSet<String> = (0..n).map(|i| format!("app-{i}")).collect();
    canaries
        .state()
        .iter()
        .filter(|c| c.metadata.name.as_ref().is_some_and(|n| wanted.contains(n)))
        .filter(|c| c.status.as_ref().and_then(|s| s.phase).is_some_and(|p| phases.contains(&p)))
        .count()
}

/// Waits until `n` Canaries are Initialized: when, from `started`, or `None` past `within`.
async fn initialized(canaries: &Store<Canary>, n: usize, started: Instant, within: Duration) -> Option<Duration> {
    loop {
        let done = count(canaries, n, &[Phase::Initialized]);
        if done == n {
            return Some(started.elapsed());
        }
        if started.elapsed() > within {
            eprintln!("n={n}: {done} Canaries Initialized after {within:?}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One world with `n` opted-in Deployments: its row of BENCHMARKS.md's table, or `None`
/// when the Canaries were not all Initialized within `within`.
pub fn run(n: usize, within: Duration, idle: Duration) -> (String, bool) {
    let w = World::start();
    let started = Instant::now();
    let applied = install(&w, n, "1s");
    let initialized = runtime().block_on(async {
        let canaries = watched(Api::namespaced(client(&w).await, NAMESPACE)).await;
        initialized(&canaries, n, started, within).await
    });
    let serve = w.serves.lock().unwrap()[0].0.id();
    let sim = w._sim.0.id();
    let (_, serve_cpu0) = usage(serve);
    let (_, sim_cpu0) = usage(sim);
    std::thread::sleep(idle);
    let (serve_rss, serve_cpu) = usage(serve);
    let (sim_rss, sim_cpu) = usage(sim);
    let row = format!(
        "| {n} | {:.1} s | {} | {serve_rss:.0} MiB | {:.1} % | {sim_rss:.0} MiB | {:.1} % |",
        applied.as_secs_f64(),
        initialized.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        (serve_cpu - serve_cpu0) * 100.0 / idle.as_secs_f64(),
        (sim_cpu - sim_cpu0) * 100.0 / idle.as_secs_f64(),
    );
    (row, initialized.is_some())
}

/// What [`releases`] runs.
#[derive(Debug, Clone, Copy)]
pub struct Releases {
    /// Opted-in Deployments.
    pub deployments: usize,
    /// Of them, released at once (`app-0` ..).
    pub releases: usize,
    /// The analysis interval of every release, in seconds.
    pub interval: u64,
    /// Requests per second through the gateway, spread over the released hosts.
    pub rate: u32,
    /// How long the releases may take, all together.
    pub within: Duration,
}

/// The figures of one [`releases`] run.
#[derive(Debug, Default)]
pub struct Figures {
    pub installed: Duration,
    pub initialized: Option<Duration>,
    /// From the first image change to the last release's end.
    pub released: Option<Duration>,
    pub succeeded: usize,
    pub failed: usize,
    pub peak_rss: f64,
    /// Ticks measured by serve, and their lag at p50 and p99 (interpolated within the
    /// histogram's buckets), and the share at most 1 s.
    pub ticks: f64,
    pub lag_p50: f64,
    pub lag_p99: f64,
    pub lag_within_1s: f64,
    /// serve's writes during the releases, by resource (the audit log), and in all.
    pub writes: std::collections::BTreeMap<String, usize>,
    /// Instant and range queries Prometheus answered during the releases.
    pub queries: f64,
    /// serve's own count of its Prometheus queries, by kind (`builtin_batch`, ...).
    pub serve_queries: std::collections::BTreeMap<String, f64>,
    /// The Warning Events' messages, each once with its count, most frequent first: why
    /// releases held or failed.
    pub warnings: Vec<(usize, String)>,
}

impl Figures {
    pub fn header() -> &'static str {
        "| opted-in | released at once | interval | all ended | succeeded / failed | serve peak RSS | ticks | tick lag p50 | p99 | ≤ 1 s | writes per release | status writes per release | Prometheus queries per interval |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    }

    pub fn row(&self, r: &Releases) -> String {
        let per = |v: usize| v as f64 / r.releases.max(1) as f64;
        let total: usize = self.writes.values().sum();
        let status = self.writes.get("canaries/status").copied().unwrap_or(0);
        let intervals = self.released.map_or(1.0, |d| (d.as_secs_f64() / r.interval as f64).max(1.0));
        format!(
            "| {} | {} | {} s | {} | {} / {} | {:.0} MiB | {:.0} | {:.0} ms | {:.0} ms | {:.1} % | {:.1} | {:.1} | {:.1} |",
            r.deployments,
            r.releases,
            r.interval,
            self.released.map_or("-".to_owned(), |d| format!("{:.0} s", d.as_secs_f64())),
            self.succeeded,
            self.failed,
            self.peak_rss,
            self.ticks,
            self.lag_p50 * 1000.0,
            self.lag_p99 * 1000.0,
            self.lag_within_1s * 100.0,
            per(total),
            per(status),
            self.queries / intervals,
        )
    }
}

/// `GET url` over plain HTTP: the body.
fn get(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The instant and range queries Prometheus has answered so far (its own counters).
fn prometheus_queries(prometheus_url: &str) -> f64 {
    let body = get(&format!("{}/metrics", prometheus_url.trim_end_matches('/')));
    body.lines()
        .filter(|l| l.starts_with("prometheus_http_requests_total{"))
        .filter(|l| l.contains("handler=\"/api/v1/query\"") || l.contains("handler=\"/api/v1/query_range\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The bucket bounds and cumulative counts of histogram `name` in a text exposition.
fn buckets(exposition: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, value) = rest.split_once("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// Quantile `q` of cumulative `buckets`, interpolated linearly within its bucket.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else { return f64::NAN };
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return below.0;
            }
            let share = if count > below.1 { (rank - below.1) / (count - below.1) } else { 1.0 };
            return below.0 + (le - below.0) * share;
        }
        below = (le, count);
    }
    below.0
}

/// serve's writes (create, update, patch, delete) in `audit` lines, by resource.
fn writes(audit: &str) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for line in audit.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let verb = event["verb"].as_str().unwrap_or_default();
        if !event["userAgent"].as_str().unwrap_or_default().contains("(serve)")
            || !matches!(verb, "create" | "update" | "patch" | "delete")
        {
            continue;
        }
        let o = &event["objectRef"];
        let resource = match o["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", o["resource"].as_str().unwrap_or_default()),
            None => o["resource"].as_str().unwrap_or_default().to_owned(),
        };
        *by.entry(resource).or_insert(0) += 1;
    }
    by
}

/// One world: `r.deployments` opted in, then `r.releases` of them released at once.
pub fn releases(r: Releases) -> Figures {
    let w = World::start();
    let mut figures = Figures::default();
    let started = Instant::now();
    figures.installed = install(&w, r.deployments, &format!("{}s", r.interval));
    let serve = w.serves.lock().unwrap()[0].0.id();
    let audit = w.dir.path().join("audit.log");
    runtime().block_on(async {
        let client = client(&w).await;
        let canaries = watched(Api::namespaced(client.clone(), NAMESPACE)).await;
        figures.initialized = initialized(&canaries, r.deployments, started, r.within).await;
        if figures.initialized.is_none() {
            return;
        }
        let on = Arc::new(AtomicBool::new(true));
        let requests = (0..r.releases).map(|i| (format!("app-{i}.example.com"), "/api/info".to_owned())).collect();
        let pause = Duration::from_secs_f64(1.0 / f64::from(r.rate.max(1)));
        crate::e2e::send_traffic(&w.gateway, requests, pause, on.clone());
        let (audit_from, queries_from) =
            (std::fs::metadata(&audit).map_or(0, |m| m.len()), prometheus_queries(&w.prometheus_url));
        let t0 = Instant::now();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        let patch =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}}});
        futures_util::stream::iter(0..r.releases)
            .for_each_concurrent(8, |i| {
                let (deployments, patch) = (&deployments, &patch);
                async move {
                    let name = format!("app-{i}");
                    deployments.patch(&name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
                }
            })
            .await;
        loop {
            figures.peak_rss = figures.peak_rss.max(usage(serve).0);
            let ended = count(&canaries, r.releases, &[Phase::Succeeded, Phase::Failed]);
            if ended == r.releases {
                figures.released = Some(t0.elapsed());
                break;
            }
            if t0.elapsed() > r.within {
                eprintln!("{ended} of {} releases ended after {:?}", r.releases, r.within);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        on.store(false, Ordering::Relaxed);
        figures.succeeded = count(&canaries, r.releases, &[Phase::Succeeded]);
        figures.failed = count(&canaries, r.releases, &[Phase::Failed]);
        figures.queries = prometheus_queries(&w.prometheus_url) - queries_from;
        let log = std::fs::read(&audit).unwrap_or_default();
        figures.writes = writes(&String::from_utf8_lossy(&log[(audit_from as usize).min(log.len())..]));
    });
    let path = "jsonpath={range .items[?(@.type==\"Warning\")]}{.count}|{.message}{\"\\n\"}{end}";
    let mut warnings = std::collections::BTreeMap::new();
    for line in w.ok(&["-n", NAMESPACE, "get", "events", "-o", path]).lines() {
        let (count, message) = line.split_once('|').unwrap_or(("1", line));
        // One per kind of message: the release's name and figures stripped.
        let kind: String = message
            .split_whitespace()
            .filter(|w| !w.starts_with("app-") && !w.chars().any(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join(" ");
        *warnings.entry(kind).or_insert(0) += count.parse::<usize>().unwrap_or(1);
    }
    figures.warnings = warnings.into_iter().map(|(m, c)| (c, m)).collect();
    figures.warnings.sort_by_key(|w| std::cmp::Reverse(w.0));
    if let Ok(path) = std::env::var("SCALE_SERVE_LOG") {
        std::fs::write(path, w.logs.lock().unwrap().join("\n")).unwrap();
    }
    let metrics = w.admin("serve-0", "/metrics").1;
    for line in metrics.lines().filter_map(|l| l.strip_prefix("apisix_canary_prometheus_queries_total{kind=\"")) {
        if let Some((kind, value)) = line.split_once("\"} ") {
            figures.serve_queries.insert(kind.to_owned(), value.trim().parse().unwrap_or(0.0));
        }
    }
    let lag = buckets(&metrics, "apisix_canary_tick_lag_seconds");
    figures.ticks = lag.last().map_or(0.0, |b| b.1);
    figures.lag_p50 = quantile(0.5, &lag);
    figures.lag_p99 = quantile(0.99, &lag);
    let within = lag.iter().find(|(le, _)| *le == 1.0).map_or(0.0, |b| b.1);
    figures.lag_within_1s = if figures.ticks > 0.0 { within / figures.ticks } else { 0.0 };
    figures
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let b = [(0.1, 50.0), (1.0, 99.0), (f64::INFINITY, 100.0)];
        assert!((super::quantile(0.5, &b) - 0.1).abs() < 1e-12);
        assert!((super::quantile(0.75, &b) - (0.1 + 0.9 * 25.0 / 49.0)).abs() < 1e-12);
        assert_eq!(super::quantile(1.0, &b), 1.0, "past the last finite bound: that bound");
        assert!(super::quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
    }
}
