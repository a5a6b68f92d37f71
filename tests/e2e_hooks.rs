//! The webhooks end to end, through the sim's load tester at
//! `http://flagger-loadtester.test/` (which `serve --resolve` reaches from outside the
//! cluster): the scenario's load-test hook drives the canary's traffic, each gate is
//! closed then opened through the load tester's gate API, a rollback is asked for
//! mid-analysis, and alerts reach a local Slack-compatible endpoint.

#[path = "support/e2e.rs"]
mod e2e;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;

/// A Canary with 2 s steps of 10 up to `max`, the success-rate check, the scenario's
/// load test as its `rollout` hook, and `extra` (YAML lines under `analysis:`).
fn canary(max: u32, hooks: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: apisix-canary.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  routeRef: {{apiVersion: apisix.apache.org/v2, kind: ApisixRoute, name: podinfo}}
  progressDeadlineSeconds: 60
  analysis:
    interval: 2s
    threshold: 5
    maxWeight: {max}
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {{min: 99}}
        interval: 10s
        # The first checks may come before Prometheus has the canary's series.
        onNoData: pass
    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata:
          cmd: "hey -z 3m -q 10 -c 2 -h2 -host app.example.com http://apisix-gateway.apisix/api/info"
{hooks}{extra}"#
    )
}

fn hook(name: &str, kind: &str, path: &str) -> String {
    format!("      - name: {name}\n        type: {kind}\n        url: http://flagger-loadtester.test{path}\n")
}

impl World {
    fn gate(&self, path: &str) {
        assert_eq!(self.loadtester_post(path, "podinfo"), 202, "{path}");
    }

    fn count(&self, message: &str) -> usize {
        self.events().iter().filter(|e| e.as_str() == message).count()
    }

    fn failed_checks(&self) -> String {
        self.jsonpath("canary/podinfo", "{.status.failedChecks}")
    }

    fn weight(&self) -> String {
        self.jsonpath("canary/podinfo", "{.status.canaryWeight}")
    }

    /// Polls until an Event says `message`.
    fn wait_event(&self, message: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.events().iter().any(|e| e == message) {
            assert!(Instant::now() < deadline, "no event {message:?} after {within:?}: {:#?}", self.events());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn confirm_rollout_and_confirm_traffic_increase_hold_then_release_a_load_tested_canary() {
    let w = World::start();
    let gates = hook("approve-rollout", "confirm-rollout", "/gate/check")
        + &hook("approve-traffic", "confirm-traffic-increase", "/gate/check");
    w.install_canary(&canary(30, &gates, ""), &[]);
    w.gate("/gate/close");
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);

    // confirm-rollout: Waiting, nothing of the release runs, the stable serves.
    assert_eq!(w.wait_phase(&["Waiting"], Duration::from_secs(30)), "Waiting");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Waiting");
    assert!(!w.exists("deployment/podinfo-canary"), "no canary while waiting for approval");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true");
    assert_eq!(w.count("Halt podinfo.test advancement waiting for approval approve-rollout"), 1, "{:#?}", w.events());

    // Opened: the release runs; closed again at the first step: the weight holds.
    w.gate("/gate/open");
    w.wait_weight(10, Duration::from_secs(60));
    w.gate("/gate/close");
    let held = "Halt podinfo.test advancement waiting for traffic increase approval approve-traffic";
    w.wait_event(held, Duration::from_secs(20));
    let (weight, failed) = (w.weight(), w.failed_checks());
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!((w.weight(), w.failed_checks()), (weight.clone(), failed), "held for 3 intervals, nothing failed");
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "Progressing");
    let condition = w.jsonpath("canary/podinfo", "{.status.conditions[0].message}");
    assert_eq!(condition, "Waiting for approval to increase the canary weight.");
    assert_eq!(w.count(held), 1, "said once while it holds");

    // Opened again: the weight advances and the release is promoted.
    w.gate("/gate/open");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    let events = w.events();
    assert!(events.contains(&"Confirm-rollout check approve-rollout passed".to_owned()), "{events:#?}");
    let next: u32 = weight.parse::<u32>().unwrap() + 10;
    assert!(events.contains(&format!("Advance podinfo.test canary weight {next}")), "{events:#?}");
    // The load-test hook drove the canary's traffic: the check saw real values.
    let (_, metrics) = w.admin("serve-0", "/metrics");
    let measured = metrics
        .lines()
        .find(|l| l.starts_with("apisix_canary_metric_analysis") && l.contains("request-success-rate"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(measured.is_some_and(|v| v >= 99.0), "no success rate measured: {metrics}");
}

/// A local Slack-compatible incoming webhook: every body posted to it.
fn slack() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let bodies = got.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        bodies.lock().unwrap().push(format!("{}\n{body}", head.lines().next().unwrap_or_default()));
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, got)
}

#[test]
fn confirm_promotion_holds_at_the_top_then_a_rollback_hook_ends_the_next_release_and_alerts_reach_slack() {
    let w = World::start();
    let (port, posted) = slack();
    let address = format!("http://127.0.0.1:{port}/services/T/B/X");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&address)
    };
    let alerting = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: slack-url, namespace: test}}
