//! `compare: baseline` and `minRequests` against the sim's real Prometheus scraping its
//! APISIX-like gateway: a canary as bad as the stable passes the comparison while the
//! fixed bound halts it; a canary worse than the stable halts; a metric waits for the
//! canary's traffic, then is judged.

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/gateway.rs"]
mod gateway;

use std::time::{Duration, Instant};

use apisix_canary::analysis::{self, Prometheus, Scope, Target, Verdict};
use apisix_canary::release::plan::{Metric, MetricScope, MetricSource, NoData, Plan};
use gateway::{NAMESPACE, backend, route, sim_with_prometheus, start_load, wait_samples};
use serde_json::json;
use sim::Sim;

/// Short, so the test needs few scrapes (Prometheus scrapes every second).
const INTERVAL: Duration = Duration::from_secs(10);

/// One release: its hosts, its generated route, its stable's and canary's pod IPs.
struct Release {
    host: &'static str,
    /// The generated route `<route>-<d>-canary`.
    route: &'static str,
    stable: [&'static str; 2],
    canary: [&'static str; 2],
}

/// Both versions fail 10% of their requests.
const ALIKE: Release = Release {
    host: "alike.example.com",
    route: "alike-podinfo-canary",
    stable: ["10.244.9.1", "10.244.9.2"],
    canary: ["10.244.9.20", "10.244.9.21"],
};
/// Only the canary fails (20%), and answers after 150 ms.
const WORSE: Release = Release {
    host: "worse.example.com",
    route: "worse-podinfo-canary",
    stable: ["10.244.10.1", "10.244.10.2"],
    canary: ["10.244.10.20", "10.244.10.21"],
};
/// Healthy, and idle until the test sends its traffic.
const IDLE: Release = Release {
    host: "idle.example.com",
    route: "idle-podinfo-canary",
    stable: ["10.244.11.1", "10.244.11.2"],
    canary: ["10.244.11.20", "10.244.11.21"],
};

impl Release {
    fn target(&self) -> Target {
        let owned = |ips: &[&str]| ips.iter().map(|s| (*s).to_owned()).collect();
        Target {
            namespace: NAMESPACE.into(),
            canary: "podinfo".into(),
            deployment: "podinfo".into(),
            generated_route: self.route.into(),
            canary_nodes: owned(&self.canary),
            stable_nodes: owned(&self.stable),
            scope: Scope::Canary,
        }
    }

    /// The stable and canary Services with their pods, and the generated route at 50%.
    async fn deploy(&self, sim: &Sim, canary_env: serde_json::Value, stable_env: serde_json::Value) {
        let stable = self.route.trim_end_matches("-podinfo-canary");
        let canary = format!("{stable}-canary");
        backend(sim, stable, &self.stable, stable_env).await;
        backend(sim, &canary, &self.canary, canary_env).await;
        let weighted = json!([{"serviceName": stable, "servicePort": 80, "weight": 50},
                              {"serviceName": canary, "servicePort": 80, "weight": 50}]);
        sim.create(route(self.route, self.host, 1, weighted)).await.unwrap();
    }

    async fn load(&self, sim: &Sim) {
        // Bounded by the test: the sim stops the load when dropped.
        let host = self.host;
        start_load(sim, &format!("hey -z 40s -q 50 -c 2 -host {host} http://apisix-gateway.apisix/api/info")).await;
    }
}

fn metric(source: MetricSource, min: Option<f64>, max: Option<f64>) -> Metric {
    let name = match source {
        MetricSource::RequestSuccessRate => "request-success-rate",
        _ => "request-duration",
    };
    Metric {
        name: name.into(),
        source,
        min,
        max,
        interval: INTERVAL,
        scope: MetricScope::Canary,
        on_no_data: NoData::Fail,
        baseline: None,
        min_requests: 0,
    }
}

/// Success rate within 5 points of the stable, P99 within 50 ms of the stable's.
fn baseline_plan() -> Plan {
    gateway::plan(
        INTERVAL,
        vec![
            Metric { baseline: Some(5.0), ..metric(MetricSource::RequestSuccessRate, None, None) },
            Metric { baseline: Some(50.0), ..metric(MetricSource::RequestDuration, None, None) },
        ],
    )
}

fn verdict<'a>(verdicts: &'a [(String, Verdict)], name: &str) -> &'a Verdict {
    &verdicts.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not judged: {verdicts:?}")).1
}

/// Waits until Prometheus holds five scrapes of traffic of `release`'s canary in the
/// window (enough for rate() to settle), or fails after `limit`.
async fn wait_scrapes(prometheus: &Prometheus, release: &Release, started: Instant, limit: Duration) {
    let samples = format!(
        "min(count_over_time(apisix_http_status{{route=\"{NAMESPACE}_{}_method\", node=~\"{}\"}}[10s]))",
        release.route,
        release.canary.join("|").replace('.', "\\\\.")
    );
    let what = format!("{}'s canary traffic in {limit:?}", release.route);
    wait_samples(prometheus, &samples, 5.0, started + limit, &what).await;
}

