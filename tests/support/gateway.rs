//! A release's traffic in the sim: Services with ready Pods (faults from their env)
//! behind the APISIX-like gateway, a route with the prometheus plugin, and load from
//! the in-process load tester.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sim::Sim;
use tokio::net::TcpStream;

/// Every object lives here.
pub const NAMESPACE: &str = "test";

/// The sim with its real Prometheus (which scrapes the gateway every second), and the
/// namespace every object lives in.
pub async fn sim_with_prometheus() -> Sim {
    let options = sim::Options {
        prometheus: true,
        prometheus_bin: Some(super::binaries::require_binary("prometheus")),
        ..Default::default()
    };
    let sim = Sim::start_with(options).await.unwrap();
    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})).await.unwrap();
    sim
}

/// Waits until the scalar `query` (a count of scraped samples) reaches `at_least`;
/// fails as `what` if it has not by `deadline`.
pub async fn wait_samples(
    prometheus: &apisix_canary::analysis::Prometheus,
    query: &str,
    at_least: f64,
    deadline: std::time::Instant,
    what: &str,
) {
    while !prometheus.scalar(query).await.unwrap().is_some_and(|n| n >= at_least) {
        assert!(std::time::Instant::now() < deadline, "no scrapes of {what} in time ({query})");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A selector-less Service, its ready Pods (with `env`) and their EndpointSlice.
pub async fn backend(sim: &Sim, service: &str, ips: &[&str], env: Value) {
    sim.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9898}]}}))
        .await
        .unwrap();
    let mut endpoints = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("{service}-{i}");
        sim.create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": service}},
            "spec": {"containers": [{"name": "podinfod", "image": "stefanprodan/podinfo:6.0.2",
                "ports": [{"containerPort": 9898}], "env": env}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}]}}))
            .await
            .unwrap();
        endpoints.push(json!({"addresses": [ip], "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": name, "namespace": NAMESPACE}}));
    }
    sim.create(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-x7k2p"), "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 9898, "protocol": "TCP"}]}))
        .await
        .unwrap();
}

/// The scenario's rule `method` for `host` with the prometheus plugin, as the user's
/// route and as the generated one (higher priority, stable and canary weighted).
pub fn route(name: &str, host: &str, priority: i64, backends: Value) -> Value {
    json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"http": [{"name": "method", "priority": priority,
            "match": {"hosts": [host], "paths": ["/*"], "methods": ["GET"]}, "backends": backends,
            "plugins": [{"name": "prometheus", "enable": true, "config": {"prefer_name": true}}]}]}})
}

/// POST to the sim's load tester, as the scenario's `rollout` webhook does.
pub async fn start_load(sim: &Sim, cmd: &str) {
    let addr: SocketAddr = sim.loadtester_url().trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(TcpStream::connect(addr).await.unwrap())).await.unwrap();
    tokio::spawn(conn);
    let body = json!({"name": "podinfo", "namespace": NAMESPACE, "phase": "Progressing",
        "metadata": {"type": "cmd", "cmd": cmd}});
    let req = http::Request::post("/")
        .header("host", "flagger-loadtester.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&text));
}

/// A release plan over `metrics`: steps of 10 up to 50, every interval `interval`.
pub fn plan(
    interval: std::time::Duration,
    metrics: Vec<apisix_canary::release::plan::Metric>,
) -> apisix_canary::release::plan::Plan {
    apisix_canary::release::plan::Plan {
        target: "podinfo".into(),
        route: "podinfo".into(),
        service: None,
        port: None,
        apex: None,
        interval,
        threshold: 10,
        steps: vec![10, 20, 30, 40, 50],
        max_weight: 50,
        step_weight_promotion: None,
        progress_deadline: std::time::Duration::from_secs(60),
        skip_analysis: false,
        suspend: false,
        metrics,
        webhooks: vec![],
        alerts: vec![],
        metrics_server: None,
        ingress: None,
        canary_ready_threshold: 100,
        judge: apisix_canary::release::plan::Judge::Interval,
        ab: None,
        sticky: None,
    }
}
