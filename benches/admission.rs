//! Server-side latency of one Deployment review (budget: under 1 ms at p99).
//!
//! `cargo bench --bench admission`: answers the fixture reviews many times through the
//! router (body in, JSON out, no socket) and prints p50/p99/max per fixture.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apisix_canary::metrics::Metrics;
use apisix_canary::server::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

const ITERATIONS: usize = 20_000;
const BUDGET_P99: Duration = Duration::from_millis(1);

fn main() {
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
        let mut samples = Vec::with_capacity(ITERATIONS);
        runtime.block_on(async {
            for i in 0..ITERATIONS + 1_000 {
                let req = Request::post(path).body(Full::new(body.clone())).expect("request");
                let start = Instant::now();
                let res = router.route(req).await;
                let bytes = res.into_body().collect().await.expect("body").to_bytes();
                let elapsed = start.elapsed();
                std::hint::black_box(bytes);
                if i >= 1_000 {
                    samples.push(elapsed);
                }
            }
        });
        samples.sort_unstable();
        let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        let (p50, p99, max) = (q(0.50), q(0.99), samples[samples.len() - 1]);
        over_budget |= p99 > BUDGET_P99;
        println!(
            "{path:<24} {file:<28} {} B  p50 {:>7.1}us  p99 {:>7.1}us  max {:>8.1}us",
            body.len(),
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            max.as_secs_f64() * 1e6
        );
    }
    if over_budget {
        println!("p99 over the {BUDGET_P99:?} budget");
        std::process::exit(1);
    }
}
