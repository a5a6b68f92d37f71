//! Tick-by-tick tables of `decide`, no I/O: a small model of the cluster applies the
//! actions, a fake clock moves, and the events and end states are asserted.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::release::lock::Transition;
use crate::release::plan::{HookKind, OptIn};

mod ab;
mod flagger;
mod gates;
mod initial;
mod operator;
mod records;
mod sequential;

const ID: &str = "podinfo.test";

fn rev(tag: &str) -> Revision {
    Revision::of_template(&json!({"spec": {"containers": [{"image": format!("stefanprodan/podinfo:{tag}")}]}}))
}

fn plan(extra: &[(&str, &str)]) -> Plan {
    let mut ann: BTreeMap<String, String> = [
        ("apisix-canary.dev/route", "podinfo"),
        ("apisix-canary.dev/interval", "10s"),
        ("apisix-canary.dev/threshold", "3"),
        ("apisix-canary.dev/progress-deadline-seconds", "60"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    ann.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    match Plan::from_annotations("podinfo", &ann) {
        Ok((OptIn::Inline(plan), _)) => plan,
        other => panic!("{other:?}"),
    }
}

/// The cluster as the lifecycle sees it, changed only by actions and by time.
struct World {
    o: Observed,
    now: Timestamp,
    events: Vec<String>,
    /// Every change of phase or weight the status recorded, in order.
    steps: Vec<(Option<Phase>, u32)>,
    /// Every action carried out, in order.
    log: Vec<Action>,
    /// The halt message of each interval's checks, by canary weight: `None` passes.
    halt: fn(u32) -> Option<String>,
    /// The wait message of each interval's checks (too little traffic), by weight.
    wait: fn(u32) -> Option<String>,
    /// The sequential test's rejection (`judge: sequential`), by weight.
    reject: fn(u32) -> Option<String>,
    /// What the webhooks of a kind answer; by default success, and "no" from the
    /// rollback hooks (which roll back on success).
    answers: BTreeMap<HookKind, Result<(), String>>,
    /// Every webhook call: its kind and the phase sent.
    calls: Vec<(HookKind, Phase)>,
    /// Every alert sent: severity and message.
    alerts: Vec<(Severity, String)>,
}

impl World {
    fn new(plan: Plan) -> Self {
        let o = Observed {
            id: Release { canary: "podinfo".into(), namespace: "test".into(), target: "podinfo".into() },
            protection: Protection::Protected,
            from_annotations: true,
            apex: Apex::Kept,
            plan: Ok(plan),
            status: Status::default(),
            target: Target {
                lock: Lock::default(),
                promoted: None,
                revision: rev("6.0.0"),
                paused: false,
                replicas: 2,
                rolled_out: true,
                active_replica_sets: 1,
            },
            canary: None,
            route_weight: None,
            refusal: None,
            checks: None,
            metrics_server: Some("http://prometheus:9090".into()),
            tested: None,
            hooks: Default::default(),
            requests: Default::default(),
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        Self {
            o,
            now,
            events: Vec::new(),
            steps: Vec::new(),
            log: Vec::new(),
            halt: |_| None,
            wait: |_| None,
            reject: |_| None,
            answers: BTreeMap::from([(HookKind::Rollback, Err("no".to_owned()))]),
            calls: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// Started and initialized, then `kubectl set image` as the webhook handles it.
    fn released(plan: Plan, tag: &str) -> Self {
        let mut w = Self::new(plan);
        w.run(5);
        assert_eq!(w.o.status.phase, Some(Phase::Initialized));
        w.set_image(tag);
        w
    }

    /// What the webhook does for `kubectl set image`: pause and lock.
    fn set_image(&mut self, tag: &str) {
        let new = rev(tag);
        let t = &mut self.o.target;
        let stable = t.lock.stable.clone().unwrap_or_else(|| t.revision.clone());
        t.lock = Lock { stable: Some(stable), canary: Some(new.clone()), failed: t.lock.failed.clone(), retry: None };
        t.revision = new;
        t.paused = true;
        t.rolled_out = false;
    }

    fn apply(&mut self, action: &Action) {
        self.log.push(action.clone());
        match action {
            Action::Claim => self.o.protection = Protection::Protected,
            Action::Unclaim => self.o.protection = Protection::Claim,
            Action::KeepApex => self.o.apex = Apex::Kept,
            Action::TargetEvent { message } => self.events.push(message.clone()),
            Action::ApplyApex => self.o.apex = Apex::Current,
            Action::ApplyCanary { replicas } => {
                let ready = self.o.canary.filter(|c| c.current).map_or(0, |c| c.ready.min(*replicas));
                self.o.canary = Some(CanaryPods { replicas: *replicas, ready, current: true });
            }
            Action::SetWeight(w) => self.o.route_weight = Some(*w),
            Action::RouteToStable => {
                if self.o.route_weight.is_some() {
                    self.o.route_weight = Some(0);
                }
            }
            Action::DeleteGenerated => {
                assert!(self.o.route_weight.is_none_or(|w| w == 0), "canary deleted while routed: {:?}", self.log);
                self.o.canary = None;
                self.o.route_weight = None;
            }
            Action::WriteLock(outcome) => {
                self.o.target.lock = outcome.lock.clone();
                self.o.target.paused = outcome.paused;
                if let Transition::Promoted { revision } = &outcome.transition {
                    self.o.target.promoted = Some(revision.clone());
                }
            }
            Action::SetStatus(status) => {
                if status.weight != self.o.status.weight || status.phase != self.o.status.phase {
                    self.steps.push((status.phase, status.weight));
                }
                self.o.status = status.clone();
            }
            Action::Event { message, .. } => self.events.push(message.clone()),
            Action::RunHooks(kind, phase) => self.calls.push((*kind, *phase)),
            Action::Consume(key) => {
                let r = &mut self.o.requests;
                match *key {
                    "apisix-canary.dev/abort" => r.abort = None,
                    "apisix-canary.dev/promote" => r.promote = None,
                    _ => r.promote_now = None,
                }
            }
            Action::Alert { severity, message, .. } => self.alerts.push((*severity, message.clone())),
        }
    }

    /// One reconcile that crashes after `keep` actions; checks are run when asked for.
    fn step_partial(&mut self, keep: usize) -> Option<Duration> {
        self.o.checks = None;
        self.o.tested = None;
        self.o.hooks.clear();
        let mut decision = decide(&self.o, self.now);
        loop {
            match decision {
                Decision::Act { .. } => break,
                Decision::RunChecks => {
                    assert!(self.o.checks.is_none(), "checks asked twice");
                    let halt = (self.halt)(self.o.status.weight);
                    let wait = (self.wait)(self.o.status.weight);
                    self.o.checks =
                        Some(vec![Check { metric: "request-success-rate".into(), value: Some(99.9), halt, wait }]);
                }
                Decision::RunTest => {
                    assert!(self.o.tested.is_none(), "the test asked twice");
                    let rejected = (self.reject)(self.o.status.weight);
                    let share = Some(if rejected.is_some() { 30.0 } else { 0.4 });
                    let metric = "request-success-rate".into();
                    self.o.tested =
                        Some(vec![Tested { metric, share, requests: 41, log_e: 1.0, boundary: 5.3, rejected }]);
                }
                Decision::Call(kind, phase) => {
                    assert!(!self.o.hooks.contains_key(&kind), "{kind} asked twice");
                    self.calls.push((kind, phase));
                    let plan = self.o.plan.as_ref().unwrap();
                    let answer = self.answers.get(&kind).cloned().unwrap_or(Ok(()));
                    let answers = plan.hooks(kind).map(|h| (h.name.clone(), answer.clone())).collect();
                    self.o.hooks.insert(kind, answers);
                }
            }
            decision = decide(&self.o, self.now);
        }
        let Decision::Act { actions, requeue } = decision else { unreachable!() };
        for a in actions.iter().take(keep) {
            self.apply(a);
        }
        requeue
    }

    fn step(&mut self) -> Option<Duration> {
        self.step_partial(usize::MAX)
    }

    /// The cluster moves on: pods become ready, unpaused rollouts finish.
    fn settle(&mut self) {
        if let Some(c) = &mut self.o.canary {
            c.ready = c.replicas;
        }
        if !self.o.target.paused {
            self.o.target.rolled_out = true;
        }
    }

    /// Reconciles until nothing is requeued.
    fn run(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            let requeue = self.step();
            self.settle();
            match requeue {
                Some(d) => self.now += d,
                None => return,
            }
        }
        panic!("no end after {max_steps} steps: {:?}\n{:?}", self.events, self.o.status);
    }

    fn tick(&mut self, n: usize, every: Duration) {
        for _ in 0..n {
            self.step();
            self.settle();
            self.now += every;
        }
    }
}

/// Ticks (one interval each) until `until` holds, at most `max`.
fn until(w: &mut World, max: usize, until: impl Fn(&World) -> bool) {
    for _ in 0..max {
        if until(w) {
            return;
        }
        w.tick(1, Duration::from_secs(10));
    }
    panic!("not reached after {max} ticks: {:?}\n{:?}", w.events, w.o.status);
}

fn halting(_: u32) -> Option<String> {
    Some("Halt podinfo.test advancement success rate 26.76% < 99%".into())
}

#[test]
fn act1_promotes_through_every_step() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.run(100);
    let advances: Vec<String> = w.events.iter().filter(|e| e.starts_with("Advance")).cloned().collect();
    let want: Vec<String> = [10, 20, 30, 40, 50].iter().map(|n| format!("Advance {ID} canary weight {n}")).collect();
    assert_eq!(advances, want);
    assert_eq!(w.events[0], "Initialization done! podinfo.test");
    assert_eq!(w.events[1], "New revision detected! Scaling up podinfo.test");
    assert!(w.events.contains(&"Starting canary analysis for podinfo.test".to_owned()), "{:?}", w.events);
    assert_eq!(w.events.last().unwrap(), "Promotion completed! Scaling down podinfo.test");
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert_eq!(w.o.status.promoted, Some(rev("6.0.1")));
    assert!(!w.o.target.lock.held() && !w.o.target.paused, "promoted: unpaused, lock dropped");
    assert_eq!((w.o.canary, w.o.route_weight), (None, None), "generated objects gone");
    // The lock is dropped and the Deployment unpaused in one write, before the route goes back.
    let promote = w.log.iter().position(|a| matches!(a, Action::WriteLock(o) if !o.paused)).unwrap();
    let to_stable = w.log.iter().rposition(|a| matches!(a, Action::RouteToStable)).unwrap();
    assert!(promote < to_stable);
}

#[test]
fn canary_replicas_follow_the_weight_and_grow_before_it() {
    let mut w = World::new(plan(&[]));
    w.o.target.replicas = 10;
    w.run(5);
    w.set_image("6.0.1");
    w.run(100);
    let mut size = 0;
    for a in &w.log {
        match a {
            Action::ApplyCanary { replicas } => size = *replicas,
            Action::SetWeight(weight) if *weight > 0 => {
                assert!(size >= canary_replicas(10, *weight), "weight {weight} with {size} pods")
            }
            _ => {}
        }
    }
    assert_eq!(size, 5, "50% of 10 stable replicas");
    assert_eq!([canary_replicas(2, 10), canary_replicas(10, 25), canary_replicas(3, 50)], [1, 3, 2]);
}

#[test]
fn act2_rolls_back_at_the_threshold_route_first() {
    let mut w = World::released(plan(&[]), "6.0.2");
    w.halt = halting;
    w.run(100);
    let halts = w.events.iter().filter(|e| e.contains("success rate 26.76% < 99%")).count();
    assert_eq!(halts, 3, "threshold 3: {:?}", w.events);
    let tail: Vec<&str> = w.events.iter().rev().take(2).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        ["Rolling back podinfo.test failed checks threshold reached 3", "Canary failed! Scaling down podinfo.test"]
    );
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert_eq!(w.o.status.failed, Some(rev("6.0.2")));
    assert!(w.o.target.lock.is_failed() && w.o.target.paused, "stays paused on the failed template");
    let at = |f: fn(&Action) -> bool| w.log.iter().rposition(f).unwrap();
    let route = at(|a| matches!(a, Action::RouteToStable));
    let delete = at(|a| matches!(a, Action::DeleteGenerated));
    let lock = at(|a| matches!(a, Action::WriteLock(_)));
    assert!(route < delete && delete < lock, "route to stable, then delete, then record: {:?}", w.log);
    // Nothing starts again on its own.
    assert_eq!(decide(&w.o, w.now), Decision::idle());
}

#[test]
fn a_crash_after_any_action_resumes_to_the_same_end() {
    for (halt, end) in [(None, Phase::Succeeded), (Some(halting as fn(u32) -> Option<String>), Phase::Failed)] {
        let fresh = || {
            let mut w = World::released(plan(&[]), "6.0.1");
            if let Some(h) = halt {
                w.halt = h;
            }
            w
        };
        let total = {
            let mut w = fresh();
            let before = w.log.len();
            w.run(100);
            w.log.len() - before
        };
        for crash_at in 0..total {
            let mut w = fresh();
            let start = w.log.len();
            // Run clean until the crash point, then crash in the middle of a reconcile.
            loop {
                let done = w.log.len() - start;
                let requeue = w.step_partial(crash_at + 1 - done);
                w.settle();
                w.now += requeue.unwrap_or(Duration::from_secs(1));
                if w.log.len() - start > crash_at {
                    break;
                }
            }
            w.run(100);
            assert_eq!(w.o.status.phase, Some(end), "crash after action {crash_at}: {:?}", w.events);
            assert_eq!((w.o.canary, w.o.route_weight), (None, None), "crash after action {crash_at}");
            // Each step is taken exactly once, as the status records it; its Event (a
            // report, after the status) is said at most once.
            let advances: Vec<&String> = w.events.iter().filter(|e| e.starts_with("Advance")).collect();
            let unique: std::collections::BTreeSet<&&String> = advances.iter().collect();
            assert_eq!(unique.len(), advances.len(), "crash after action {crash_at}: advanced twice: {:?}", w.events);
            let weights: Vec<u32> = w
                .steps
                .iter()
                .filter(|(phase, w)| *phase == Some(Phase::Progressing) && *w > 0)
                .map(|(_, w)| *w)
                .collect();
            let upward: Vec<u32> = weights.windows(2).filter(|p| p[1] <= p[0]).map(|p| p[1]).collect();
            assert!(upward.is_empty(), "crash after action {crash_at}: a step taken again: {weights:?}");
            if end == Phase::Succeeded {
                assert_eq!(w.o.status.promoted, Some(rev("6.0.1")));
                let mut taken = weights.clone();
                taken.dedup();
                assert_eq!(taken, [10, 20, 30, 40, 50], "crash after action {crash_at}: each step once: {:?}", w.steps);
                assert!(advances.len() >= 4, "crash after action {crash_at}: at most one report lost: {:?}", w.events);
            }
        }
    }
}

#[test]
fn a_new_revision_mid_analysis_restarts_it() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.tick(6, Duration::from_secs(10));
    assert!(w.o.status.weight > 0, "{:?}", w.events);
    w.set_image("6.0.2");
    assert!(w.step().is_some());
    assert_eq!(w.o.status.weight, 0);
    assert_eq!(w.o.status.applied, Some(rev("6.0.2")));
    assert_eq!(w.o.route_weight, Some(0), "traffic back to stable while the new canary starts");
    assert_eq!(w.events.last().unwrap(), "New revision detected! Restarting analysis for podinfo.test");
    w.run(100);
    assert_eq!(w.o.status.promoted, Some(rev("6.0.2")));
}

#[test]
fn a_revert_to_stable_cancels_and_a_removed_lock_ends_safely() {
    for cancel in [true, false] {
        let mut w = World::released(plan(&[]), "6.0.1");
        w.tick(4, Duration::from_secs(10));
        // What the webhook leaves: a cancel unpauses on the stable template; a removed
        // lock leaves the Deployment paused.
        w.o.target.lock = Lock::default();
        if cancel {
            w.o.target.revision = rev("6.0.0");
            w.o.target.paused = false;
        }
        w.run(10);
        assert_eq!(w.o.status.phase, Some(Phase::Initialized));
        assert_eq!((w.o.canary, w.o.route_weight), (None, None));
        let last = w.events.last().unwrap();
        assert!(if cancel { last.contains("cancelled") } else { last.contains("kubectl rollout resume") }, "{last}");
        assert_eq!(w.o.target.paused, !cancel);
    }
}

#[test]
fn refusals_say_why_once_and_leave_nothing_behind() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.o.refusal = Some("ApisixRoute test/podinfo has no rule whose single backend is Service podinfo".into());
    w.step();
    w.step();
    let refused = w.events.iter().filter(|e| e.contains("refused")).count();
    assert_eq!(refused, 1, "{:?}", w.events);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert!(w.o.status.message.as_deref().unwrap().contains("no rule whose single backend"));
    assert_eq!((w.o.canary, w.o.route_weight), (None, None));
    assert!(w.o.target.paused && w.o.target.lock.held(), "the stable pods keep serving, paused");
    // Fixed: the release starts.
    w.o.refusal = None;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));

    let mut w = World::released(plan(&[]), "6.0.1");
    w.o.plan = Err("metadata.annotations[apisix-canary.dev/max-weight]: Invalid value: \"150\"".into());
    w.step();
    assert!(w.o.status.message.as_deref().unwrap().contains("invalid analysis settings"), "{:?}", w.o.status);

    let mut w = World::released(plan(&[]), "6.0.1");
    w.o.target.active_replica_sets = 2;
    w.step();
    assert!(w.o.status.message.as_deref().unwrap().contains("2 active ReplicaSets"), "{:?}", w.o.status);
}

