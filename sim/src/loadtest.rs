//! Flagger's load tester, in process: webhook payloads `{name, namespace, phase,
//! metadata: {cmd}}` whose `cmd` is a `hey` command start that traffic in the background
//! (one run per canary and command at a time, as Flagger's does), against the gateway;
//! plus the gate endpoints for manual approval. Only ever dials 127.0.0.1. What it does
//! is logged, as Flagger's load tester logs it, to the pods of its image
//! ([`IMAGE`]) that run in the cluster: `kubectl logs deploy/flagger-loadtester`.

pub mod hey;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use self::hey::{MAX_DURATION, Plan, UNTHROTTLED_QPS};

/// The image of Flagger's load tester: its pods are this load tester's.
pub const IMAGE: &str = "ghcr.io/fluxcd/flagger-loadtester";

/// Webhook bodies read at most.
const MAX_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("cannot listen on 127.0.0.1 for the load tester: {0}")]
    Bind(std::io::Error),
}

/// Flagger's webhook payload.
#[derive(Debug, Deserialize, Default)]
struct Payload {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

#[derive(Debug)]
struct State {
    cluster: Arc<super::cluster::Cluster>,
    gateway: SocketAddr,
    stop: CancellationToken,
    /// `<namespace>/<name>: <cmd>` of every run in progress.
    running: Mutex<HashSet<String>>,
    /// Canary (`<name>.<namespace>`) -> gate open, for `/gate/check`; open by default.
    gates: Mutex<HashMap<String, bool>>,
    /// Canary -> rollback requested, for `/rollback/check`.
    rollbacks: Mutex<HashMap<String, bool>>,
    sent: AtomicU64,
}

/// The running load tester; it stops with the sim's stop token.
#[derive(Debug, Clone)]
pub struct LoadTester {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl LoadTester {
    /// `http://127.0.0.1:<port>/`: where Flagger-style webhooks go.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Requests sent so far by every command.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::Relaxed)
    }

    /// Commands running now.
    pub fn running(&self) -> usize {
        lock(&self.state.running).len()
    }
}

/// Whether one of `pod`'s containers runs the load tester's image.
pub fn is_load_tester(pod: &serde_json::Value) -> bool {
    let containers = pod.pointer("/spec/containers").and_then(serde_json::Value::as_array);
    containers.into_iter().flatten().any(|c| {
        c["image"]
            .as_str()
            .is_some_and(|i| i == IMAGE || i.strip_prefix(IMAGE).is_some_and(|t| t.starts_with([':', '@'])))
    })
}

/// A JSON line, as zap writes Flagger's (level, ts, msg first), to every running load
/// tester pod.
fn log(state: &State, msg: &str, canary: &str, cmd: &str) {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let ts = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let line = format!(
        r#"{{"level":"info","ts":"{ts}","msg":{},"canary":{},"cmd":{}}}"#,
        quoted(msg),
        quoted(canary),
        quoted(cmd)
    );
    for (namespace, name) in super::logs::running_pods(&state.cluster, "", is_load_tester) {
        state.cluster.logs.write(&namespace, &name, &line);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain sets and maps: consistent after any panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Where a URL host goes: loopback ports as given, everything else (cluster names such
/// as `apisix-gateway.apisix`, `*.svc`, `*.cluster.local`) to the gateway.
fn target(plan: &Plan, gateway: SocketAddr) -> SocketAddr {
    match plan.target_host.as_str() {
        "127.0.0.1" | "localhost" => SocketAddr::from((Ipv4Addr::LOCALHOST, plan.target_port)),
        _ => gateway,
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_PAYLOAD).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the request body: {e}\n")),
    };
    let path = parts.uri.path();
    if path == "/healthz" {
        return text(StatusCode::OK, "OK\n");
    }
    if parts.method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST a webhook payload\n");
    }
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) if path == "/" => return text(StatusCode::BAD_REQUEST, format!("invalid webhook payload: {e}\n")),
        Err(_) => Payload::default(),
    };
    let canary = format!("{}.{}", payload.name, payload.namespace);
    let flag = |map: &Mutex<HashMap<String, bool>>, value: bool| {
        lock(map).insert(canary.clone(), value);
        text(StatusCode::ACCEPTED, "Accepted\n")
    };
    let check = |allowed: bool| {
        if allowed { text(StatusCode::OK, "Approved\n") } else { text(StatusCode::FORBIDDEN, "Forbidden\n") }
    };
    match path {
        "/" => start(&state, &payload),
        "/gate/approve" => check(true),
        "/gate/halt" => check(false),
        "/gate/check" => check(lock(&state.gates).get(&canary).copied().unwrap_or(true)),
        "/gate/open" => flag(&state.gates, true),
        "/gate/close" => flag(&state.gates, false),
        "/rollback/check" => check(lock(&state.rollbacks).get(&canary).copied().unwrap_or(false)),
        "/rollback/open" => flag(&state.rollbacks, true),
        "/rollback/close" => flag(&state.rollbacks, false),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// A task: parse the command, start it unless the same one runs for this canary.
fn start(state: &Arc<State>, payload: &Payload) -> Response<Full<Bytes>> {
    if let Some(t) = payload.metadata.get("type").filter(|t| !t.is_empty() && *t != "cmd") {
        return text(
            StatusCode::BAD_REQUEST,
            format!("metadata.type {t:?} is not supported: only hey commands run here\n"),
        );
    }
    let Some(cmd) = payload.metadata.get("cmd").filter(|c| !c.trim().is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "metadata.cmd is required\n");
    };
    let plan = match hey::parse(cmd) {
        Ok(plan) => plan,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("metadata.cmd: {e}\n")),
    };
    let key = format!("{}/{}: {cmd}", payload.namespace, payload.name);
    if !lock(&state.running).insert(key.clone()) {
        return text(StatusCode::OK, "command already running\n");
    }
    let canary = format!("{}.{}", payload.name, payload.namespace);
    tracing::info!(canary = %canary, cmd = %cmd, "load test started");
    log(state, "command starting", &canary, cmd);
    let (state, cmd) = (state.clone(), cmd.clone());
    tokio::spawn(async move {
        let stop = state.stop.clone();
        run(&plan, target(&plan, state.gateway), &state, &stop, None).await;
        lock(&state.running).remove(&key);
        log(&state, "command finished", &canary, &cmd);
    });
    text(StatusCode::OK, "command started\n")
}

