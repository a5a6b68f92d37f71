//! `judge: sequential`: the test is looked at between the intervals too, and a
//! rejection rolls back at once, whatever the threshold; Flagger's rule never asks.

use super::*;
use crate::release::plan::Judge;

fn sequential() -> Plan {
    Plan { judge: Judge::Sequential { confidence: 99.0 }, threshold: 10, ..plan(&[]) }
}

const REJECTED: &str = "canary 5xx share 30.0 % > 1 % (sequential test, 99 % confidence, 41 requests)";

#[test]
fn a_rejection_rolls_back_at_once_with_the_evidence_and_is_recorded() {
    let mut w = World::released(sequential(), "6.0.2");
    w.reject = |weight| (weight >= 10).then(|| REJECTED.to_owned());
    until(&mut w, 20, |w| w.o.status.phase == Some(Phase::Failed));
    let said = format!("Rolling back {ID}: {REJECTED}");
    assert!(w.events.contains(&said), "{:?}", w.events);
    assert_eq!(w.o.status.failed_checks, 0, "no failed check was needed: the test decided");
    assert!(!w.events.iter().any(|e| e.starts_with("Advance podinfo.test canary weight 20")), "{:?}", w.events);
    let recorded = w.o.status.checks.last().unwrap();
    assert_eq!((recorded.check.halt.as_deref(), recorded.check.value), (Some(said.as_str()), Some(30.0)));
    assert_eq!(recorded.evidence, Some((1.0, 5.3)), "the rejection carries the test's evidence, for the report");
    let failed = w.o.status.message.as_deref().unwrap_or_default();
    assert!(failed.ends_with(REJECTED) && !failed.contains(" : "), "{failed}");
    assert_eq!(
        w.alerts.last().map(|(_, m)| m.as_str()),
        Some("Canary 5xx share 30.0 % > 1 % (sequential test, 99 % confidence, 41 requests)")
    );
}

#[test]
fn between_intervals_it_looks_every_few_seconds_and_a_healthy_canary_advances_as_usual() {
    let mut w = World::released(Plan { interval: Duration::from_secs(60), ..sequential() }, "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 10);
    let requeue = w.step().expect("waits");
    assert!(requeue <= Duration::from_secs(5), "looks again within a scrape or so: {requeue:?}");
    w.run(200);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert!(w.events.contains(&"Advance podinfo.test canary weight 50".to_owned()));
    // Each interval's check records the test's evidence beside its value.
    assert!(!w.o.status.checks.is_empty());
    assert!(w.o.status.checks.iter().all(|m| m.evidence == Some((1.0, 5.3))), "{:?}", w.o.status.checks);
}

#[test]
fn flaggers_rule_never_runs_the_test() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.reject = |_| panic!("the test ran under judge: interval");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert!(w.o.status.checks.iter().all(|m| m.evidence.is_none()));
}