#[test]
fn a_canary_that_never_gets_ready_rolls_back_at_the_deadline() {
    let mut w = World::released(plan(&[]), "6.0.1");
    for _ in 0..70 {
        w.step();
        w.now += Duration::from_secs(1);
    }
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    let want = "Rolling back podinfo.test progress deadline exceeded canary deployment podinfo-canary.test not \
                ready: waiting for rollout to finish: 0 of 1 (readyThreshold 100%) updated replicas are available";
    assert!(w.events.iter().any(|e| e == want), "{:?}", w.events);
}

/// Readiness is watched, so a waiting release does not poll: it looks again once an
/// interval (10 s here), and last at the progress deadline (60 s) itself.
#[test]
fn a_release_waiting_for_its_canary_looks_again_once_an_interval_and_at_the_deadline() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.step();
    let started = w.now;
    let mut waits = Vec::new();
    while let Some(again) = w.step() {
        assert!(waits.len() < 20, "no end: {waits:?}");
        waits.push(again.as_millis());
        w.now += again;
    }
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert_eq!(waits, [10_000; 6]);
    assert_eq!(w.now.duration_since(started).as_secs(), 60);
    let not_ready =
        w.events.iter().filter(|e| e.starts_with("canary deployment podinfo-canary.test not ready")).count();
    assert_eq!(not_ready, 6, "once an interval: {:?}", w.events);

    // A deadline between two intervals is kept to the second.
    let mut w = World::released(plan(&[("apisix-canary.dev/progress-deadline-seconds", "25")]), "6.0.1");
    w.step();
    let mut waits = Vec::new();
    while let Some(again) = w.step() {
        waits.push(again.as_millis());
        w.now += again;
    }
    assert_eq!((w.o.status.phase, waits), (Some(Phase::Failed), vec![10_000, 10_000, 5_000]));
}

