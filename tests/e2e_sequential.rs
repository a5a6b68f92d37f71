//! `judge: sequential` on the sim, as a user meets it (`serve` as its own process, the
//! real kubectl, traffic through the gateway, the real Prometheus): SCENARIO.md's Act 2
//! is rolled back seconds after the canary's first 500, with the evidence, where
//! Flagger's rule (threshold 10, 2 s intervals) takes 20 s at least; a healthy release
//! is promoted; and no metric window reaches back into the previous release.

#[path = "support/e2e.rs"]
mod e2e;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;

#[test]
fn a_failing_canary_is_rolled_back_within_seconds_with_the_evidence_and_a_healthy_one_promoted() {
    let w = World::start();
    w.install(30);
    w.ok(&[
        "-n",
        "test",
        "annotate",
        "deployment/podinfo",
        "--overwrite",
        "apisix-canary.dev/judge=sequential",
        "apisix-canary.dev/threshold=10",
    ]);
    let traffic = w.traffic();

    // Healthy: the test never rejects; the interval checks promote as usual.
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());

    // Act 2: 60 % of the canary's answers are 500s.
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=60"]);
    w.wait_weight(10, Duration::from_secs(60));
    let first_traffic = Instant::now();
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(60)), "Failed", "{:#?}", w.events());
    let took = first_traffic.elapsed();
    let events = w.events();
    let rollback = events.iter().find(|e| e.starts_with("Rolling back podinfo.test")).unwrap();
    eprintln!("rolled back {took:?} after the canary's first traffic: {rollback}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {events:#?}");
    assert!(rollback.starts_with("Rolling back podinfo.test: canary 5xx share "), "{rollback}");
    assert!(rollback.contains("% > 1 % (sequential test, 99 % confidence, ") && rollback.ends_with(" requests)"));
    assert!(!events.iter().any(|e| e.contains("failed checks threshold reached")), "{events:#?}");
    // The verdict is in the status' record too, with the share it measured.
    let checks: serde_json::Value = serde_json::from_str(&w.jsonpath("canary/podinfo", "{.status.checks}")).unwrap();
    let last = checks.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], rollback.as_str(), "{checks}");
    assert!(last["value"].as_f64().is_some_and(|v| v > 20.0), "{last}");
    // With the evidence that decided it, at or past its boundary (ln 200 at 99 % over two
    // metrics); the interval checks before it, below.
    let (evidence, boundary) = (last["evidence"].as_f64().unwrap(), last["boundary"].as_f64().unwrap());
    assert!(evidence >= boundary && (boundary - 200f64.ln()).abs() < 1e-9, "{last}");
    let mut before = checks.as_array().unwrap().iter().filter(|c| c["time"].as_str() < last["time"].as_str());
    assert!(before.all(|c| c["evidence"].as_f64().is_some_and(|e| e < boundary)), "{checks}");
    // The dashboard's gauges hold the test that rolled back: the same evidence.
    let metrics = w.admin("serve-0", "/metrics").1;
    let gauge = |family: &str| {
        let series = format!(
            r#"apisix_canary_sequential_{family}{{name="podinfo",namespace="test",metric="request-success-rate"}} "#
        );
        let value = metrics.lines().find_map(|l| l.strip_prefix(series.as_str()));
        value.and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert!((gauge("evidence") - evidence).abs() < 1e-9 && (gauge("boundary") - boundary).abs() < 1e-9, "{last}");
    traffic.store(false, Ordering::Relaxed);
}

/// A MetricTemplate as Flagger users write them: the generated route's 5xx share, no
/// node filter, over a 1 m window (0 where no answer was a 5xx).
fn blended_template(prometheus: &str) -> String {
    format!(
        r#"apiVersion: apisix-canary.dev/v1beta1
kind: MetricTemplate
metadata:
  name: error-percentage
  namespace: test
spec:
  provider:
    type: prometheus
    address: {prometheus}
  query: |
    (sum(rate(apisix_http_status{{route=~"{{{{ namespace }}}}_{{{{ route }}}}-{{{{ target }}}}-canary_.+",code=~"5.."}}[{{{{ interval }}}}])) or on() vector(0))
    / sum(rate(apisix_http_status{{route=~"{{{{ namespace }}}}_{{{{ route }}}}-{{{{ target }}}}-canary_.+"}}[{{{{ interval }}}}])) * 100
---
apiVersion: apisix-canary.dev/v1beta1
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
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    metrics:
      - name: error percentage
        templateRef: {{name: error-percentage}}
        thresholdRange: {{max: 5}}
        interval: 1m
        # Judged once the canary served some requests inside the window.
        minRequests: 10
"#
    )
}

#[test]
fn a_failing_release_right_after_a_promotion_is_not_promoted_on_the_previous_releases_traffic() {
    let w = World::start();
    w.install_canary(&blended_template(&w.prometheus_url), &[]);
    let traffic = w.traffic();
    w.ok(&["-n", "test", "set", "image", "deployment/podinfo", "podinfod=stefanprodan/podinfo:6.0.1"]);
    assert_eq!(w.wait_phase(&["Succeeded", "Failed"], Duration::from_secs(90)), "Succeeded", "{:#?}", w.events());
    // At once: 60 % of the new canary's answers are 500s, 6 % of the route's at weight
    // 10, above the template's 5 %. A 1 m window would still hold the healthy release's
    // traffic on the same generated route and read less.
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=60"]);
    assert_eq!(w.wait_phase(&["Progressing"], Duration::from_secs(30)), "Progressing");
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(60)), "Failed", "{:#?}", w.events());
    let events = w.events();
    assert!(events.iter().any(|e| e.starts_with("Halt podinfo.test advancement error percentage ")), "{events:#?}");
    traffic.store(false, Ordering::Relaxed);
}
