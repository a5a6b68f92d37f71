//! The webhooks in the lifecycle: gates hold without failing, the analysis goes on
//! while they hold, the rollback hook ends a release in every phase that holds one,
//! pre-rollout runs once per analysis, post-rollout and alerts mark the ends.

use super::*;
use crate::release::plan::Webhook;

fn hooked(kinds: &[HookKind]) -> Plan {
    let mut plan = plan(&[]);
    plan.webhooks = kinds
        .iter()
        .map(|kind| Webhook {
            name: kind.as_str().to_owned(),
            kind: *kind,
            url: "http://flagger-loadtester.test/".parse().unwrap(),
            timeout: Duration::from_secs(10),
            metadata: BTreeMap::new(),
            retries: 0,
            mute_alert: false,
            disable_tls: false,
        })
        .collect();
    plan
}

fn closed(w: &mut World, kind: HookKind) {
    w.answers.insert(kind, Err("Forbidden".to_owned()));
}

fn open(w: &mut World, kind: HookKind) {
    w.answers.insert(kind, if kind == HookKind::Rollback { Err("no".to_owned()) } else { Ok(()) });
}

fn count(w: &World, text: &str) -> usize {
    w.events.iter().filter(|e| e.contains(text)).count()
}

#[test]
fn confirm_rollout_waits_with_the_stable_serving_then_starts_when_opened() {
    let mut w = World::released(hooked(&[HookKind::ConfirmRollout]), "6.0.1");
    closed(&mut w, HookKind::ConfirmRollout);
    w.tick(5, Duration::from_secs(10));
    assert_eq!(w.o.status.phase, Some(Phase::Waiting));
    assert_eq!(w.o.status.message.as_deref(), Some(WAITING));
    assert_eq!((w.o.canary, w.o.route_weight), (None, None), "nothing of the release runs");
    assert!(w.o.target.paused && w.o.target.lock.held(), "the Deployment stays paused on stable");
    assert_eq!(count(&w, "Halt podinfo.test advancement waiting for approval confirm-rollout"), 1, "{:?}", w.events);
    assert_eq!(
        w.alerts.iter().filter(|(s, m)| *s == Severity::Warn && m == "Canary is waiting for approval.").count(),
        1
    );
    assert_eq!(w.calls.first(), Some(&(HookKind::ConfirmRollout, Phase::Initialized)));
    assert!(w.calls.contains(&(HookKind::ConfirmRollout, Phase::Waiting)), "asked again while waiting");
    assert_eq!(w.o.status.failed_checks, 0);

    open(&mut w, HookKind::ConfirmRollout);
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert_eq!(count(&w, "Confirm-rollout check confirm-rollout passed"), 1);
}

#[test]
fn a_rollback_hook_ends_a_release_held_at_confirm_rollout() {
    let mut w = World::released(hooked(&[HookKind::ConfirmRollout, HookKind::Rollback]), "6.0.1");
    closed(&mut w, HookKind::ConfirmRollout);
    w.tick(3, Duration::from_secs(10));
    assert_eq!(w.o.status.phase, Some(Phase::Waiting));
    w.answers.insert(HookKind::Rollback, Ok(()));
    w.run(10);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert_eq!(w.o.status.failed, Some(rev("6.0.1")), "the held revision is the failed one");
    assert!(w.o.target.lock.is_failed() && w.o.target.paused, "paused on stable, the revision marked failed");
    assert!(w.events.contains(&"Rolling back podinfo.test manual webhook invoked".to_owned()), "{:?}", w.events);
    assert!(w.calls.contains(&(HookKind::Rollback, Phase::Waiting)));
    assert_eq!(w.calls.last(), Some(&(HookKind::PostRollout, Phase::Failed)));
}