#[test]
fn skip_analysis_promotes_at_once_and_suspend_stops_acting() {
    let mut w = World::released(plan(&[("apisix-canary.dev/skip-analysis", "true")]), "6.0.1");
    w.run(20);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded));
    assert!(w.events.contains(&"Promotion completed! Canary analysis was skipped for podinfo.test".to_owned()));
    assert!(!w.log.iter().any(|a| matches!(a, Action::ApplyCanary { .. })), "no canary copies were made");

    let mut p = plan(&[]);
    p.suspend = true;
    let mut w = World::released(p, "6.0.1");
    w.step();
    w.step();
    assert_eq!(w.events.iter().filter(|e| e.contains("suspended")).count(), 1);
    assert_eq!(w.o.canary, None);
}

#[test]
fn a_release_that_slipped_past_the_webhook_is_reported() {
    let mut w = World::new(plan(&[]));
    w.run(5);
    // The webhook was down: the template changed and rolled out, no lock.
    w.o.target.revision = rev("6.0.3");
    w.step();
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert!(w.events.last().unwrap().contains("was not intercepted"), "{:?}", w.events);
    assert_eq!(w.o.status.promoted, Some(rev("6.0.3")), "adopted as the stable revision");
    assert_eq!(decide(&w.o, w.now), Decision::idle(), "reported once");
}

