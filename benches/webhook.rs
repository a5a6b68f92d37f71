//! The webhook under load, side by side with the bare TLS server (issue 12).
//!
//! `cargo bench --bench webhook` writes a dev certificate with `apisix-canary certs`,
//! starts the reference server (`webhook/bare.rs`, this binary re-run as its own
//! process) and `apisix-canary serve --webhook-only` (the real binary, its own process,
//! logging JSON at its default level to a pipe this process drains, as a container
//! runtime would), then drives both with the same client at each concurrency, POSTing
//! the set-image review of an annotated Deployment to `/mutate/deployments`: our
//! closed-loop client (`webhook/load.rs`, which checks every answer) and, when it is
//! installed, `hey` (`webhook/hey.rs`). Each point runs `--rounds` times, alternating
//! which server goes first; the table shows the mean of the rounds and each round's
//! ratio. Prints Markdown tables.
//!
//! Options (after `--`): `--duration SECS` (3), `--warmup SECS` (0.5), `--rounds N` (2),
//! `--concurrency 1,4,16,32,64`, `--client rust|hey|both` (both when `hey` is
//! installed), `--perf FILE` (record `serve` with `perf record -g` while it is under
//! load), `--log FILTER` (`serve`'s `RUST_LOG`), `--serve-bin PATH` (another build of
//! `apisix-canary` as `serve`, e.g. the one before a change).

#[path = "webhook/bare.rs"]
mod bare;
#[path = "webhook/hey.rs"]
mod hey;
#[path = "webhook/load.rs"]
mod load;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use load::{Load, Report};

const BIN: &str = env!("CARGO_BIN_EXE_apisix-canary");
const PATH: &str = "/mutate/deployments";
const FIXTURE: &str = "tests/fixtures/admission/set-image.json";
const UID: &str = "a1f0c3e2-0001-4d6b-9f00-000000000001";
const STARTUP: Duration = Duration::from_secs(10);

struct Options {
    duration: Duration,
    warmup: Duration,
    rounds: usize,
    concurrency: Vec<usize>,
    perf: Option<PathBuf>,
    clients: Vec<Client>,
    /// The `apisix-canary` to run as `serve` (another build, to compare).
    serve_bin: PathBuf,
    /// `RUST_LOG` of `serve`; unset by default (its default level, info).
    log: Option<String>,
}