/// What one run's requests got: for hey's summary.
#[derive(Debug, Default)]
pub struct Report {
    /// Status code (0: no answer) and latency of each request.
    results: Mutex<Vec<(u16, Duration)>>,
}

impl Report {
    /// hey's summary of a run that took `total`: times, rate and status codes.
    pub fn summary(&self, total: Duration) -> String {
        let results = lock(&self.results);
        let secs = |d: Duration| format!("{:.4} secs", d.as_secs_f64());
        let answered: Vec<Duration> = results.iter().filter(|(code, _)| *code != 0).map(|(_, d)| *d).collect();
        let mut out = String::from("\nSummary:\n");
        out += &format!("  Total:\t{}\n", secs(total));
        if !answered.is_empty() {
            let sum: Duration = answered.iter().sum();
            out += &format!("  Slowest:\t{}\n", secs(*answered.iter().max().expect("not empty")));
            out += &format!("  Fastest:\t{}\n", secs(*answered.iter().min().expect("not empty")));
            out += &format!("  Average:\t{}\n", secs(sum / answered.len() as u32));
        }
        let rate = results.len() as f64 / total.as_secs_f64().max(f64::EPSILON);
        out += &format!("  Requests/sec:\t{rate:.4}\n\n");
        let mut codes = std::collections::BTreeMap::new();
        for (code, _) in results.iter().filter(|(code, _)| *code != 0) {
            *codes.entry(*code).or_insert(0u64) += 1;
        }
        out += "\nStatus code distribution:\n";
        for (code, n) in codes {
            out += &format!("  [{code}]\t{n} responses\n");
        }
        let failed = results.iter().filter(|(code, _)| *code == 0).count();
        if failed > 0 {
            out += &format!("\nError distribution:\n  [{failed}]\tno answer (connection failed or timed out)\n");
        }
        out
    }
}

