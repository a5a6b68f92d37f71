//! An A/B release on the sim (issue 30), as a user runs it: `serve` as its own process,
//! the real kubectl, `hey` through the gateway. Requests with `x-canary: insider` all
//! reach the canary once the release has moved them, requests without it never do
//! (counted from the gateway's own metrics, by node); five passing intervals promote;
//! a failing canary is rolled back and the header's requests are the stable's again.

#[path = "support/e2e.rs"]
mod e2e;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;

const CANARY: &str = r#"apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  routeRef: {apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 3
    iterations: 5
    match:
      - headers:
          x-canary:
            exact: insider
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        interval: 10s
        minRequests: 5
"#;

/// Requests answered, by (route rule, node), as the gateway's exposition counts them.
fn answered(w: &World) -> BTreeMap<(String, String), f64> {
    let addr = w.gateway.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /apisix/prometheus/metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_owned())
    };
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apisix_http_status{")) {
        let (Some(route), Some(node)) = (label(line, "route"), label(line, "node")) else { continue };
        let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *out.entry((route, node)).or_default() += n;
    }
    out
}

/// What `after` adds to `before`, by node, on the rules whose name starts with `route`.
fn added(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
    route: &str,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((r, node), n) in after.iter().filter(|((r, _), _)| r.starts_with(route)) {
        let was = before.get(&(r.clone(), node.clone())).copied().unwrap_or(0.0);
        if n - was > 0.0 {
            *out.entry(node.clone()).or_default() += n - was;
        }
    }
    out
}

/// `hey` through the gateway, started by the load tester as the scenario's hooks do.
fn hey(w: &World, cmd: &str) {
    let addr = w.loadtester.trim_start_matches("http://").trim_end_matches('/');
    let body = serde_json::json!({"name": "podinfo", "namespace": "test", "metadata": {"type": "cmd", "cmd": cmd}})
        .to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: flagger-loadtester.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

fn canary_ips(w: &World) -> Vec<String> {
    let ips =
        w.ok(&["-n", "test", "get", "pods", "-l", "app=podinfo-canary", "-o", "jsonpath={.items[*].status.podIP}"]);
    ips.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_matching_requests_alone_reach_the_canary_and_five_intervals_promote() {
    let w = World::start();
    w.install_canary(CANARY, &[]);
    let others = w.traffic();
    hey(&w, "hey -z 60s -q 10 -c 2 -H 'x-canary: insider' -host app.example.com http://apisix-gateway.apisix/api/info");
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    w.wait_weight(100, Duration::from_secs(60));
    let (moved, canary) = (answered(&w), canary_ips(&w));
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.jsonpath("canary/podinfo", "{.status.iterations}") != "5" {
        assert!(Instant::now() < deadline, "{:#?}", w.events());
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = answered(&w);
    let generated = added(&moved, &last, "test_podinfo-podinfo-canary_");
    let users = added(&BTreeMap::new(), &last, "test_podinfo_");
    eprintln!("matching: {generated:?}; the others: {users:?}; canary {canary:?}");
    assert!(
        !generated.is_empty() && generated.keys().all(|n| canary.contains(n)),
        "the matching requests all reach the canary: {generated:?} {canary:?}"
    );
    assert!(users.keys().all(|n| !canary.contains(n)) && !users.is_empty(), "the others never do: {users:?}");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(60)), "Succeeded", "{:#?}", w.events());
    let events = w.events();
    let iterations: Vec<&String> = events.iter().filter(|e| e.contains("canary iteration")).collect();
    assert_eq!(iterations.len(), 5, "{events:#?}");
    assert!(events.contains(&"Advance podinfo.test canary iteration 5/5".to_owned()));
    // status and report say the mode.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).env("KUBECONFIG", &w.kubeconfig).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status: serde_json::Value =
        serde_json::from_str(&cli(&["status", "podinfo", "-n", "test", "-o", "json"])).unwrap();
    assert_eq!(status[0]["mode"], "A/B (x-canary, 5 iterations)");
    let page = w.file("report.html", "");
    cli(&["report", "podinfo", "-n", "test", "--out", &page]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("A/B (x-canary, 5 iterations) release"), "the report says the mode");
    others.store(false, Ordering::Relaxed);
}

#[test]
fn a_failing_canary_is_rolled_back_and_the_matching_requests_are_the_stables_again() {
    let w = World::start();
    w.install_canary(CANARY, &[]);
    let others = w.traffic();
    hey(&w, "hey -z 60s -q 10 -c 2 -H 'x-canary: insider' -host app.example.com http://apisix-gateway.apisix/api/info");
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=100"]);
    w.wait_weight(100, Duration::from_secs(60));
    let canary = canary_ips(&w);
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(60)), "Failed", "{:#?}", w.events());
    assert!(w.events().iter().any(|e| e.starts_with("Rolling back podinfo.test failed checks threshold reached 3")));
    // The header's requests now take the user's rule: the stable answers them.
    let before = answered(&w);
    std::thread::sleep(Duration::from_secs(2));
    let after = answered(&w);
    let users = added(&before, &after, "test_podinfo_");
    assert!(!users.is_empty() && users.keys().all(|n| !canary.contains(n)), "{users:?} {canary:?}");
    assert!(added(&before, &after, "test_podinfo-podinfo-canary_").is_empty(), "no generated rule answers any more");
    others.store(false, Ordering::Relaxed);
}
