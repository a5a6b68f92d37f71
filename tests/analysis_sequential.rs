//! The sequential judge's counts against the sim's real Prometheus: a canary's series,
//! born after the analysis started, count whole (a `rate()` misses their first
//! increments); the stable's, older, count only what came after; and the judge rejects
//! a canary failing half its requests within seconds of its traffic.

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/gateway.rs"]
mod gateway;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apisix_canary::analysis::judge;
use apisix_canary::analysis::query::Series;
use apisix_canary::analysis::{Prometheus, Scope};
use apisix_canary::api::apisix_route::ApisixRoute;
use apisix_canary::release::plan::{Metric, MetricScope, MetricSource, NoData};
use gateway::{backend, route, sim_with_prometheus, start_load, wait_samples};
use serde_json::json;

const HOST: &str = "app.example.com";
const STABLE: [&str; 1] = ["10.244.9.1"];
const CANARY: [&str; 1] = ["10.244.9.20"];
const GENERATED: &str = "podinfo-podinfo-canary";

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn counts_since_the_start_are_exact_and_a_failing_canary_is_rejected_in_seconds() {
    let sim = sim_with_prometheus().await;
    backend(&sim, "podinfo", &STABLE, json!([])).await;
    backend(&sim, "podinfo-canary", &CANARY, json!([{"name": "SIM_ERROR_RATE", "value": "50"}])).await;
    sim.create(route("podinfo", HOST, 0, json!([{"serviceName": "podinfo", "servicePort": 80}]))).await.unwrap();
    // The stable answers the generated route first, alone: its series exist before the start.
    let stable_only = json!([{"serviceName": "podinfo", "servicePort": 80, "weight": 100},
                             {"serviceName": "podinfo-canary", "servicePort": 80, "weight": 0}]);
    sim.create(route(GENERATED, HOST, 1, stable_only)).await.unwrap();
    start_load(&sim, &format!("hey -z 40s -q 20 -c 2 -host {HOST} http://apisix-gateway.apisix/api/info")).await;
    let prometheus = Prometheus::new(&sim.prometheus_url().unwrap(), Duration::from_secs(2)).unwrap();
    sim.prometheus().unwrap().wait_scraping(Duration::from_secs(15)).await.unwrap();
    let scraped = format!("count_over_time(apisix_http_status{{route=\"test_{GENERATED}_method\"}}[5s])");
    wait_samples(&prometheus, &format!("min({scraped})"), 2.0, Instant::now() + Duration::from_secs(20), "the stable")
        .await;

    // The analysis starts; the canary gets half the traffic from now on.
    let since = unix_now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let halves = json!([{"serviceName": "podinfo", "servicePort": 80, "weight": 50},
                        {"serviceName": "podinfo-canary", "servicePort": 80, "weight": 50}]);
    let routes: kube::Api<ApisixRoute> = kube::Api::namespaced(sim.client().unwrap(), "test");
    let patch = kube::api::Patch::Merge(route(GENERATED, HOST, 1, halves));
    routes.patch(GENERATED, &kube::api::PatchParams::default(), &patch).await.unwrap();

    let canary = Series::new("test", GENERATED, Scope::Canary, &CANARY.map(String::from)).unwrap();
    let stable = Series::of_nodes("test", GENERATED, &STABLE.map(String::from)).unwrap();
    let metric = |name: &str, source, min, max| Metric {
        name: name.into(),
        source,
        min,
        max,
        interval: Duration::from_secs(10),
        scope: MetricScope::Canary,
        on_no_data: NoData::Fail,
        baseline: None,
        min_requests: 0,
    };
    let plan = gateway::plan(
        Duration::from_secs(2),
        vec![
            metric("request-success-rate", MetricSource::RequestSuccessRate, Some(99.0), None),
            metric("request-duration", MetricSource::RequestDuration, None, Some(300.0)),
        ],
    );
    let tallies = judge::tallies(&plan, &canary, None, since);
    assert_eq!(tallies.len(), 2);
    assert_eq!(tallies[1].what, "share slower than 500ms", "300 ms is counted at APISIX's 500 ms bucket");

    // Until the test rejects: it looks every second, as the controller looks at each scrape.
    let first_traffic = Instant::now();
    let rejected = loop {
        let window = judge::Window { since, now: unix_now(), step: Duration::from_secs(1) };
        let tested = judge::judge(&tallies, 99.0, &prometheus, window).await.unwrap();
        if let Some(why) = tested[0].rejected.clone() {
            assert_eq!(tested[1].rejected, None, "the canary answers fast: {tested:?}");
            break (why, tested[0].requests);
        }
        assert!(first_traffic.elapsed() < Duration::from_secs(20), "not rejected: {tested:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("rejected after {:?}: {}", first_traffic.elapsed(), rejected.0);
    assert!(first_traffic.elapsed() < Duration::from_secs(10), "within seconds of the canary's traffic");
    assert!(
        rejected.0.starts_with("canary 5xx share ")
            && rejected.0.ends_with(&format!("(sequential test, 99 % confidence, {} requests)", rejected.1)),
        "{}",
        rejected.0
    );

    // compare: baseline: the same canary against its healthy stable over the same time.
    let compared = gateway::plan(
        Duration::from_secs(2),
        vec![Metric {
            baseline: Some(5.0),
            ..metric("request-success-rate", MetricSource::RequestSuccessRate, None, None)
        }],
    );
    let tallies = judge::tallies(&compared, &canary, Some(&stable), since);
    assert!(tallies[0].stable.is_some(), "{tallies:?}");
    let why = loop {
        let window = judge::Window { since, now: unix_now(), step: Duration::from_secs(1) };
        let tested = judge::judge(&tallies, 99.0, &prometheus, window).await.unwrap();
        if let Some(why) = tested[0].rejected.clone() {
            break why;
        }
        assert!(first_traffic.elapsed() < Duration::from_secs(30), "not rejected: {tested:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        why.starts_with("canary 5xx share ") && why.contains("> stable's 0.0 % (sequential test against the stable"),
        "{why}"
    );

    // Exact counts at one instant: the canary's series were born after `since`, so all
    // of them is this release's; the stable's were there before, so only the difference.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = unix_now() - 1;
    let sum = |q: String| {
        let prometheus = prometheus.clone();
        async move { prometheus.scalar_at(&q, at).await.unwrap().unwrap_or(0.0) }
    };
    let canary_all = format!("sum(apisix_http_status{{route=\"test_{GENERATED}_method\", node=\"{}\"}})", CANARY[0]);
    let stable_all = format!("sum(apisix_http_status{{route=\"test_{GENERATED}_method\", node=\"{}\"}})", STABLE[0]);
    let (counted, whole) = (sum(canary.errors_since(since).0).await, sum(canary_all.clone()).await);
    assert!(whole > 0.0 && counted == whole, "the canary's series count whole: {counted} vs {whole}");
    let before = prometheus.scalar_at(&stable_all, since).await.unwrap().unwrap();
    let (counted, now) = (sum(stable.errors_since(since).0).await, sum(stable_all).await);
    assert!(
        before > 0.0 && counted == now - before,
        "the stable's count what came after: {counted} vs {now} - {before}"
    );
    let errors = sum(canary.errors_since(since).1).await;
    assert!(errors > 0.0 && errors < whole, "half the canary's answers are 500s: {errors} of {whole}");
}
