//! The record of a release's checks in its status, and the count of failed checks kept
//! after the end: the numbers every view shows are the ones judged.

use super::*;

fn failed(m: &Measured) -> bool {
    m.check.halt.is_some()
}

#[test]
fn every_check_is_recorded_with_its_value_and_time_and_the_failures_survive_the_rollback() {
    let mut w = World::released(plan(&[]), "6.0.2");
    w.halt = halting;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert_eq!(w.o.status.failed_checks, 3, "the count that reached the threshold is kept");
    let halts: Vec<&Measured> = w.o.status.checks.iter().filter(|m| failed(m)).collect();
    assert_eq!(halts.len(), 3, "{:?}", w.o.status.checks);
    for m in &halts {
        assert_eq!(m.check.value, Some(99.9));
        assert_eq!(m.check.halt.as_deref(), halting(0).as_deref(), "the Event's words");
        assert!(w.events.contains(m.check.halt.as_ref().unwrap()));
    }
    let times: Vec<Timestamp> = w.o.status.checks.iter().map(|m| m.at).collect();
    assert!(times.windows(2).all(|t| t[0] < t[1]), "one record per interval, oldest first: {times:?}");
    assert_eq!(w.o.status.metrics_server.as_deref(), Some("http://prometheus:9090"));

    // The next release starts with neither.
    w.halt = |_| None;
    w.set_image("6.0.3");
    w.step();
    assert_eq!(w.o.status.phase, Some(Phase::Progressing));
    assert_eq!((w.o.status.failed_checks, w.o.status.checks.len()), (0, 0));
}

#[test]
fn a_promoted_release_keeps_its_checks_and_count() {
    let mut w = World::released(plan(&[]), "6.0.1");
    // The first check at weight 10 fails once, the rest pass.
    until(&mut w, 20, |w| w.o.status.weight == 10);
    w.halt = halting;
    until(&mut w, 5, |w| w.o.status.failed_checks == 1);
    w.halt = |_| None;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert_eq!(w.o.status.failed_checks, 1, "as the article's Succeeded canary shows \"Failed Checks: 1\"");
    let passed = w.o.status.checks.iter().filter(|m| !failed(m)).count();
    assert_eq!(passed, 5, "one passing check per step 10..50: {:?}", w.o.status.checks);
}

#[test]
fn the_record_is_bounded_and_keeps_the_newest() {
    let mut w = World::released(plan(&[("apisix-canary.dev/threshold", "1000")]), "6.0.2");
    w.halt = halting;
    w.o.plan.as_mut().unwrap().progress_deadline = Duration::from_secs(100_000);
    until(&mut w, 400, |w| w.o.status.failed_checks as usize > crate::api::canary::MAX_CHECKS + 5);
    let checks = &w.o.status.checks;
    assert_eq!(checks.len(), crate::api::canary::MAX_CHECKS);
    assert_eq!(checks.last().unwrap().at, w.o.status.since.unwrap(), "the newest is the last judged");
}
