//! The checks of a release as the report reads them: one series per metric, the stable
//! failing alike, the sequential test's evidence and its rejection.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn record(s: i64, metric: &str, value: Option<f64>, result: CheckResult) -> CheckRecord {
    CheckRecord {
        time: Time(at(s)),
        metric: metric.into(),
        value,
        result,
        message: None,
        evidence: None,
        boundary: None,
    }
}

fn plan(metrics: &str) -> Plan {
    let spec = format!(
        r#"{{"targetRef": {{"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}},
            "routeRef": {{"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"}},
            "analysis": {{"interval": "2s", "threshold": 3, "maxWeight": 30, "stepWeight": 10,
                          "metrics": {metrics}}}}}"#
    );
    let spec = serde_json::from_str(&spec).unwrap();
    Plan::from_canary(&spec).unwrap().0
}

const THREE: &str = r#"[
    {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "10s"},
    {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "5s"},
    {"name": "404s percentage", "templateRef": {"name": "nf"}, "thresholdRange": {"max": 5}}]"#;

#[test]
fn every_metric_of_the_analysis_gets_its_checks_in_time_order() {
    let plan = plan(THREE);
    let records = [
        record(4, "request-success-rate", Some(41.76), CheckResult::Failed),
        record(2, "request-success-rate", Some(100.0), CheckResult::Passed),
        record(2, "404s percentage", Some(0.0), CheckResult::Passed),
        record(3, "endpoints", None, CheckResult::Failed),
        record(2, "request-success-rate", Some(f64::NAN), CheckResult::Waiting),
    ];
    let got = metrics(Some(&plan), &records);
    let names: Vec<(&str, Kind)> = got.iter().map(|m| (m.name.as_str(), m.kind)).collect();
    assert_eq!(
        names,
        [
            ("request-success-rate", Kind::SuccessRate),
            ("request-duration", Kind::Duration),
            ("404s percentage", Kind::Query),
            ("endpoints", Kind::Other)
        ]
    );
    let rate = &got[0];
    assert_eq!((rate.min, rate.max, rate.interval), (Some(99.0), None, Some(Duration::from_secs(10))));
    let values: Vec<(Timestamp, Option<f64>)> = rate.checks.iter().map(|c| (c.at, c.value)).collect();
    assert_eq!(values, [(at(2), Some(100.0)), (at(2), None), (at(4), Some(41.76))], "NaN is no value");
    assert!(got[1].checks.is_empty(), "never checked: no points");
    assert_eq!((got[2].max, got[2].kind.unit()), (Some(5.0), ""));
    assert_eq!(got[2].bounds(), "max 5");
    assert_eq!(got[3].interval, None);
    // Without an analysis that parses, every recorded metric still has its series.
    assert_eq!(metrics(None, &records).len(), 3);
    assert_eq!(rate.shown(41.7634), "41.76 %");
    assert_eq!(got[1].shown(612.4), "612 ms");
}

fn with_stable(mut m: MetricChecks, stable: &[Option<f64>]) -> MetricChecks {
    for (c, s) in m.checks.iter_mut().zip(stable) {
        c.stable = *s;
    }
    m
}

