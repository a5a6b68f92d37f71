//! The batched built-in metrics against the sim's real Prometheus: for three releases
//! (their own nodes, errors and latencies) and every scope, the value read from the one
//! batched query per family equals the release's own PromQL evaluated at the same
//! instant, "no values" included; and releases analysed together send one query per
//! family and window.

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/gateway.rs"]
mod gateway;

use std::time::{Duration, Instant};

use apisix_canary::analysis::batch::{Batcher, Family, P99, Table};
use apisix_canary::analysis::query::Series;
use apisix_canary::analysis::{self, Prometheus, Scope, Target, Verdict};
use apisix_canary::release::plan::{Metric, MetricScope, MetricSource, NoData, Plan};
use gateway::{backend, route, sim_with_prometheus, start_load, wait_samples};
use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use sim::Sim;

/// Short, so the test needs few scrapes (Prometheus scrapes every second).
const WINDOW: Duration = Duration::from_secs(10);

/// One release: its route and host, its stable and canary nodes, the canary's faults.
struct Release {
    name: &'static str,
    host: &'static str,
    stable: &'static [&'static str],
    canary: &'static [&'static str],
    stable_env: serde_json::Value,
    canary_env: serde_json::Value,
}

impl Release {
    fn generated(&self) -> String {
        format!("{0}-{0}-canary", self.name)
    }
}

fn env(errors: u32, latency_ms: u32) -> serde_json::Value {
    json!([{"name": "SIM_ERROR_RATE", "value": errors.to_string()},
           {"name": "SIM_LATENCY_MS", "value": latency_ms.to_string()}])
}

fn releases() -> Vec<Release> {
    vec![
        Release {
            name: "podinfo",
            host: "podinfo.example.com",
            stable: &["10.244.8.1", "10.244.8.2"],
            canary: &["10.244.8.20", "10.244.8.21"],
            stable_env: env(0, 5),
            canary_env: env(50, 150),
        },
        Release {
            name: "cart",
            host: "cart.example.com",
            stable: &["10.244.9.1"],
            canary: &["10.244.9.20"],
            stable_env: env(5, 300),
            canary_env: env(10, 40),
        },
        Release {
            name: "ledger",
            host: "ledger.example.com",
            stable: &["10.244.10.1", "10.244.10.2"],
            canary: &["10.244.10.20"],
            stable_env: env(0, 20),
            canary_env: env(0, 700),
        },
        // Every answer of the canary a 500: no non-5xx series, yet a success rate of 0%
        // (not "no values found", which is for no request at all).
        Release {
            name: "vault",
            host: "vault.example.com",
            stable: &["10.244.11.1"],
            canary: &["10.244.11.20"],
            stable_env: env(0, 10),
            canary_env: env(100, 10),
        },
    ]
}

async fn start(releases: &[Release]) -> (Sim, Prometheus) {
    let sim = sim_with_prometheus().await;
    for (i, r) in releases.iter().enumerate() {
        let canary_service = format!("{}-canary", r.name);
        backend(&sim, r.name, r.stable, r.stable_env.clone()).await;
        backend(&sim, &canary_service, r.canary, r.canary_env.clone()).await;
        let own = json!([{"serviceName": r.name, "servicePort": 80}]);
        sim.create(route(r.name, r.host, 0, own)).await.unwrap();
        let weight = 30 + 10 * i;
        let weighted = json!([{"serviceName": r.name, "servicePort": 80, "weight": 100 - weight},
                              {"serviceName": canary_service, "servicePort": 80, "weight": weight}]);
        sim.create(route(&r.generated(), r.host, 1, weighted)).await.unwrap();
        let cmd = format!("hey -z 40s -q 15 -c 2 -host {} http://apisix-gateway.apisix/api/info", r.host);
        start_load(&sim, &cmd).await;
    }
    let prometheus = Prometheus::new(&sim.prometheus_url().unwrap(), Duration::from_secs(5)).unwrap();
    sim.prometheus().unwrap().wait_scraping(Duration::from_secs(15)).await.unwrap();
    // Five scrapes of every release's series in the window: a second before now, which
    // the comparison reads, rate() has several.
    let started = Instant::now();
    for r in releases {
        let samples = format!(
            "min(count_over_time(apisix_http_status{{route=\"test_{}_method\"}}[{}s]))",
            r.generated(),
            WINDOW.as_secs()
        );
        wait_samples(&prometheus, &samples, 5.0, started + Duration::from_secs(30), r.name).await;
    }
    (sim, prometheus)
}

