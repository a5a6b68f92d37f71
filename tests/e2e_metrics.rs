//! The analysis options end to end (`scope`, `compare: baseline` with `maxDelta`,
//! `minRequests`), on the sim's gateway and its real Prometheus: releases side by side
//! in one World, one namespace (and route host) each, their canaries' faults injected
//! with the sim's `SIM_ERROR_RATE`.
//!
//! The sim's faults are exact (error diffusion: the n-th request of a pod at 5% is the
//! 20th, 40th, ... to fail) and so is its weighted round robin. Prometheus' `rate()`
//! cannot count the first increment of a series that appears in its window (a pod's
//! first 500 creates the `code="500"` series at 1), so a canary's first error is
//! invisible: the metrics here ask for `minRequests` so that each is judged only once
//! the canary has served enough requests for its errors to show.

#[path = "support/e2e.rs"]
mod e2e;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::*;

/// Every release here: 2 s steps of 10 up to 20, three failed checks roll back.
const ANALYSIS: &str = "interval: 2s\n    threshold: 3\n    stepWeight: 10\n    maxWeight: 20";

/// One namespace's podinfo (Deployment, Service, route on `host`) in Canary mode.
struct App<'w> {
    w: &'w World,
    ns: &'static str,
    host: &'static str,
}

impl<'w> App<'w> {
    /// Installs podinfo in `ns` behind a route on `host`, the stable pods with `env`
    /// added to their container, and a Canary whose only metric is `metric` (YAML
    /// lines of the metric, after its name); returns once the Canary is Initialized.
    fn install(w: &'w World, ns: &'static str, host: &'static str, env: &[(&str, &str)], metric: &str) -> Self {
        let app = App { w, ns, host };
        let scenario = |f: &str| std::fs::read_to_string(fixture(&format!("scenario/{f}"))).unwrap();
        let in_ns = |text: String| text.replace("namespace: test", &format!("namespace: {ns}"));
        let added: String =
            env.iter().map(|(k, v)| format!("            - name: {k}\n              value: \"{v}\"\n")).collect();
        let deployment = scenario("podinfo.yaml")
            .lines()
            .filter(|l| !l.trim_start().starts_with("apisix-canary.dev/"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("  annotations:\n", "  annotations:\n    apisix-canary.dev/canary: podinfo\n")
            .replace("          env:\n", &format!("          env:\n{added}"));
        let canary = format!(
            r#"apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: {ns}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  routeRef: {{apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}}
  progressDeadlineSeconds: 120
  analysis:
    {ANALYSIS}
    metrics:
      - name: request-success-rate
{metric}
"#
        );
        let text = [
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
            in_ns(deployment),
            in_ns(scenario("service.yaml")),
            in_ns(scenario("route.yaml")).replace(HOST, host),
            canary,
        ]
        .join("\n---\n");
        let file = w.file(&format!("{ns}.yaml"), &text);
        w.ok(&["apply", "-f", &file]);
        w.ok(&["-n", ns, "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
        assert_eq!(app.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");
        app
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.ns];
        all.extend_from_slice(args);
        self.w.ok(&all)
    }

    fn canary(&self, path: &str) -> String {
        let out = self.w.kubectl(&["-n", self.ns, "get", "canary/podinfo", "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn weight(&self) -> u32 {
        self.canary("{.status.canaryWeight}").parse().unwrap_or(0)
    }

    fn failed_checks(&self) -> u32 {
        self.canary("{.status.failedChecks}").parse().unwrap_or(0)
    }

    /// The Canary's Events: (type, message, count).
    fn events(&self) -> Vec<(String, String, u32)> {
        let selector = "involvedObject.kind=Canary,involvedObject.name=podinfo";
        let path = "jsonpath={range .items[*]}{.type}|{.count}|{.message}{\"\\n\"}{end}";
        let out = self.kubectl(&["get", "events", "--field-selector", selector, "-o", path]);
        out.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '|');
                let (kind, count, message) = (parts.next()?, parts.next()?, parts.next()?);
                Some((kind.to_owned(), message.to_owned(), count.parse().unwrap_or(0)))
            })
            .collect()
    }

    fn messages(&self) -> Vec<String> {
        self.events().into_iter().map(|(_, m, _)| m).collect()
    }

    /// What a failure shows: the Canary's status and Events.
    fn state(&self) -> String {
        format!("{}: {}\n{:#?}", self.ns, self.canary("{.status}"), self.events())
    }

    fn wait_phase(&self, phases: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let phase = self.canary("{.status.phase}");
            if phases.contains(&phase.as_str()) {
                return phase;
            }
            if Instant::now() > deadline {
                let logs = self.w.logs.lock().unwrap().join("\n");
                panic!("phase {phase:?}, not {phases:?}, after {within:?}\n{}\nserve logs:\n{logs}", self.state());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Polls until `done` holds of the Canary's Events.
    fn wait_events(&self, what: &str, within: Duration, done: impl Fn(&[(String, String, u32)]) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.events()) {
            assert!(Instant::now() < deadline, "no Event {what} after {within:?}\n{}", self.state());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Requests to `/api/info` with this app's Host through the gateway from `threads`
    /// connections in turn, until the returned guard is dropped.
    fn traffic(&self, threads: usize) -> Traffic {
        let traffic = Traffic { on: Arc::new(AtomicBool::new(true)), sent: Arc::new(AtomicU64::new(0)) };
        let addr = self.w.gateway.trim_start_matches("http://").trim_end_matches('/').to_owned();
        for _ in 0..threads {
            let (on, sent, addr, host) = (traffic.on.clone(), traffic.sent.clone(), addr.clone(), self.host);
            std::thread::spawn(move || {
                while on.load(Ordering::Relaxed) {
                    if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                        let _ = write!(s, "GET /api/info HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                        let _ = s.read_to_end(&mut Vec::new());
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        traffic
    }

    /// The last value of the metric that serve observed for this release (its
    /// `/metrics` gauge).
    fn last_value(&self, metric: &str) -> f64 {
        let text = self.w.admin("serve-0", "/metrics").1;
        let series =
            format!(r#"apisix_canary_metric_analysis{{name="podinfo",namespace="{}",metric="{metric}"}} "#, self.ns);
        let value = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
        value.and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }
}

/// Traffic running until dropped (a failed assertion stops it too).
struct Traffic {
    on: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.on.store(false, Ordering::Relaxed);
    }
}

fn starts(messages: &[String], prefix: &str) -> usize {
    messages.iter().filter(|m| m.starts_with(prefix)).count()
}

/// The Events of failed checks: every "Halt" but those of a hold for traffic.
fn failed_checks(messages: &[String]) -> usize {
    messages.iter().filter(|m| m.starts_with("Halt ") && !m.contains(" advancement waiting for traffic: ")).count()
}

#[test]
fn a_canary_failing_5_percent_fails_its_own_check_and_passes_the_blended_one() {
    let w = World::start();
    // minRequests 40: the canary's second 500 (its 40th request) is in the window, so
    // its errors show; the blended route has 10 times the requests by then.
    let metric = |scope: &str| {
        format!(
            "        thresholdRange: {{min: 99}}\n        interval: 30s\n        minRequests: 40\n{}",
            if scope.is_empty() { String::new() } else { format!("        scope: {scope}\n") }
        )
    };
    let own = App::install(&w, "test", HOST, &[], &metric(""));
    let blended = App::install(&w, "blended", "blended.example.com", &[], &metric("route"));
    let traffic = [own.traffic(2), blended.traffic(2)];
    for app in [&own, &blended] {
        // One write, one new revision: the canary pods fail 5% of their requests.
        app.kubectl(&["set", "env", "deployment/podinfo", "SIM_ERROR_RATE=5"]);
    }

    // Canary scope: 95% of the canary's own requests succeed, below 99.
    assert_eq!(own.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{}", own.state());
    let events = own.messages();
    let halts: Vec<&String> =
        events.iter().filter(|m| m.starts_with("Halt podinfo.test advancement success rate ")).collect();
    assert!(!halts.is_empty() && halts.iter().all(|m| m.ends_with("% < 99%")), "{}", own.state());
    for halt in &halts {
        let rate: f64 = halt["Halt podinfo.test advancement success rate ".len()..]
            .split('%')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{halt}"));
        assert!((90.0..99.0).contains(&rate), "the canary's own 5% of errors, not the blend: {halt}");
    }
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 3".to_owned()), "{events:#?}");
    assert!(events.contains(&"Canary failed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    assert_eq!(starts(&events, "Promotion completed!"), 0, "{events:#?}");

    // Route scope, Flagger's query: 10% of the traffic at 5% errors is 0.5% of the
    // route's, so 99.5% passes and the release is promoted.
    assert_eq!(
        blended.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)),
        "Succeeded",
        "{}",
        blended.state()
    );
    let events = blended.messages();
    assert_eq!(failed_checks(&events), 0, "{events:#?}");
    for step in [10, 20] {
        let advance = format!("Advance podinfo.blended canary weight {step}");
        assert!(events.contains(&advance), "{events:#?}");
    }
    assert!(events.contains(&"Promotion completed! Scaling down podinfo.blended".to_owned()), "{events:#?}");
    // The blend did hold the canary's errors: below 100%, above 99.
    let value = blended.last_value("request-success-rate");
    assert!((99.0..100.0).contains(&value), "the blended success rate {value}");
    let sent: Vec<u64> = traffic.iter().map(|t| t.sent.load(Ordering::Relaxed)).collect();
    eprintln!("requests sent: {sent:?}, the blended success rate {value}");
    // Batched by default: both releases' built-in metrics from the shared queries.
    let text = w.admin("serve-0", "/metrics").1;
    let queries = |kind: &str| {
        let series = format!(r#"apisix_canary_prometheus_queries_total{{kind="{kind}"}} "#);
        let value = text.lines().find_map(|l| l.strip_prefix(series.as_str()));
        value.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let (batched, own) = (queries("builtin_batch"), queries("builtin"));
    eprintln!("Prometheus queries: {batched} batched, {own} per release");
    assert!(batched > 0 && own == 0, "{batched} batched, {own} per release");
}

#[test]
fn compare_baseline_passes_a_canary_as_bad_as_the_stable_and_fails_one_worse() {
    let w = World::start();
    // No fixed bound: the stable's success rate over the same window, minus 5 points.
    let metric = "        compare: baseline\n        maxDelta: 5\n        interval: 30s\n        minRequests: 20\n";
    // A dependency fails 10% of both versions' requests: not the canary's fault.
    let same = App::install(&w, "same", "same.example.com", &[("SIM_ERROR_RATE", "10")], metric);
    let worse = App::install(&w, "worse", "worse.example.com", &[], metric);
    let _traffic = [same.traffic(2), worse.traffic(2)];
    same.kubectl(&["set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    worse.kubectl(&["set", "env", "deployment/podinfo", "SIM_ERROR_RATE=20"]);

    assert_eq!(same.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Succeeded", "{}", same.state());
    let events = same.messages();
    assert_eq!(failed_checks(&events), 0, "{events:#?}");
    for step in [10, 20] {
        assert!(events.contains(&format!("Advance podinfo.same canary weight {step}")), "{events:#?}");
    }
    assert!(events.contains(&"Promotion completed! Scaling down podinfo.same".to_owned()), "{events:#?}");
    // It passed with errors a fixed 99% bound would have failed it for.
    let value = same.last_value("request-success-rate");
    assert!((80.0..99.0).contains(&value), "the canary's success rate {value}");

    // 80% against a stable at 100%: below 100 - 5.
    assert_eq!(worse.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{}", worse.state());
    let events = worse.messages();
    let prefix = "Halt podinfo.worse advancement success rate ";
    let halts: Vec<&String> = events.iter().filter(|m| m.starts_with(prefix)).collect();
    assert!(!halts.is_empty(), "{events:#?}");
    for halt in halts {
        // `... 85.00% < 95.00% (the stable's 100.00% - 5)`
        let numbers: Vec<f64> = halt[prefix.len()..]
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(halt.contains(" (the stable's ") && halt.ends_with("% - 5)"), "{halt}");
        let [canary, bound, stable, delta] = numbers[..] else { panic!("{halt}") };
        assert!(canary < 90.0 && stable > 99.0 && delta == 5.0, "{halt}");
        assert!((bound - (stable - 5.0)).abs() < 0.01, "{halt}");
    }
    assert!(events.contains(&"Rolling back podinfo.worse failed checks threshold reached 3".to_owned()), "{events:#?}");
    assert!(events.contains(&"Canary failed! Scaling down podinfo.worse".to_owned()), "{events:#?}");
    assert_eq!(starts(&events, "Promotion completed!"), 0, "{events:#?}");
}

#[test]
fn min_requests_holds_the_weight_until_traffic_comes_then_advances() {
    let w = World::start();
    let metric = "        thresholdRange: {min: 99}\n        interval: 10s\n        minRequests: 20\n";
    let app = App::install(&w, "test", HOST, &[], metric);
    app.kubectl(&["set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);

    // No traffic: the first step needs no metric, the next waits for requests.
    let waiting = "Halt podinfo.test advancement waiting for traffic: request-success-rate needs 20 requests of the \
                   canary in 10s, got 0";
    app.wait_events("waiting for traffic", Duration::from_secs(60), |e| {
        e.iter().any(|(kind, m, _)| kind == "Warning" && m == waiting)
    });
    // Held for several intervals: the weight stays, no check fails, each interval says so.
    let held = Instant::now();
    loop {
        assert_eq!((app.weight(), app.failed_checks()), (10, 0), "{}", app.state());
        let said = app.events().iter().find(|(_, m, _)| m == waiting).map_or(0, |(_, _, n)| *n);
        if said >= 4 && held.elapsed() >= Duration::from_secs(6) {
            break;
        }
        assert!(held.elapsed() < Duration::from_secs(40), "said {said} times\n{}", app.state());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(app.canary("{.status.phase}"), "Progressing");
    let condition = app.canary("{.status.conditions[?(@.type==\"Promoted\")].message}");
    assert_eq!(condition, "Waiting for canary traffic: too few requests to judge the metrics.");
    assert!(!app.canary("{.status.heldSince}").is_empty(), "{}", app.state());
    let events = app.messages();
    assert_eq!(starts(&events, "Advance podinfo.test canary weight 20"), 0, "{events:#?}");

    // Traffic: the canary serves its 20 requests, passes, and goes on to promotion.
    let _traffic = app.traffic(1);
    assert_eq!(app.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(60)), "Succeeded", "{}", app.state());
    let events = app.messages();
    assert_eq!(failed_checks(&events), 0, "{events:#?}");
    for step in [10, 20] {
        assert_eq!(starts(&events, &format!("Advance podinfo.test canary weight {step}")), 1, "{events:#?}");
    }
    assert!(events.contains(&"Promotion completed! Scaling down podinfo.test".to_owned()), "{events:#?}");
}
