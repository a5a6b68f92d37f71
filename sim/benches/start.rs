//! Wall-clock numbers of the simulated cluster, kept out of the tests (which assert
//! behaviour only): how long it takes to start (target: under 2 s, with Prometheus),
//! when Prometheus first scrapes the gateway, and how many requests a fixed-time `hey`
//! run sends (target: close to q x c x z).
//!
//! `cargo bench -p apisix-canary-sim --bench start`; prints the numbers, and exits 1 when
//! a target is missed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sim::{Options, Sim};
use tokio::net::TcpStream;

const STARTS: usize = 10;
const START_TARGET: Duration = Duration::from_secs(2);
/// `hey -z 2s -q 10 -c 2`: 10 per second for each of 2 workers, for 2 s.
const HEY: &str = "hey -z 2s -q 10 -c 2 -host app.example.com http://apisix-gateway.apisix/api/info";
const HEY_EXPECTED: u64 = 40;
/// The share of the expected count a run may miss or exceed (timer granularity).
const HEY_TOLERANCE: f64 = 0.3;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Starts `STARTS` sims with `options`; prints and returns the slowest start.
async fn starts(label: &str, options: &Options) -> Duration {
    let mut samples = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let started = Instant::now();
        let sim = Sim::start_with(options.clone()).await.expect("sim start");
        samples.push(started.elapsed());
        drop(sim);
    }
    samples.sort_unstable();
    let (p50, max) = (samples[samples.len() / 2], samples[samples.len() - 1]);
    println!("sim start {label:<18} p50 {:>7.1} ms  max {:>7.1} ms  ({STARTS} starts)", millis(p50), millis(max));
    max
}

/// One POST on a fresh HTTP/1.1 connection: status and body.
async fn post(base: &str, host: &str, body: &Value) -> (u16, String) {
    let addr: SocketAddr = base.trim_start_matches("http://").trim_end_matches('/').parse().expect("address");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::post("/")
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let res = sender.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The podinfo backend of the scenario: a Service, one ready Pod, its EndpointSlice and
/// the route, written by hand.
async fn podinfo(sim: &Sim) {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9898}]}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "podinfo-a", "namespace": "test"},
            "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.0"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.10", "conditions": [{"type": "Ready", "status": "True"}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "podinfo-x7k2p", "namespace": "test", "labels": {"kubernetes.io/service-name": "podinfo"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": "podinfo-a", "namespace": "test"}}],
            "ports": [{"name": "http", "port": 9898, "protocol": "TCP"}]}),
        json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"http": [{"name": "method", "match": {"hosts": ["app.example.com"], "paths": ["/*"]},
                "backends": [{"serviceName": "podinfo", "servicePort": 80}]}]}}),
    ];
    for object in objects {
        sim.create(object).await.expect("backend object");
    }
}

/// Requests a fixed-time `hey` run sends through the gateway.
async fn hey_count() -> u64 {
    let sim = Sim::start().await.expect("sim start");
    podinfo(&sim).await;
    let hook = json!({"name": "podinfo", "namespace": "test", "phase": "Progressing",
        "metadata": {"type": "cmd", "cmd": HEY}});
    let (status, body) = post(&sim.loadtester_url(), "flagger-loadtester.test", &hook).await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    while sim.loadtester().running() > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the hey run did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = sim.loadtester().sent();
    println!(
        "hey -z 2s -q 10 -c 2      {sent} requests (q x c x z = {HEY_EXPECTED}) in {:.0} ms",
        millis(started.elapsed())
    );
    sent
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut missed = Vec::new();
    runtime.block_on(async {
        starts("(API, gateway)", &Options::default()).await;
        let prometheus = std::path::Path::new("/usr/bin/prometheus").is_file();
        if prometheus {
            let with = Options { prometheus: true, ..Options::default() };
            let max = starts("with Prometheus", &with).await;
            if max > START_TARGET {
                missed.push(format!("a start with Prometheus took {max:?}, over {START_TARGET:?}"));
            }
            let started = Instant::now();
            let sim = Sim::start_with(with).await.expect("sim start");
            let scraped = sim.prometheus().expect("prometheus").wait_scraping(Duration::from_secs(60)).await;
            match scraped {
                Ok(_) => {
                    println!("first scrape              {:>7.1} ms after the start began", millis(started.elapsed()))
                }
                Err(e) => missed.push(e.to_string()),
            }
        } else {
            println!(
                "sim start with Prometheus: not measured, /usr/bin/prometheus is missing (apt-get install prometheus)"
            );
        }
        let sent = hey_count().await;
        let off = (sent as f64 - HEY_EXPECTED as f64).abs() / HEY_EXPECTED as f64;
        if off > HEY_TOLERANCE {
            missed.push(format!("hey sent {sent} requests, expected {HEY_EXPECTED} within {HEY_TOLERANCE}"));
        }
    });
    for m in &missed {
        println!("missed: {m}");
    }
    if !missed.is_empty() {
        std::process::exit(1);
    }
}