#[test]
fn confirm_traffic_increase_holds_the_weight_without_failing_then_advances() {
    let mut w = World::released(hooked(&[HookKind::ConfirmTrafficIncrease]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    closed(&mut w, HookKind::ConfirmTrafficIncrease);
    w.tick(6, Duration::from_secs(10));
    assert_eq!((w.o.status.weight, w.o.route_weight), (20, Some(20)), "the weight holds");
    assert_eq!(w.o.status.failed_checks, 0, "a closed gate is not a failed check");
    assert_eq!(w.o.status.phase, Some(Phase::Progressing));
    assert_eq!(w.o.status.message.as_deref(), Some(WAITING_TRAFFIC));
    let said = "Halt podinfo.test advancement waiting for traffic increase approval confirm-traffic-increase";
    assert_eq!(count(&w, said), 1, "said once: {:?}", w.events);
    open(&mut w, HookKind::ConfirmTrafficIncrease);
    until(&mut w, 5, |w| w.o.status.weight == 30);
    assert_eq!(w.o.status.message.as_deref(), Some(PROGRESSING));
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}

#[test]
fn failed_checks_still_count_while_a_gate_holds() {
    // Flagger #1801: a canary held at a gate must still be rolled back.
    let mut w = World::released(hooked(&[HookKind::ConfirmTrafficIncrease]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    closed(&mut w, HookKind::ConfirmTrafficIncrease);
    w.tick(3, Duration::from_secs(10));
    w.halt = halting;
    w.run(30);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert!(w.events.contains(&"Rolling back podinfo.test failed checks threshold reached 3".to_owned()));
    assert_eq!(w.alerts.last(), Some(&(Severity::Error, "Failed checks threshold reached 3".to_owned())));
}

#[test]
fn confirm_promotion_waits_at_the_top_weight_and_promotes_when_opened() {
    let mut w = World::released(hooked(&[HookKind::ConfirmPromotion]), "6.0.1");
    closed(&mut w, HookKind::ConfirmPromotion);
    until(&mut w, 30, |w| w.o.status.phase == Some(Phase::WaitingPromotion));
    w.tick(4, Duration::from_secs(10));
    assert_eq!(w.o.status.phase, Some(Phase::WaitingPromotion));
    // Unlike Flagger (#1851), the status shows the weight the route has.
    assert_eq!((w.o.status.weight, w.o.route_weight), (50, Some(50)));
    assert!(w.o.target.lock.held(), "not promoted");
    assert_eq!(count(&w, "Halt podinfo.test advancement waiting for promotion approval confirm-promotion"), 1);
    assert_eq!(w.o.status.failed_checks, 0);
    open(&mut w, HookKind::ConfirmPromotion);
    w.run(30);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert_eq!(count(&w, "Confirm-promotion check confirm-promotion passed"), 1);
}

#[test]
fn a_rollback_hook_mid_analysis_and_at_the_promotion_gate_rolls_back_route_first() {
    for held in [false, true] {
        let mut kinds = vec![HookKind::Rollback];
        if held {
            kinds.push(HookKind::ConfirmPromotion);
        }
        let mut w = World::released(hooked(&kinds), "6.0.1");
        if held {
            closed(&mut w, HookKind::ConfirmPromotion);
            until(&mut w, 30, |w| w.o.status.phase == Some(Phase::WaitingPromotion));
        } else {
            until(&mut w, 20, |w| w.o.status.weight == 30);
        }
        let phase = w.o.status.phase.unwrap();
        w.answers.insert(HookKind::Rollback, Ok(()));
        w.run(10);
        assert_eq!(w.o.status.phase, Some(Phase::Failed), "held {held}");
        assert!(w.calls.contains(&(HookKind::Rollback, phase)), "called with the phase {phase:?}");
        let order: Vec<&str> =
            w.events.iter().skip_while(|e| !e.starts_with("Rollback check")).map(String::as_str).collect();
        assert_eq!(
            order,
            [
                "Rollback check rollback passed",
                "Rolling back podinfo.test manual webhook invoked",
                "Canary failed! Scaling down podinfo.test"
            ]
        );
        assert_eq!(w.alerts.last(), Some(&(Severity::Warn, "Rolling back manual webhook invoked".to_owned())));
        assert_eq!((w.o.canary, w.o.route_weight), (None, None));
    }
}

#[test]
fn pre_rollout_runs_once_per_analysis_and_its_failure_is_a_failed_check() {
    let mut w = World::released(hooked(&[HookKind::PreRollout, HookKind::Rollout]), "6.0.1");
    closed(&mut w, HookKind::PreRollout);
    w.tick(3, Duration::from_secs(10));
    assert_eq!(w.o.status.weight, 0);
    assert_eq!(w.o.status.failed_checks, 2, "{:?}", w.o.status);
    assert!(
        w.events.contains(&"Halt podinfo.test advancement pre-rollout check pre-rollout failed Forbidden".to_owned())
    );
    assert_eq!(count(&w, "Starting canary analysis"), 1, "announced once: {:?}", w.events);
    open(&mut w, HookKind::PreRollout);
    let before = w.calls.iter().filter(|(k, _)| *k == HookKind::PreRollout).count();
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    let after = w.calls.iter().filter(|(k, _)| *k == HookKind::PreRollout).count();
    assert_eq!(after - before, 1, "once it passed, never again");
    assert!(w.events.contains(&"Pre-rollout check pre-rollout passed".to_owned()));
    // The rollout hook runs with every interval's analysis, with the Progressing phase.
    let rollouts = w.calls.iter().filter(|c| **c == (HookKind::Rollout, Phase::Progressing)).count();
    assert_eq!(rollouts, 5, "one per analysed step (10..50)");
}

#[test]
fn a_failing_rollout_hook_is_an_external_check_that_counts() {
    let mut w = World::released(hooked(&[HookKind::Rollout]), "6.0.1");
    w.answers.insert(HookKind::Rollout, Err("load test refused".to_owned()));
    w.run(60);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    let said = "Halt podinfo.test advancement external check rollout failed load test refused";
    assert_eq!(count(&w, said), 3, "threshold 3: {:?}", w.events);
}

#[test]
fn post_rollout_and_alerts_mark_the_ends() {
    let mut w = World::released(hooked(&[HookKind::PostRollout]), "6.0.1");
    w.run(100);
    assert_eq!(w.calls.last(), Some(&(HookKind::PostRollout, Phase::Succeeded)));
    let alerts: Vec<(Severity, &str)> = w.alerts.iter().map(|(s, m)| (*s, m.as_str())).collect();
    assert_eq!(
        alerts,
        [
            (Severity::Info, "New Deployment detected, initialization completed."),
            (Severity::Info, PROGRESSING),
            (Severity::Info, "Canary analysis completed successfully, promotion finished."),
        ]
    );
    let Some(Action::Alert { fields, .. }) =
        w.log.iter().find(|a| matches!(a, Action::Alert { message, .. } if message == PROGRESSING))
    else {
        panic!()
    };
    assert_eq!(fields[0], ("Target".to_owned(), "Deployment/podinfo.test".to_owned()));
    assert_eq!(fields[3], ("Traffic routing".to_owned(), "Weight step: 10 max: 50".to_owned()));
}

const NO_TRAFFIC: &str = "Halt podinfo.test advancement waiting for traffic: request-success-rate needs 20 requests of \
                          the canary in 1m, got 3";

#[test]
fn too_little_traffic_holds_the_weight_without_failing_then_advances() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 20);
    w.wait = |weight| (weight == 20).then(|| NO_TRAFFIC.to_owned());
    w.tick(4, Duration::from_secs(10));
    assert_eq!((w.o.status.weight, w.o.status.failed_checks), (20, 0), "held, nothing failed");
    assert_eq!(w.o.status.message.as_deref(), Some(WAITING_FOR_TRAFFIC));
    let held = w.o.status.held_since.expect("the hold is timed");
    assert!(count(&w, "waiting for traffic: request-success-rate needs 20") >= 3, "{:?}", w.events);
    w.wait = |_| None;
    until(&mut w, 5, |w| w.o.status.weight == 30);
    assert_eq!(w.o.status.held_since, None, "the next hold starts its own clock");
    assert!(held <= w.now);
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
}

#[test]
fn a_canary_nobody_sends_traffic_to_rolls_back_at_the_progress_deadline() {
    let mut w = World::released(plan(&[]), "6.0.1");
    until(&mut w, 20, |w| w.o.status.weight == 10);
    w.wait = |_| Some(NO_TRAFFIC.to_owned());
    w.run(30);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    let said = "Rolling back podinfo.test progress deadline exceeded waiting for traffic: request-success-rate needs 20 \
                requests of the canary in 1m, got 3";
    assert!(w.events.contains(&said.to_owned()), "{:?}", w.events);
    // Waiting is no failed check at any point (the rollback resets the count anyway).
    let counted = w.log.iter().any(|a| matches!(a, Action::SetStatus(s) if s.failed_checks > 0));
    assert!(!counted, "{:?}", w.log);
    let (severity, message) = w.alerts.last().unwrap();
    assert_eq!(*severity, Severity::Error);
    assert!(message.starts_with("Progress deadline exceeded waiting for traffic"), "{message}");
}

#[test]
fn step_weight_promotion_moves_the_canarys_share_to_the_promoted_pods_step_by_step() {
    let mut plan = plan(&[]);
    plan.step_weight_promotion = Some(20);
    let mut w = World::released(plan, "6.0.1");
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    let primary: Vec<&str> = w.events.iter().filter(|e| e.contains("primary weight")).map(String::as_str).collect();
    assert_eq!(
        primary,
        ["Advance podinfo.test primary weight 70", "Advance podinfo.test primary weight 90"],
        "from the canary's 50: 30, 10, then all"
    );
    let weights: Vec<u32> = w
        .log
        .iter()
        .filter_map(|a| if let Action::SetWeight(n) = a { Some(*n) } else { None })
        .skip_while(|n| *n != 50)
        .collect();
    assert_eq!(weights, [50, 30, 10], "then the route goes to stable");
}
