//! What the checks say of a canary that fails every request, end to end (`serve` against
//! the sim, its gateway and real Prometheus): a canary that answered only 500s has a
//! success rate of 0 % ("success rate 0.00% < 99%"), never Flagger's "no values found
//! ... not receiving traffic", which is kept for no request at all; a MetricTemplate
//! that finds no values says the query it rendered and sent.

#[path = "support/e2e.rs"]
mod e2e;

use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::*;

/// A template whose series the gateway never exports (nothing answers 418): no values,
/// however much traffic the canary serves.
const TEAPOTS: &str = r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+",code="418"}[{{ interval }}]))
      / sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ generated_route }}_.+"}[{{ interval }}])) * 100"#;

/// [`TEAPOTS`] as rendered for the release, on one line as the Event gives it.
/// The template rendered with its `{{ interval }}`: the metric's 30s, cut to the time
/// since the analysis started (no window reaches back before the release).
fn teapots_rendered(window: &str) -> String {
    format!(
        r#"sum(rate(apisix_http_status{{route=~"test_podinfo-podinfo-canary_.+",code="418"}}[{window}])) / sum(rate(apisix_http_status{{route=~"test_podinfo-podinfo-canary_.+"}}[{window}])) * 100"#
    )
}

#[test]
fn a_canary_answering_only_500s_is_0_percent_and_an_empty_template_says_its_query() {
    let w = World::start();
    let scenario = |f: &str| fixture(&format!("scenario/{f}")).to_string_lossy().into_owned();
    w.ok(&["apply", "-f", &scenario("namespace.yaml")]);
    // Both metrics judged only once the canary has served 5 requests (counted on all its
    // series, 5xx included): from then on it is receiving traffic, whatever it answers.
    let canary = format!(
        r#"apiVersion: apisix-canary.dev/v1beta1
kind: MetricTemplate
metadata:
  name: teapots
  namespace: test
spec:
  provider:
    type: prometheus
    address: {prometheus}
  query: |
    {TEAPOTS}
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
    threshold: 3
    maxWeight: 30
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange: {{min: 99}}
        interval: 30s
        minRequests: 5
      - name: teapots
        templateRef: {{name: teapots}}
        thresholdRange: {{max: 1}}
        interval: 30s
        minRequests: 5
"#,
        prometheus = w.prometheus_url
    );
    let files = [w.file("podinfo.yaml", &canary_mode_podinfo()), w.file("canary.yaml", &canary)];
    w.ok(&["apply", "-f", &files[0], "-f", &files[1], "-f", &scenario("service.yaml"), "-f", &scenario("route.yaml")]);
    w.ok(&["-n", "test", "rollout", "status", "deployment/podinfo", "--timeout=60s"]);
    assert_eq!(w.wait_phase(&["Initialized"], Duration::from_secs(30)), "Initialized");

    let traffic = w.traffic();
    // The new revision's pods answer every request with a 500.
    w.ok(&["-n", "test", "set", "env", "deployment/podinfo", "SIM_ERROR_RATE=100"]);
    assert_eq!(w.wait_phase(&["Failed", "Succeeded"], Duration::from_secs(90)), "Failed", "{:#?}", w.events());
    traffic.store(false, Ordering::Relaxed);

    let events = w.events();
    let zero = "Halt podinfo.test advancement success rate 0.00% < 99%";
    assert!(events.iter().any(|e| e == zero), "{events:#?}");
    let halts: Vec<&String> = events.iter().filter(|e| e.contains(" advancement success rate ")).collect();
    assert!(halts.iter().all(|e| *e == zero), "every success-rate check measured 0%: {events:#?}");
    assert!(!events.iter().any(|e| e.contains("no values found for apisix metric")), "{events:#?}");
    // Flagger's words for an empty template, and the query that found nothing.
    let said = "Halt advancement no values found for custom metric: teapots: no values found for query: ";
    let empty: Vec<&String> = events.iter().filter(|e| e.starts_with(said)).collect();
    assert!(!empty.is_empty(), "{events:#?}");
    for e in empty {
        let window = e.split_once("}[").and_then(|(_, w)| w.split_once(']')).map(|(w, _)| w).unwrap();
        let seconds: u64 = window.trim_end_matches('s').parse().unwrap();
        assert!((1..=30).contains(&seconds), "{e}");
        assert_eq!(*e, format!("{said}{}", teapots_rendered(window)));
    }
    assert!(events.contains(&"Rolling back podinfo.test failed checks threshold reached 3".to_owned()), "{events:#?}");
    assert!(events.contains(&"Canary failed! Scaling down podinfo.test".to_owned()), "{events:#?}");
    // The controller's log says the same.
    let logs = w.logs.lock().unwrap().join("\n");
    assert!(logs.contains(zero), "{logs}");
    w.assert_rbac_covers_serve(None);
}