#[test]
fn the_stable_failing_alike_is_said_with_the_margin_baseline_needs() {
    let plan = plan(THREE);
    let records = [
        record(2, "request-success-rate", Some(100.0), CheckResult::Passed),
        record(4, "request-success-rate", Some(41.76), CheckResult::Failed),
        record(6, "request-success-rate", Some(44.0), CheckResult::Failed),
    ];
    let rate = metrics(Some(&plan), &records).remove(0);
    let alike = failed_alike(&[with_stable(rate.clone(), &[Some(100.0), Some(45.02), Some(43.5)])]);
    assert_eq!(alike.len(), 1);
    let a = &alike[0];
    assert_eq!((a.bound, a.failed.len(), a.whole_release), (99.0, 2, true));
    assert!((a.max_delta - 3.26).abs() < 1e-9, "{}", a.max_delta);
    let said = a.said();
    assert!(
        said.contains("the canary's success rate was 41.76 % and the stable answered 45.02 % in the same 10s window"),
        "{said}"
    );
    assert!(said.contains("`compare: baseline` (maxDelta 3.26) in place of min 99 would have held this release"));

    // A canary better than a failing stable: no margin needed.
    let better = failed_alike(&[with_stable(rate.clone(), &[None, Some(40.0), Some(41.0)])]);
    let said = better[0].said();
    assert!(said.contains("(any maxDelta: the canary did no worse than the stable) in place of min 99"), "{said}");
    // A stable that passed at one failed check: the canary's own failure, nothing said.
    assert_eq!(failed_alike(&[with_stable(rate.clone(), &[None, Some(99.5), Some(43.0)])]), []);
    // Without the stable's value at a failed check, nothing is claimed.
    assert_eq!(failed_alike(&[with_stable(rate.clone(), &[None, Some(45.0), None])]), []);
    // Already compared with the baseline, or blended: not said.
    let compared = MetricChecks { baseline: Some(1.0), ..rate.clone() };
    assert_eq!(failed_alike(&[with_stable(compared, &[None, Some(45.0), Some(43.0)])]), []);
    let blended = MetricChecks { scope: MetricScope::Route, ..rate.clone() };
    assert_eq!(failed_alike(&[with_stable(blended, &[None, Some(45.0), Some(43.0)])]), []);

    // Another metric failed too: these checks, not the release.
    let other = metrics(Some(&plan), &[record(5, "404s percentage", Some(12.0), CheckResult::Failed)]).remove(2);
    let both = failed_alike(&[with_stable(rate, &[None, Some(45.0), Some(43.0)]), other]);
    assert!(!both[0].whole_release && both[0].said().contains("would have passed these checks"), "{both:?}");
}

#[test]
fn a_slow_stable_is_said_for_the_duration() {
    let plan = plan(THREE);
    let records = [record(4, "request-duration", Some(812.0), CheckResult::Failed)];
    let p99 = metrics(Some(&plan), &records).remove(1);
    let alike = failed_alike(&[with_stable(p99, &[Some(790.0)])]);
    let said = alike[0].said();
    assert!(said.contains("P99 was 812 ms and the stable answered 790 ms in the same 5s window"), "{said}");
    assert!(said.contains("(maxDelta 22) in place of max 500"), "{said}");
}

#[test]
fn the_sequential_tests_evidence_is_kept_and_its_rejection_is_no_value_of_the_metric() {
    let plan = plan(THREE);
    let tested = |mut r: CheckRecord, evidence: f64, message: Option<&str>| {
        (r.evidence, r.boundary, r.message) = (Some(evidence), Some(5.3), message.map(str::to_owned));
        r
    };
    let rejection = "Rolling back podinfo.test: canary 5xx share 30.0 % > 1 % (sequential test, 99 % confidence, \
                     41 requests)";
    let halt = "Halt podinfo.test advancement success rate 70.00% < 99%";
    let records = [
        tested(record(2, "request-success-rate", Some(100.0), CheckResult::Passed), -0.5, None),
        tested(record(4, "request-success-rate", Some(70.0), CheckResult::Failed), 6.1, Some(halt)),
        tested(record(4, "request-success-rate", Some(30.0), CheckResult::Failed), 6.1, Some(rejection)),
        record(4, "404s percentage", Some(0.0), CheckResult::Passed),
        CheckRecord {
            boundary: None,
            ..tested(record(5, "request-duration", Some(3.0), CheckResult::Passed), 1.0, None)
        },
    ];
    let got = metrics(Some(&plan), &records);
    let rate = &got[0];
    let seen: Vec<(Option<f64>, Option<f64>, Option<f64>)> =
        rate.checks.iter().map(|c| (c.value, c.evidence.map(|e| e.log_e), c.rejected_share)).collect();
    assert_eq!(
        seen,
        [(Some(100.0), Some(-0.5), None), (Some(70.0), Some(6.1), None), (None, Some(6.1), Some(30.0))],
        "the interval check failing with the test keeps its success rate; the rejection's share is no success rate"
    );
    assert_eq!(rate.checks[2].evidence.map(|e| e.boundary), Some(5.3));
    assert!(rate.tested() && !got[2].tested());
    assert!(!got[1].tested(), "evidence without its boundary is not drawn");
}