/// A generated route left routed by a cleanup that failed is sent back to stable before
/// a new release records its status: the new release never adopts the old weight.
#[test]
fn a_release_starts_with_traffic_on_stable_even_after_a_failed_cleanup() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.o.route_weight = Some(30);
    w.tick(1, Duration::from_secs(1));
    let to_stable = w.log.iter().position(|a| matches!(a, Action::RouteToStable));
    let status = w.log.iter().position(|a| matches!(a, Action::SetStatus(s) if s.phase == Some(Phase::Progressing)));
    assert!(to_stable.unwrap() < status.unwrap(), "{:?}", w.log);
    w.run(100);
    let advances: Vec<&String> = w.events.iter().filter(|e| e.starts_with("Advance")).collect();
    assert_eq!(advances.first().map(|e| e.ends_with("canary weight 10")), Some(true), "{advances:?}");
}

/// The Progressing status is the first write of a release after its traffic is on
/// stable: a failed canary or route write never leaves the paused Deployment under the
/// last release's Succeeded, and the loop makes what is missing.
#[test]
fn a_release_says_progressing_before_it_makes_its_canary() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.step_partial(1);
    assert_eq!(w.o.status.phase, Some(Phase::Progressing), "{:?}", w.log);
    assert_eq!(w.o.canary, None, "{:?}", w.log);
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded), "{:?}", w.events);
    let advances = w.events.iter().filter(|e| e.starts_with("Advance")).count();
    assert_eq!(advances, 5, "{:?}", w.events);
}

