//! The built-in analysis against the sim's real Prometheus scraping its APISIX-like
//! gateway: the canary-only query sees the canary's errors that Flagger's blended query
//! dilutes; no traffic is "no values found"; a Prometheus nobody answers is a failed query.

#[path = "support/binaries.rs"]
mod binaries;
#[path = "support/gateway.rs"]
mod gateway;

use std::time::{Duration, Instant};

use apisix_canary::analysis::{self, Prometheus, QueryError, Scope, Target, Verdict};
use apisix_canary::release::plan::{Metric, MetricScope, MetricSource, NoData, Plan};
use gateway::{backend, route, sim_with_prometheus, start_load, wait_samples};
use serde_json::json;

const HOST: &str = "app.example.com";
const STABLE: [&str; 2] = ["10.244.8.1", "10.244.8.2"];
const CANARY: [&str; 2] = ["10.244.8.20", "10.244.8.21"];
/// Short, so the test needs few scrapes (Prometheus scrapes every second).
const INTERVAL: Duration = Duration::from_secs(10);

/// The plan's two built-in metrics and a template one, which the analysis leaves out.
fn plan() -> Plan {
    let metric = |name: &str, source, min, max| Metric {
        name: name.into(),
        source,
        min,
        max,
        interval: INTERVAL,
        scope: MetricScope::Canary,
        on_no_data: NoData::Fail,
        baseline: None,
        min_requests: 0,
    };
    gateway::plan(
        INTERVAL,
        vec![
            metric("request-success-rate", MetricSource::RequestSuccessRate, Some(99.0), None),
            metric(
                "404s percentage",
                MetricSource::Template { name: "not-found".into(), namespace: None, variables: Default::default() },
                None,
                Some(5.0),
            ),
            metric("request-duration", MetricSource::RequestDuration, None, Some(100.0)),
        ],
    )
}

fn target(scope: Scope, canary_nodes: &[&str]) -> Target {
    Target {
        namespace: "test".into(),
        canary: "podinfo".into(),
        deployment: "podinfo".into(),
        generated_route: "podinfo-podinfo-canary".into(),
        canary_nodes: canary_nodes.iter().map(|s| (*s).to_owned()).collect(),
        stable_nodes: vec![],
        scope,
    }
}

fn value(verdicts: &[(String, Verdict)], name: &str) -> f64 {
    match verdicts.iter().find(|(n, _)| n == name) {
        Some((_, Verdict::Pass { value: Some(value) } | Verdict::Halt { value: Some(value), .. })) => *value,
        other => panic!("{name}: no value: {other:?}"),
    }
}

fn message<'a>(verdicts: &'a [(String, Verdict)], name: &str) -> &'a str {
    match verdicts.iter().find(|(n, _)| n == name) {
        Some((_, Verdict::Halt { message, .. })) => message,
        other => panic!("{name}: not a halt: {other:?}"),
    }
}