fn nodes(ips: &[&str]) -> Vec<String> {
    ips.iter().map(|s| (*s).to_owned()).collect()
}

/// Equal within 1e-9 relative, or both none.
fn same(what: &str, own: Option<f64>, batched: Option<f64>) {
    match (own, batched) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            let ok = a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
            assert!(ok, "{what}: own query {a}, batched {b}");
        }
        _ => panic!("{what}: own query {own:?}, batched {batched:?}"),
    }
}

/// One sim for both checks: it takes a while to have traffic in Prometheus.
#[tokio::test]
async fn batched_analysis_against_a_real_prometheus() {
    let releases = releases();
    let (_sim, prometheus) = start(&releases).await;
    let started = Instant::now();
    batched_values_equal_each_releases_own_query(&releases, &prometheus).await;
    releases_analysed_together_send_one_query_per_family_and_window(&releases, &prometheus).await;
    a_canary_failing_every_request_is_judged_at_0_percent(&releases, &prometheus).await;
    eprintln!("took {:?} after the traffic was in", started.elapsed());
}

async fn batched_values_equal_each_releases_own_query(releases: &[Release], prometheus: &Prometheus) {
    // Both evaluated at the same instant: the same samples.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let at = i64::try_from(now.as_secs()).unwrap() - 1;
    let status = prometheus.instant(&Family::Status.query(WINDOW), Some(at)).await.unwrap();
    let status = Table::from_data(&status, "code").unwrap();
    let latency = prometheus.instant(&Family::Latency.query(WINDOW), Some(at)).await.unwrap();
    let latency = Table::from_data(&latency, "le").unwrap();
    eprintln!("batched: {} status series, {} bucket series", status.len(), latency.len());

    let mut compared = 0;
    for r in releases {
        let route = r.generated();
        let selections = [
            ("canary", Series::new("test", &route, Scope::Canary, &nodes(r.canary))),
            ("route", Series::new("test", &route, Scope::Route, &nodes(r.canary))),
            ("stable", Series::of_nodes("test", &route, &nodes(r.stable))),
            ("idle", Series::of_nodes("test", &route, &nodes(&["10.244.99.9"]))),
            ("other namespace", Series::new("prod", &route, Scope::Route, &[])),
        ];
        for (scope, series) in selections {
            let series = series.unwrap();
            let s = series.selection();
            let what = |m: &str| format!("{} {scope} {m}", r.name);
            let own = prometheus.scalar_at(&series.requests(WINDOW), at).await.unwrap();
            same(&what("requests"), own, status.requests(s, WINDOW));
            let own = prometheus.scalar_at(&series.success_rate(WINDOW), at).await.unwrap();
            same(&what("success rate"), own, status.success_rate(s));
            let own = prometheus.scalar_at(&series.request_duration(WINDOW), at).await.unwrap();
            same(&what("P99"), own, latency.quantile(P99, s));
            let expect_values = !matches!(scope, "idle" | "other namespace");
            assert_eq!(own.is_some(), expect_values, "{}", what("P99"));
            eprintln!(
                "{} {scope}: requests {:?}, success rate {:?}, P99 {:?}",
                r.name,
                status.requests(s, WINDOW),
                status.success_rate(s),
                latency.quantile(P99, s)
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 20);
    let vault = Series::new("test", "vault-vault-canary", Scope::Canary, &nodes(releases[3].canary)).unwrap();
    assert_eq!(status.success_rate(vault.selection()), Some(0.0), "only 5xx series: 0%");
    let own = prometheus.scalar_at(&vault.success_rate(WINDOW), at).await.unwrap();
    assert_eq!(own, Some(0.0), "its own query: 0%, as batched");
    assert!(status.requests(vault.selection(), WINDOW).is_some_and(|n| n > 0.0));
    // Its stable, in the same batched rows, keeps its own value.
    let stable = Series::of_nodes("test", "vault-vault-canary", &nodes(releases[3].stable)).unwrap();
    assert_eq!(status.success_rate(stable.selection()), Some(100.0));
}

/// The canary of `vault` answers every request with a 500: its check is a success rate
/// of 0% below the bound, in Flagger's words, from its own query and from the batch.
async fn a_canary_failing_every_request_is_judged_at_0_percent(releases: &[Release], prometheus: &Prometheus) {
    let vault = &releases[3];
    let metric = Metric {
        name: "request-success-rate".into(),
        source: MetricSource::RequestSuccessRate,
        min: Some(99.0),
        max: None,
        interval: WINDOW,
        scope: MetricScope::Canary,
        on_no_data: NoData::Fail,
        baseline: None,
        min_requests: 0,
    };
    let plan = gateway::plan(WINDOW, vec![metric]);
    let target = |canary_nodes: &[&str]| Target {
        namespace: "test".into(),
        canary: vault.name.into(),
        deployment: vault.name.into(),
        generated_route: vault.generated(),
        canary_nodes: nodes(canary_nodes),
        stable_nodes: nodes(vault.stable),
        scope: Scope::Canary,
    };
    let batcher = Batcher::new(prometheus.clone(), Duration::from_secs(1));
    let halt =
        Verdict::Halt { message: "Halt vault.test advancement success rate 0.00% < 99%".into(), value: Some(0.0) };
    let own = analysis::run(&plan, &target(vault.canary), prometheus).await;
    assert_eq!(own, [("request-success-rate".to_owned(), halt.clone())]);
    let batched = analysis::run(&plan, &target(vault.canary), &batcher).await;
    assert_eq!(batched, [("request-success-rate".to_owned(), halt)]);
    // Nodes that served no request: still "no values found", both ways.
    for verdicts in [
        analysis::run(&plan, &target(&["10.244.99.9"]), prometheus).await,
        analysis::run(&plan, &target(&["10.244.99.9"]), &batcher).await,
    ] {
        let [(_, Verdict::Halt { message, value: None })] = &verdicts[..] else { panic!("{verdicts:?}") };
        assert!(message.starts_with("Halt advancement no values found for apisix metric request-success-rate"));
    }
}

fn plan() -> Plan {
    let metric = |name: &str, source, scope, baseline| Metric {
        name: name.into(),
        source,
        min: None,
        max: None,
        interval: WINDOW,
        scope,
        on_no_data: NoData::Fail,
        baseline,
        min_requests: 10,
    };
    gateway::plan(
        WINDOW,
        vec![
            metric("request-success-rate", MetricSource::RequestSuccessRate, MetricScope::Canary, Some(1.0)),
            metric("request-duration", MetricSource::RequestDuration, MetricScope::Canary, Some(100.0)),
        ],
    )
}

async fn releases_analysed_together_send_one_query_per_family_and_window(
    releases: &[Release],
    prometheus: &Prometheus,
) {
    let queries = Counter::default();
    let batcher = Batcher::new(prometheus.clone().counted(queries.clone()), Duration::from_secs(1));
    let plan = plan();
    let targets: Vec<Target> = releases[..3]
        .iter()
        .flat_map(|r| {
            [Scope::Canary, Scope::Route].map(|scope| Target {
                namespace: "test".into(),
                canary: r.name.into(),
                deployment: r.name.into(),
                generated_route: r.generated(),
                canary_nodes: nodes(r.canary),
                stable_nodes: nodes(r.stable),
                scope,
            })
        })
        .collect();
    // Six analyses (three releases, two scopes), each with minRequests, a baseline and
    // two metrics: 36 queries each on its own, 2 batched.
    let runs = targets.iter().map(|t| analysis::run(&plan, t, &batcher));
    let verdicts = futures_util::future::join_all(runs).await;
    assert_eq!(queries.get(), 2, "one status and one latency query over the window");
    for (t, verdicts) in targets.iter().zip(&verdicts) {
        assert_eq!(verdicts.len(), 2);
        for (name, v) in verdicts {
            let value = match v {
                Verdict::Pass { value } | Verdict::Halt { value, .. } => *value,
                Verdict::Wait { message } => panic!("{} {name}: {message}", t.canary),
            };
            assert!(value.is_some(), "{} {:?} {name}: {v:?}", t.canary, t.scope);
        }
    }
    let rate = |i: usize| match &verdicts[i][0].1 {
        Verdict::Pass { value } | Verdict::Halt { value, .. } => value.unwrap(),
        Verdict::Wait { .. } => unreachable!(),
    };
    // podinfo's canary fails half its requests; the route blends in the healthy stable.
    assert!((35.0..=65.0).contains(&rate(0)), "{}", rate(0));
    assert!(rate(1) > rate(0), "{} vs {}", rate(1), rate(0));
    // Within the max age, another round asks nothing more.
    let again = analysis::run(&plan, &targets[2], &batcher).await;
    assert_eq!(again.len(), 2);
    assert_eq!(queries.get(), 2);
}