/// The chaos soak found it: a template written while the webhook was down, on a
/// Deployment paused on a failed revision, sat there unanalysed under the old Failed.
/// The controller now takes it as the webhook would have, says so, and analyses it.
#[test]
fn a_template_written_under_a_failed_lock_while_the_webhook_was_down_is_analysed() {
    let mut w = World::released(plan(&[]), "6.0.2");
    w.halt = halting;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    assert!(w.o.target.paused && w.o.target.lock.is_failed());
    // `kubectl set image` with no webhook: the template changes, the lock and the pause stay.
    w.o.target.revision = rev("6.0.3");
    w.halt = |_| None;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Succeeded), "{:?}", w.events);
    assert_eq!(w.o.status.promoted, Some(rev("6.0.3")));
    let said = w.events.iter().find(|e| e.contains("written while the webhook was down")).expect("said why");
    assert!(said.contains("the analysis of revision") && said.contains("starts"), "{said}");

    // Still on the failed template: nothing to do.
    let mut w = World::released(plan(&[]), "6.0.2");
    w.halt = halting;
    w.run(100);
    assert_eq!(w.o.target.revision, rev("6.0.2"));
    assert_eq!(decide(&w.o, w.now), Decision::idle(), "the revision the lock names: nothing to do");
    // Back to the stable template past the webhook: the release is cancelled, unpaused.
    w.o.target.revision = w.o.target.lock.stable.clone().unwrap();
    w.run(100);
    assert!(!w.o.target.paused && !w.o.target.lock.held(), "{:?}", w.o.target);
    assert!(w.events.iter().any(|e| e.contains("the release is cancelled")), "{:?}", w.events);
}