/// Runs `cmd` (a hey command line) against the gateway until its end or `stop`, as the
/// load tester's shell does for `kubectl exec`: its report, or why it cannot run.
pub async fn hey(
    tester: &LoadTester,
    cmd: &str,
    stop: &CancellationToken,
) -> Result<(Report, Duration), hey::HeyError> {
    let plan = hey::parse(cmd)?;
    let report = Report::default();
    let started = Instant::now();
    run(&plan, target(&plan, tester.state.gateway), &tester.state, stop, Some(&report)).await;
    Ok((report, started.elapsed()))
}

/// Where `host:port` of a URL typed in the load tester's pod goes (see [`target`]).
pub fn address(tester: &LoadTester, host: &str, port: u16) -> SocketAddr {
    match host {
        "127.0.0.1" | "localhost" => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        _ => tester.state.gateway,
    }
}

/// Runs a plan to its end: `-z` elapsed or `-n` sent, the 10 minute cap, or `stop`.
async fn run(plan: &Plan, target: SocketAddr, state: &Arc<State>, stop: &CancellationToken, report: Option<&Report>) {
    let deadline = Instant::now() + plan.duration.unwrap_or(MAX_DURATION).min(MAX_DURATION);
    let per_worker = plan.requests / plan.workers;
    let workers = (0..plan.workers).map(|w| {
        let quota = match plan.duration {
            Some(_) => u64::MAX,
            None => per_worker + u64::from(w < plan.requests % plan.workers),
        };
        worker(plan, target, state, Worker { deadline, quota, stop, report })
    });
    futures_util::future::join_all(workers).await;
}

/// One worker's bounds and where its results go.
struct Worker<'a> {
    deadline: Instant,
    quota: u64,
    stop: &'a CancellationToken,
    report: Option<&'a Report>,
}

async fn worker(plan: &Plan, target: SocketAddr, state: &Arc<State>, w: Worker<'_>) {
    let period = Duration::from_secs_f64(1.0 / plan.qps.unwrap_or(UNTHROTTLED_QPS));
    // hey's throttle ticks first after one period.
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    for _ in 0..w.quota {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tokio::time::sleep_until(w.deadline) => return,
            () = w.stop.cancelled() => return,
        }
        let limit = plan.timeout.min(w.deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1));
        let sent_at = Instant::now();
        let sent = tokio::select! {
            r = tokio::time::timeout(limit, send(&mut conn, plan, target)) => r.unwrap_or(Err(SendError::Timeout)),
            () = w.stop.cancelled() => return,
        };
        state.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(report) = w.report {
            lock(&report.results).push((*sent.as_ref().unwrap_or(&0), sent_at.elapsed()));
        }
        if sent.is_err() || !plan.keepalive {
            conn = None;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("timed out")]
    Timeout,
}

/// One request on the worker's connection (opened on first use or after a failure).
async fn send(conn: &mut Option<SendRequest<Full<Bytes>>>, plan: &Plan, target: SocketAddr) -> Result<u16, SendError> {
    let mut sender = match conn.take().filter(|c| !c.is_closed()) {
        Some(c) => c,
        None => {
            let tcp = TcpStream::connect(target).await?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the peer closes; errors surface on send.
                let _ = connection.await;
            });
            sender
        }
    };
    let mut req = Request::builder().method(plan.method.as_str()).uri(plan.path_and_query.as_str());
    req = req.header(header::HOST, plan.host.as_str()).header(header::USER_AGENT, "hey/0.0.1");
    for (k, v) in &plan.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(plan.body.clone().unwrap_or_default())))?;
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    *conn = Some(sender);
    Ok(status)
}

/// Starts the load tester on a free loopback port, sending traffic to `gateway`.
pub async fn spawn(
    cluster: Arc<super::cluster::Cluster>,
    gateway: SocketAddr,
    stop: CancellationToken,
) -> Result<LoadTester, LoadTestError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(LoadTestError::Bind)?;
    let addr = listener.local_addr().map_err(LoadTestError::Bind)?;
    let state = Arc::new(State {
        cluster,
        gateway,
        stop: stop.clone(),
        running: Mutex::default(),
        gates: Mutex::default(),
        rollbacks: Mutex::default(),
        sent: AtomicU64::new(0),
    });
    {
        let state = state.clone();
        super::httpd::serve(listener, stop, move |req| handle(state.clone(), req));
    }
    Ok(LoadTester { addr, state })
}