data: {{address: {b64}}}
---
apiVersion: apisix-canary.dev/v1beta1
kind: AlertProvider
metadata: {{name: on-call, namespace: test}}
spec:
  type: slack
  channel: releases
  secretRef: {{name: slack-url}}
"#
    );
    let hooks = hook("approve-promotion", "confirm-promotion", "/gate/check")
        + &hook("emergency-stop", "rollback", "/rollback/check")
        + &hook("notify", "post-rollout", "/gate/approve")
        + &format!("      - name: audit\n        type: event\n        url: http://127.0.0.1:{port}/events\n");
    let alerts = "    alerts:\n      - name: on-call\n        severity: warn\n        providerRef: {name: on-call}\n";
    let alerting = w.file("alerting.yaml", &alerting);
    w.install_canary(&canary(20, &hooks, alerts), &[&alerting]);

    // confirm-promotion closed: WaitingPromotion at the top weight, the lock held.
    w.gate("/gate/close");
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["WaitingPromotion"], Duration::from_secs(60)), "WaitingPromotion", "{:#?}", w.events());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.phase}"), "WaitingPromotion");
    assert_eq!(w.weight(), "20", "the status shows the route's weight");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "not promoted while held");
    assert_eq!(w.count("Halt podinfo.test advancement waiting for promotion approval approve-promotion"), 1);
    w.gate("/gate/open");
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(60)), "Succeeded", "{:#?}", w.events());
    w.wait_event("Post-rollout check notify passed", Duration::from_secs(10));
    assert!(w.events().contains(&"Confirm-promotion check approve-promotion passed".to_owned()));

    // The next release: a rollback asked for mid-analysis ends it, route first.
    w.gate("/gate/close");
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.2"]);
    w.wait_weight(10, Duration::from_secs(60));
    w.gate("/rollback/open");
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(30)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.contains(&"Rollback check emergency-stop passed".to_owned()), "{events:#?}");
    assert!(events.contains(&"Rolling back podinfo.test manual webhook invoked".to_owned()), "{events:#?}");
    assert!(!w.exists("apisixroute/podinfo-podinfo-canary"), "the generated route is gone");
    assert_eq!(w.jsonpath("deployment/podinfo", "{.spec.paused}"), "true", "paused on the failed template");
    assert_eq!(w.jsonpath("canary/podinfo", "{.status.failedRevision}").len(), 10);

    // Alerts at severity warn: the warnings reached Slack, the info notices did not.
    let deadline = Instant::now() + Duration::from_secs(10);
    let texts = loop {
        let texts: Vec<String> = posted.lock().unwrap().clone();
        if texts.iter().any(|t| t.contains("Rolling back manual webhook invoked")) || Instant::now() > deadline {
            break texts;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Every Event went to the event hook too, with the phase it was said in.
    let events: Vec<serde_json::Value> = texts
        .iter()
        .filter(|t| t.starts_with("POST /events HTTP/1.1"))
        .map(|t| serde_json::from_str(t.split_once('\n').unwrap().1).unwrap())
        .collect();
    let scaling =
        events.iter().find(|e| e["metadata"]["eventMessage"] == "New revision detected! Scaling up podinfo.test");
    let scaling = scaling.unwrap_or_else(|| panic!("no event hook call for the new revision: {events:#?}"));
    assert_eq!((&scaling["name"], &scaling["namespace"]), (&"podinfo".into(), &"test".into()));
    assert_eq!((&scaling["phase"], &scaling["metadata"]["eventType"]), (&"Progressing".into(), &"Normal".into()));
    assert!(events.iter().any(|e| e["metadata"]["eventMessage"] == "Rolling back podinfo.test manual webhook invoked"
        && e["metadata"]["eventType"] == "Warning"));
    let texts: Vec<String> = texts.into_iter().filter(|t| !t.starts_with("POST /events ")).collect();
    assert!(texts.iter().all(|t| t.starts_with("POST /services/T/B/X HTTP/1.1")), "{texts:#?}");
    let said = |m: &str| texts.iter().filter(|t| t.contains(m)).count();
    assert_eq!(said("Canary promotion is waiting for approval."), 1, "{texts:#?}");
    assert_eq!(said("Rolling back manual webhook invoked"), 1, "{texts:#?}");
    assert_eq!(said("New revision detected"), 0, "info is below the alert's severity: {texts:#?}");
    let slack: serde_json::Value = serde_json::from_str(texts[0].split_once('\n').unwrap().1).unwrap();
    assert_eq!(slack["channel"], "releases");
    assert_eq!(slack["attachments"][0]["author_name"], "podinfo.test");
}
