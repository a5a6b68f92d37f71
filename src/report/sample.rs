//! A failed release as the tests of the page and the chart see it: three metrics (two
//! built-in, a template), a check that waited, failed checks with the stable failing
//! alike, the Events that tell it. And [`sequential`]: a release the sequential test
//! rolled back on the sim, as its Canary and Events were read.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::Report;
use super::checks::{Judged, Kind, MetricChecks};
use super::nodes::Nodes;
use super::timeline::{self, Occurrence, Window};
use crate::api::canary::CheckResult;
use crate::release::plan::MetricScope;

/// How many checks [`report`] holds.
pub const CHECKS: usize = 8;

pub fn at(s: i64) -> Timestamp {
    "2026-11-30T10:00:00Z".parse::<Timestamp>().unwrap() + k8s_openapi::jiff::SignedDuration::from_secs(s)
}

fn check(s: i64, value: Option<f64>, result: CheckResult, message: Option<&str>, stable: Option<f64>) -> Judged {
    Judged {
        at: at(s),
        value,
        result,
        message: message.map(str::to_owned),
        stable,
        evidence: None,
        rejected_share: None,
    }
}

fn metric(name: &str, kind: Kind, bounds: (Option<f64>, Option<f64>), secs: u64, checks: Vec<Judged>) -> MetricChecks {
    MetricChecks {
        name: name.into(),
        kind,
        min: bounds.0,
        max: bounds.1,
        interval: Some(Duration::from_secs(secs)),
        baseline: None,
        scope: MetricScope::Canary,
        checks,
    }
}

pub fn report() -> Report {
    use CheckResult::{Failed, Passed, Waiting};
    let halt = "Halt podinfo.test advancement success rate 41.76% < 99%";
    let not_found = "Halt podinfo.test advancement 404s percentage 12.00 > 5 <b>bold</b>";
    let metrics = vec![
        metric(
            "request-success-rate",
            Kind::SuccessRate,
            (Some(99.0), None),
            10,
            vec![
                check(4, Some(100.0), Passed, None, Some(99.8)),
                check(6, None, Waiting, Some("waiting for traffic"), None),
                check(10, Some(41.76), Failed, Some(halt), Some(45.02)),
                check(
                    12,
                    Some(43.0),
                    Failed,
                    Some("Halt podinfo.test advancement success rate 43.00% < 99%"),
                    Some(44.1),
                ),
            ],
        ),
        metric(
            "request-duration",
            Kind::Duration,
            (None, Some(500.0)),
            5,
            vec![check(4, Some(12.0), Passed, None, Some(10.0)), check(10, Some(15.0), Passed, None, Some(11.0))],
        ),
        metric(
            "404s percentage",
            Kind::Query,
            (None, Some(5.0)),
            10,
            vec![check(4, Some(0.0), Passed, None, None), check(30, Some(12.0), Failed, Some(not_found), None)],
        ),
    ];
    let said = |s: i64, type_: &str, message: &str, count: i32| Occurrence {
        at: at(s),
        type_: type_.into(),
        message: message.into(),
        count,
        kind: timeline::Kind::of(message),
    };
    let events = vec![
        said(0, "Normal", "New revision detected! Scaling up podinfo.test", 1),
        said(4, "Normal", "Advance podinfo.test canary weight 10", 1),
        said(10, "Warning", halt, 1),
        said(30, "Warning", not_found, 2),
        said(35, "Warning", "Rolling back podinfo.test failed checks threshold reached 3", 1),
        said(40, "Warning", "Canary failed! Scaling down podinfo.test", 1),
    ];
    let window = Window { start: at(0), end: at(40), running: false };
    Report {
        namespace: "test".into(),
        name: "podinfo".into(),
        phase: "Failed".into(),
        weights: timeline::weight_steps(&events, &window),
        window,
        events,
        metrics,
        nodes: Nodes {
            canary: vec!["10.0.0.9".into()],
            stable: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            told_apart: true,
        },
        prometheus: "http://127.0.0.1:9090".into(),
        truncated: false,
        confidence: None,
        mode: "weighted".to_owned(),
    }
}

/// A release judged by `judge: sequential` on the sim (tests/e2e_sequential.rs with 15 %
/// of the canary's answers 500s), its Canary and Events as kubectl read them: interval
/// checks of both built-in metrics with their evidence, one failed, then the test's
/// rejection between intervals (ln E 8.78 >= ln 200 = 5.30).
pub fn sequential() -> Report {
    // Read at run time: this module is the tests', and the product embeds no test file.
    let fixture = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let canary = serde_json::from_str(&fixture("sequential-canary.json")).unwrap();
    // As `kubectl get events -o json` lists them: a List of Events.
    let mut list: serde_json::Value = serde_json::from_str(&fixture("sequential-events.json")).unwrap();
    let events = serde_json::from_value(list["items"].take()).unwrap();
    let now = "2026-12-07T16:46:00Z".parse().unwrap();
    super::Release { canary, events }.checked(now).unwrap()
}
