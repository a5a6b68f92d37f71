//! An operator's requests: abort, promote after a passing check, promote now, and a
//! suspension from the annotations; each about one revision only.

use super::*;

fn weights(w: &World) -> Vec<u32> {
    let advanced = |e: &String| e.strip_prefix("Advance podinfo.test canary weight ").and_then(|n| n.parse().ok());
    w.events.iter().filter_map(advanced).collect()
}

#[test]
fn abort_rolls_back_at_once_route_first() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    w.o.requests.abort = Some(rev("6.0.1"));
    w.run(10);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    let said = "Rolling back podinfo.test aborted by the operator (apisix-canary.dev/abort)";
    assert!(w.events.contains(&said.to_owned()), "{:?}", w.events);
    assert_eq!(
        w.alerts.last(),
        Some(&(Severity::Warn, "Rolling back aborted by the operator (apisix-canary.dev/abort)".into()))
    );
    assert!(w.o.target.lock.is_failed() && w.o.target.paused);
    assert_eq!((w.o.canary, w.o.route_weight), (None, None));
    assert_eq!(w.o.requests.abort, None, "consumed: a retry of the revision is not aborted again");
}

#[test]
fn an_abort_left_behind_does_not_touch_the_next_release() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.o.requests.abort = Some(rev("6.0.0-old"));
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}

#[test]
fn promote_skips_the_remaining_steps_after_a_passing_check() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    w.o.requests.promote = Some(rev("6.0.1"));
    w.run(20);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert_eq!(weights(&w), [10, 20], "no step after the request: {:?}", w.events);
    let said = "Promoting podinfo.test on request (apisix-canary.dev/promote) at canary weight 20";
    assert!(w.events.contains(&said.to_owned()), "{:?}", w.events);
}

#[test]
fn promote_waits_for_a_passing_check_and_force_does_not() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 10);
    w.halt = halting;
    w.o.requests.promote = Some(rev("6.0.1"));
    w.tick(2, Duration::from_secs(10));
    assert_eq!(w.o.status.phase, Some(Phase::Progressing), "a failing check is no promotion");
    w.o.requests.promote_now = Some(rev("6.0.1"));
    w.run(20);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert!(w.events.iter().any(|e| e.contains("on request (apisix-canary.dev/promote-now), without analysis")));
}

#[test]
fn the_suspend_annotation_holds_the_weight_and_resuming_goes_on() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    w.o.plan = Ok(super::plan(&[("apisix-canary.dev/suspend", "true")]));
    w.tick(5, Duration::from_secs(10));
    assert_eq!((w.o.status.weight, w.o.route_weight), (20, Some(20)), "held while suspended");
    assert_eq!(w.o.status.message.as_deref(), Some(SUSPENDED));
    w.o.plan = Ok(super::plan(&[]));
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}