#[tokio::test]
async fn the_canary_is_judged_against_the_stable_and_waits_for_traffic() {
    let sim = sim_with_prometheus().await;
    let tenth = json!([{"name": "SIM_ERROR_RATE", "value": "10"}]);
    ALIKE.deploy(&sim, tenth.clone(), tenth).await;
    let faults = json!([{"name": "SIM_ERROR_RATE", "value": "20"}, {"name": "SIM_LATENCY_MS", "value": "150"}]);
    WORSE.deploy(&sim, faults, json!([])).await;
    IDLE.deploy(&sim, json!([]), json!([])).await;
    ALIKE.load(&sim).await;
    WORSE.load(&sim).await;

    let started = Instant::now();
    let prometheus = Prometheus::new(&sim.prometheus_url().unwrap(), Duration::from_secs(2)).unwrap();
    sim.prometheus().unwrap().wait_scraping(Duration::from_secs(15)).await.unwrap();

    // (c) minRequests before any traffic of the idle release: waiting, not a failed check.
    let waiting = gateway::plan(
        INTERVAL,
        vec![Metric { min_requests: 50, ..metric(MetricSource::RequestSuccessRate, Some(99.0), None) }],
    );
    let before = analysis::run(&waiting, &IDLE.target(), &prometheus).await;
    assert_eq!(
        verdict(&before, "request-success-rate"),
        &Verdict::Wait {
            message: "Halt podinfo.test advancement waiting for traffic: request-success-rate needs 50 requests of \
                      the canary in 10s, got 0"
                .into()
        }
    );
    IDLE.load(&sim).await;

    wait_scrapes(&prometheus, &ALIKE, started, Duration::from_secs(25)).await;
    wait_scrapes(&prometheus, &WORSE, started, Duration::from_secs(25)).await;

    // (a) Both versions fail 10%: the comparison passes, the fixed 99% floor halts.
    let absolute = gateway::plan(INTERVAL, vec![metric(MetricSource::RequestSuccessRate, Some(99.0), None)]);
    let (compare, alike_target, worse_target) = (baseline_plan(), ALIKE.target(), WORSE.target());
    let (alike, alike_absolute, worse) = tokio::join!(
        analysis::run(&compare, &alike_target, &prometheus),
        analysis::run(&absolute, &alike_target, &prometheus),
        analysis::run(&compare, &worse_target, &prometheus),
    );
    eprintln!("alike: {alike:?}\nalike, absolute: {alike_absolute:?}\nworse: {worse:?}");
    let Verdict::Pass { value: Some(rate) } = verdict(&alike, "request-success-rate") else { panic!("{alike:?}") };
    assert!((85.0..=95.0).contains(rate), "the canary fails a tenth: {rate}");
    assert!(verdict(&alike, "request-duration").passed(), "{alike:?}");
    let Verdict::Halt { message, .. } = verdict(&alike_absolute, "request-success-rate") else { panic!() };
    assert!(message.starts_with("Halt podinfo.test advancement success rate ") && message.ends_with("% < 99%"));

    // (b) Only the canary fails and is slow: both comparisons halt, naming the stable.
    let Verdict::Halt { message, value: Some(rate) } = verdict(&worse, "request-success-rate") else { panic!() };
    assert!((70.0..=90.0).contains(rate), "the canary fails a fifth: {rate}");
    assert_eq!(
        message,
        &format!("Halt podinfo.test advancement success rate {rate:.2}% < 95.00% (the stable's 100.00% - 5)")
    );
    let Verdict::Halt { message, value: Some(p99) } = verdict(&worse, "request-duration") else { panic!() };
    assert!(*p99 > 150.0 && *p99 <= 200.0, "P99 {p99}");
    let prefix = format!("Halt podinfo.test advancement request duration {}ms > ", *p99 as u64);
    assert!(message.starts_with(&prefix) && message.ends_with(" + 50ms)"), "{message}");
    assert!(message.contains("(the stable's "), "{message}");

    // (c) Once the idle release's canary served 50 requests in the window: judged.
    loop {
        let after = analysis::run(&waiting, &IDLE.target(), &prometheus).await;
        match verdict(&after, "request-success-rate") {
            Verdict::Wait { .. } => {
                assert!(started.elapsed() < Duration::from_secs(45), "still waiting: {after:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            judged => {
                assert!(judged.passed(), "a healthy canary: {judged:?}");
                break;
            }
        }
    }
    eprintln!("took {:?}", started.elapsed());
}