fn options(args: &[String]) -> Options {
    let mut o = Options {
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        rounds: 2,
        concurrency: vec![1, 4, 16, 32, 64],
        perf: None,
        clients: if hey::available() { vec![Client::Rust, Client::Hey] } else { vec![Client::Rust] },
        serve_bin: PathBuf::from(BIN),
        log: None,
    };
    let secs = |v: &str| Duration::from_secs_f64(v.parse().expect("seconds"));
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value")).clone();
        match arg.as_str() {
            "--duration" => o.duration = secs(&value()),
            "--warmup" => o.warmup = secs(&value()),
            "--rounds" => o.rounds = value().parse().expect("--rounds N"),
            "--concurrency" => o.concurrency = value().split(',').map(|c| c.parse().expect("concurrency")).collect(),
            "--perf" => o.perf = Some(value().into()),
            "--log" => o.log = Some(value()),
            "--serve-bin" => o.serve_bin = value().into(),
            "--client" => {
                o.clients = match value().as_str() {
                    "rust" => vec![Client::Rust],
                    "hey" => vec![Client::Hey],
                    "both" => vec![Client::Rust, Client::Hey],
                    other => panic!("--client rust|hey|both, not {other}"),
                }
            }
            // cargo bench passes --bench; a filter is meaningless here.
            _ => {}
        }
    }
    o
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bare-server") {
        return bare_server(&args[1..]);
    }
    let o = options(&args);
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new(BIN)
        .args(["certs", "--out-dir"])
        .arg(dir.path())
        .args(["--dns-name", "localhost"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("apisix-canary certs");
    assert!(status.success(), "apisix-canary certs failed");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let ca = std::fs::read(dir.path().join("ca.crt")).expect("ca.crt");

    let (bare, bare_addr) = start_bare(&cert, &key);
    let (serve, serve_addr, log_lines) = start_serve(&o.serve_bin, &cert, &key, o.log.as_deref());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let body = Bytes::from(std::fs::read(root.join(FIXTURE)).expect("fixture"));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let connector = load::connector(&ca);
    for addr in [bare_addr, serve_addr] {
        wait_until_serving(&runtime, &connector, addr, &body);
    }
    let perf = o.perf.as_ref().map(|file| {
        Process(
            Command::new("perf")
                .args(["record", "-g", "-o"])
                .arg(file)
                .args(["-p", &serve.0.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("perf record"),
        )
    });

    println!(
        "{} B body to {PATH}, {} s per point ({} s warm-up for our client), {} rounds, {} cores",
        body.len(),
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        o.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let logged_before = log_lines.load(Ordering::Relaxed);
    let mut failed = false;
    let mut tables = Vec::new();
    for &client in &o.clients {
        let mut rows = Vec::new();
        for &concurrency in &o.concurrency {
            let mut rounds: Vec<(Point, Point)> = Vec::new();
            for round in 0..o.rounds {
                let run = |addr| match client {
                    Client::Rust => {
                        let load = Load {
                            addr,
                            path: PATH.to_owned(),
                            body: body.clone(),
                            uid: UID.to_owned(),
                            concurrency,
                            warmup: o.warmup,
                            duration: o.duration,
                            fresh: false,
                        };
                        Point::of(runtime.block_on(load::run(&load, &connector)))
                    }
                    Client::Hey => Point::of_hey(hey::run(addr, PATH, &root.join(FIXTURE), concurrency, o.duration)),
                };
                // Alternate which server goes first, so drift in the machine's load
                // does not always favour the same one.
                let (b, s) = if round % 2 == 0 {
                    let b = run(bare_addr);
                    (b, run(serve_addr))
                } else {
                    let s = run(serve_addr);
                    (run(bare_addr), s)
                };
                for (name, p) in [("bare", &b), ("serve", &s)] {
                    if p.failures > 0 || p.throughput == 0.0 {
                        failed = true;
                        eprintln!(
                            "{client:?} {name} c={concurrency}: {} failures, first: {:?}",
                            p.failures, p.first_failure
                        );
                    }
                }
                rounds.push((b, s));
            }
            let ratios: Vec<f64> = rounds.iter().map(|(b, s)| s.throughput / b.throughput).collect();
            eprintln!("{client:?} c={concurrency:<3} done: ratio per round {ratios:.2?}");
            rows.push((concurrency, rounds));
        }
        tables.push((client, rows));
    }
    if let Some(perf) = perf {
        stop_perf(perf);
    }
    drop((serve, bare));

    for (client, rows) in &tables {
        println!();
        println!("client: {}", client.describe());
        println!();
        println!(
            "| concurrency | bare TLS req/s | bare p50 | bare p99 | `serve --webhook-only` req/s | serve p50 | serve p99 | ratio | ratio per round |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for (c, rounds) in rows {
            let mean = |f: &dyn Fn(&(Point, Point)) -> f64| rounds.iter().map(f).sum::<f64>() / rounds.len() as f64;
            let (bt, st) = (mean(&|r| r.0.throughput), mean(&|r| r.1.throughput));
            let per_round: Vec<String> =
                rounds.iter().map(|(b, s)| format!("{:.2}", s.throughput / b.throughput)).collect();
            println!(
                "| {c} | {bt:.0} | {:.2} ms | {:.2} ms | {st:.0} | {:.2} ms | {:.2} ms | **{:.2}** | {} |",
                mean(&|r| r.0.p50),
                mean(&|r| r.0.p99),
                mean(&|r| r.1.p50),
                mean(&|r| r.1.p99),
                st / bt,
                per_round.join(", ")
            );
        }
    }
    let logged = log_lines.load(Ordering::Relaxed) - logged_before;
    println!();
    println!("serve wrote {logged} log lines during the runs");
    if failed {
        std::process::exit(1);
    }
}

/// One server at one concurrency, one round; latencies in ms.
struct Point {
    throughput: f64,
    p50: f64,
    p99: f64,
    failures: u64,
    first_failure: Option<String>,
}

impl Point {
    fn of(mut r: Report) -> Self {
        r.sort();
        Self {
            throughput: r.throughput(),
            p50: r.quantile(0.5).as_secs_f64() * 1e3,
            p99: r.quantile(0.99).as_secs_f64() * 1e3,
            failures: r.failures as u64,
            first_failure: r.first_failure,
        }
    }

    fn of_hey(h: hey::Summary) -> Self {
        Self {
            throughput: h.throughput,
            p50: h.p50.as_secs_f64() * 1e3,
            p99: h.p99.as_secs_f64() * 1e3,
            failures: h.failures,
            first_failure: h.first_failure,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Rust,
    Hey,
}

impl Client {
    fn describe(self) -> &'static str {
        match self {
            Client::Rust => {
                "ours (webhook/load.rs: tokio + hyper 1 + rustls, HTTP/1.1 keep-alive, every answer parsed and its uid checked)"
            }
            Client::Hey => "hey (HTTP/1.1 keep-alive; counts status codes only)",
        }
    }
}

/// This binary as the reference server, in its own process.
fn start_bare(cert: &Path, key: &Path) -> (Process, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .arg("bare-server")
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("bare server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("bare server address");
    let addr = line.trim().parse().unwrap_or_else(|_| panic!("bare server printed {line:?}"));
    (Process(child), addr)
}

fn bare_server(args: &[String]) {
    let (cert, key) = (std::fs::read(&args[0]).expect("cert"), std::fs::read(&args[1]).expect("key"));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("address"));
        bare::serve(listener, bare::acceptor(&cert, &key)).await;
    });
}

/// `serve --webhook-only` on free loopback ports; its stderr (the JSON logs) is read
/// and counted by a thread, as a container runtime reads a pod's logs.
fn start_serve(bin: &Path, cert: &Path, key: &Path, log: Option<&str>) -> (Process, SocketAddr, Arc<AtomicU64>) {
    let (addr, admin) = (free_port(), free_port());
    let mut command = Command::new(bin);
    match log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = command
        .args(["serve", "--webhook-only", "--addr", &addr.to_string(), "--admin-addr", &admin.to_string()])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stderr(Stdio::piped())
        .spawn()
        .expect("apisix-canary serve");
    let lines = Arc::new(AtomicU64::new(0));
    let (mut stderr, counter) = (child.stderr.take().expect("stderr"), lines.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            counter.fetch_add(buf[..n].iter().filter(|&&b| b == b'\n').count() as u64, Ordering::Relaxed);
        }
    });
    (Process(child), addr, lines)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

fn wait_until_serving(
    runtime: &tokio::runtime::Runtime,
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    body: &Bytes,
) {
    let deadline = Instant::now() + STARTUP;
    let probe = Load {
        addr,
        path: PATH.to_owned(),
        body: body.clone(),
        uid: UID.to_owned(),
        concurrency: 1,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(20),
        fresh: false,
    };
    loop {
        let report = runtime.block_on(load::run(&probe, connector));
        if report.failures == 0 && report.requests() > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} not serving: {:?}", report.first_failure);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops `perf record` with SIGINT so it writes its file.
fn stop_perf(perf: Process) {
    let _ = Command::new("kill").args(["-INT", &perf.0.id().to_string()]).status();
    let mut perf = perf;
    let _ = perf.0.wait();
}