/// `kubectl rollout resume` while the webhook was down: the Deployment, resumed under
/// the lock, rolls out its template unanalysed. The controller ends the release (traffic
/// to the Deployment, no canary copy), drops the lock without pausing a half rollout,
/// and says which revision rolled out and how; then it is quiet.
#[test]
fn a_deployment_resumed_under_the_lock_while_the_webhook_was_down_is_reported_and_released() {
    let mut w = World::released(plan(&[]), "6.0.1");
    w.tick(4, Duration::from_secs(10));
    assert_eq!(w.o.status.phase, Some(Phase::Progressing));
    assert!(w.o.route_weight.is_some_and(|w| w > 0) && w.o.canary.is_some(), "{:?}", w.log);
    // The resume and a newer template, both past the webhook.
    w.o.target.paused = false;
    w.o.target.revision = rev("6.0.2");
    w.run(5);
    assert_eq!(w.o.status.phase, Some(Phase::Failed), "{:?}", w.events);
    assert_eq!(w.o.status.promoted, Some(rev("6.0.2")), "the revision that runs is the stable one now");
    let message = w.o.status.message.clone().unwrap();
    assert!(message.starts_with(NOT_INTERCEPTED), "{message}");
    for part in ["revision ", "rolled out without analysis", "resumed under the release lock", "release of "] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert!(w.events.iter().any(|e| e.contains("resumed under the release lock")), "{:?}", w.events);
    assert_eq!((w.o.canary, w.o.route_weight), (None, None), "{:?}", w.log);
    assert!(!w.o.target.paused && !w.o.target.lock.held(), "{:?}", w.o.target);
    let route = w.log.iter().position(|a| matches!(a, Action::RouteToStable)).unwrap();
    let lock = w.log.iter().rposition(|a| matches!(a, Action::WriteLock(_))).unwrap();
    assert!(route < lock, "traffic goes to the Deployment before the lock is dropped: {:?}", w.log);
    let said = w.events.len();
    w.run(20);
    assert_eq!(w.events.len(), said, "said once: {:?}", w.events);
    assert_eq!(decide(&w.o, w.now), Decision::idle());
}

/// The same resume after a rollback: the failed revision rolled out. Said as such; the
/// memory of the failure stays, so re-applying it later is still refused.
#[test]
fn a_failed_release_resumed_while_the_webhook_was_down_keeps_the_memory_of_the_failure() {
    let mut w = World::released(plan(&[]), "6.0.2");
    w.halt = halting;
    w.run(100);
    assert_eq!(w.o.status.phase, Some(Phase::Failed));
    w.o.target.paused = false;
    w.run(5);
    let message = w.o.status.message.clone().unwrap();
    assert!(
        message.contains("resumed under the release lock") && message.contains("had failed its analysis"),
        "{message}"
    );
    assert_eq!(w.o.target.lock, Lock { failed: Some(rev("6.0.2")), ..Lock::default() });
    assert!(!w.o.target.paused);
}