#[tokio::test]
async fn canary_scope_sees_the_canarys_errors_that_the_route_scope_blends() {
    let sim = sim_with_prometheus().await;
    backend(&sim, "podinfo", &STABLE, json!([])).await;
    // Half the canary's answers are 500s, each after 150 ms.
    let faults = json!([{"name": "SIM_ERROR_RATE", "value": "50"}, {"name": "SIM_LATENCY_MS", "value": "150"}]);
    backend(&sim, "podinfo-canary", &CANARY, faults).await;
    sim.create(route("podinfo", HOST, 0, json!([{"serviceName": "podinfo", "servicePort": 80}]))).await.unwrap();
    let weighted = json!([{"serviceName": "podinfo", "servicePort": 80, "weight": 50},
                          {"serviceName": "podinfo-canary", "servicePort": 80, "weight": 50}]);
    sim.create(route("podinfo-podinfo-canary", HOST, 1, weighted)).await.unwrap();
    // Bounded by the test: the sim stops the load when dropped.
    start_load(&sim, &format!("hey -z 30s -q 40 -c 4 -host {HOST} http://apisix-gateway.apisix/api/info")).await;

    let started = Instant::now();
    let prometheus = Prometheus::new(&sim.prometheus_url().unwrap(), Duration::from_secs(2)).unwrap();
    sim.prometheus().unwrap().wait_scraping(Duration::from_secs(15)).await.unwrap();
    // Three scrapes of the canary's series in the window: enough for rate() to settle.
    let samples = "min(count_over_time(apisix_http_status{route=\"test_podinfo-podinfo-canary_method\"}[10s]))";
    wait_samples(&prometheus, samples, 3.0, started + Duration::from_secs(20), "the canary's traffic").await;

    let (plan, by_canary, by_route) = (plan(), target(Scope::Canary, &CANARY), target(Scope::Route, &CANARY));
    let (canary, route) =
        tokio::join!(analysis::run(&plan, &by_canary, &prometheus), analysis::run(&plan, &by_route, &prometheus),);
    let names: Vec<&str> = canary.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["request-success-rate", "request-duration"], "built-in metrics only, in order");
    let (canary_rate, route_rate) = (value(&canary, "request-success-rate"), value(&route, "request-success-rate"));
    eprintln!("success rate: canary {canary_rate:.2}%, route {route_rate:.2}%");
    assert!((40.0..=60.0).contains(&canary_rate), "the canary fails half its requests: {canary_rate}");
    assert!((65.0..=85.0).contains(&route_rate), "the route blends in the healthy stable: {route_rate}");
    let halt = message(&canary, "request-success-rate");
    assert_eq!(halt, format!("Halt podinfo.test advancement success rate {canary_rate:.2}% < 99%"));
    // 150 ms answers: the P99 interpolates inside APISIX's (100, 200] ms bucket.
    let p99 = value(&canary, "request-duration");
    assert!(p99 > 150.0 && p99 <= 200.0, "P99 {p99}");
    let halt = message(&canary, "request-duration");
    assert_eq!(halt, format!("Halt podinfo.test advancement request duration {}ms > 100ms", p99 as u64));

    // Nodes that served nothing: no series at all, which is "no values found".
    let idle = analysis::run(&plan, &target(Scope::Canary, &["10.244.8.99"]), &prometheus).await;
    assert_eq!(
        message(&idle, "request-success-rate"),
        "Halt advancement no values found for apisix metric request-success-rate probably podinfo.test is not \
         receiving traffic: running query failed: no values found"
    );
    assert_eq!(
        message(&idle, "request-duration"),
        "Halt advancement no values found for apisix metric request-duration probably podinfo.test is not \
         receiving traffic"
    );
    let stable_only = target(Scope::Canary, &STABLE);
    let query =
        analysis::query::Series::new("test", "podinfo-podinfo-canary", Scope::Canary, &stable_only.canary_nodes);
    assert!(prometheus.scalar(&query.unwrap().success_rate(INTERVAL)).await.unwrap().is_some_and(|v| v > 99.0));

    // The client's other answers, from the real server.
    assert_eq!(prometheus.scalar("vector(0) / vector(0)").await.unwrap(), None, "NaN is no values");
    assert_eq!(prometheus.scalar("vector(3)").await.unwrap(), Some(3.0));
    assert!(matches!(prometheus.scalar("1").await, Err(QueryError::NotVector("scalar"))));
    assert!(matches!(
        prometheus.scalar("vector(1) or label_replace(vector(2), \"a\", \"b\", \"\", \"\")").await,
        Err(QueryError::ManySeries(2))
    ));
    let refused = prometheus.scalar("sum(").await.unwrap_err().to_string();
    assert!(
        refused.starts_with(&format!("prometheus at {} refused the query: bad_data: ", prometheus.url())),
        "{refused}"
    );
    eprintln!("took {:?}", started.elapsed());
}

/// A port nothing listens on: bound, then released.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_prometheus_fails_every_check() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let prometheus = Prometheus::new(&url, Duration::from_secs(2)).unwrap();
    let verdicts = analysis::run(&plan(), &target(Scope::Canary, &CANARY), &prometheus).await;
    assert_eq!(verdicts.len(), 2);
    for (name, verdict) in &verdicts {
        let Verdict::Halt { message, value: None } = verdict else { panic!("{name}: {verdict:?}") };
        let want = format!("Prometheus query failed: prometheus at {url} unreachable: ");
        assert!(message.starts_with(&want), "{name}: {message}");
        assert!(message.contains("Connection refused"), "{name}: {message}");
        // Short enough for an Event: no wrapper's words, no URL with the whole query.
        assert!(!message.contains("failed to send request") && !message.contains("api/v1/query"), "{message}");
    }
}

#[tokio::test]
async fn a_silent_prometheus_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let prometheus = Prometheus::new(&url, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let e = prometheus.scalar("vector(1)").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout");
    assert_eq!(e.to_string(), format!("prometheus at {url} did not answer within 300ms"));
    held.abort();
}

#[tokio::test]
async fn no_canary_node_is_no_values_without_a_query() {
    // Nothing listens there: an answer other than "no values" would mean it was asked.
    let prometheus = Prometheus::new(&format!("http://127.0.0.1:{}", free_port()), Duration::from_secs(1)).unwrap();
    let verdicts = analysis::run(&plan(), &target(Scope::Canary, &[]), &prometheus).await;
    assert!(message(&verdicts, "request-success-rate").starts_with("Halt advancement no values found"));
    assert!(message(&verdicts, "request-duration").starts_with("Halt advancement no values found"));
}
