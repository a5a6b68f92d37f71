//! Server-side latency of one Deployment review (budget: under 1 ms at p99).
//!
//! `cargo bench --bench admission`: answers the fixture reviews many times through the
//! router (body in, JSON out, no socket) and prints p50/p99/max per fixture; then a
//! review of a Deployment with 10,000 annotations (bounded: p99 under 50 ms).
//!
//! `cargo bench --bench admission -- --count PATH FIXTURE N`: only `admission::review` of
//! one fixture, N times, nothing timed or printed; for counting instructions per review
//! under `valgrind --tool=callgrind` (BENCHMARKS.md, "The second admission parse").

use std::sync::Arc;
use std::time::{Duration, Instant};

use apisix_canary::metrics::Metrics;
use apisix_canary::server::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

/// The allocator of the binary (`src/main.rs`), so a review costs here what it costs in `serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ITERATIONS: usize = 20_000;
const BUDGET_P99: Duration = Duration::from_millis(1);
/// The bound on a review of bad input at the edge (10,000 annotations).
const EDGE_P99: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--count") {
        let [path, file, n] = [1, 2, 3].map(|k| args.get(i + k).cloned().unwrap_or_default());
        let hook = apisix_canary::admission::Hook::from_path(&path).expect("--count PATH: a webhook path");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
        let body = std::fs::read(dir.join(&file)).expect("--count FIXTURE: a file of tests/fixtures/admission");
        for _ in 0..n.parse::<usize>().expect("--count N: a number") {
            std::hint::black_box(apisix_canary::admission::review(hook, std::hint::black_box(&body)));
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let router = Router::new(Arc::new(Metrics::new()));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
    let cases = [
        ("/mutate/deployments", "set-image.json"),
        ("/mutate/deployments", "not-opted-in.json"),
        ("/mutate/deployments", "unpause-while-locked.json"),
        ("/validate/deployments", "set-image.json"),
        ("/validate/deployments", "invalid-annotations.json"),
    ];
    let mut over_budget = false;
    for (path, file) in cases {
        let body = Bytes::from(std::fs::read(dir.join(file)).expect("fixture"));
        let (p50, p99, max) = measure(&runtime, &router, path, &body, ITERATIONS);
        over_budget |= p99 > BUDGET_P99;
        report(path, file, body.len(), p50, p99, max);
    }
    // Bad input at the edge (RELIABILITY.md): a Deployment with 10,000 annotations, a
    // thousand of them ours and unknown. Not under the budget, but bounded.
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("set-image.json")).expect("fixture")).expect("JSON");
    if let Some(annotations) = review["request"]["object"]["metadata"]["annotations"].as_object_mut() {
        for i in 0..10_000 {
            let key = if i % 10 == 0 { format!("apisix-canary.dev/x-{i}") } else { format!("example.com/k-{i}") };
            annotations.insert(key, serde_json::json!("v"));
        }
    }
    let body = Bytes::from(serde_json::to_vec(&review).expect("JSON"));
    let mut over_edge = false;
    for path in ["/mutate/deployments", "/validate/deployments"] {
        let (p50, p99, max) = measure(&runtime, &router, path, &body, 200);
        over_edge |= p99 > EDGE_P99;
        report(path, "10,000 annotations", body.len(), p50, p99, max);
    }
    if over_budget || over_edge {
        println!("p99 over the {BUDGET_P99:?} budget, or over {EDGE_P99:?} at the edge");
        std::process::exit(1);
    }
}

/// `iterations` answers of `body` on `path` (after a tenth as many to warm up):
/// p50, p99, max.
fn measure(
    runtime: &tokio::runtime::Runtime,
    router: &Router,
    path: &str,
    body: &Bytes,
    iterations: usize,
) -> (Duration, Duration, Duration) {
    let warm = iterations / 10;
    let mut samples = Vec::with_capacity(iterations);
    runtime.block_on(async {
        for i in 0..iterations + warm {
            let req = Request::post(path).body(Full::new(body.clone())).expect("request");
            let start = Instant::now();
            let res = router.route(req).await;
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            let elapsed = start.elapsed();
            std::hint::black_box(bytes);
            if i >= warm {
                samples.push(elapsed);
            }
        }
    });
    samples.sort_unstable();
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (q(0.50), q(0.99), samples[samples.len() - 1])
}

fn report(path: &str, what: &str, bytes: usize, p50: Duration, p99: Duration, max: Duration) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("{path:<24} {what:<28} {bytes} B  p50 {:>7.1}us  p99 {:>7.1}us  max {:>8.1}us", us(p50), us(p99), us(max));
}
