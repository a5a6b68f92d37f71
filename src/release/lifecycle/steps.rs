//! The analysis loop of a running release, one interval at a time:
//!
//! ```text
//!  canary ready? ─no─▶ wait (deadline only before the first step)
//!  threshold reached ─▶ rollback
//!  judge: sequential ─▶ the test on the canary's requests so far ─rejects─▶ rollback now
//!                       (looked at every SEQUENTIAL_EVERY between the intervals)
//!  first step:  Starting canary analysis ▶ confirm-traffic-increase ▶ pre-rollout ▶ weight 1st step
//!  each interval: rollback hook ▶ rollout hooks + metrics ─halt─▶ failedChecks+1
//!                 all pass ▶ at max: confirm-promotion ▶ promote
//!                            else:   confirm-traffic-increase ▶ next weight
//! ```

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::release::plan::Judge;

/// How often the sequential judge looks between two intervals: Prometheus may have new
/// counts at each scrape.
pub const SEQUENTIAL_EVERY: Duration = Duration::from_secs(5);

pub(super) fn progress(o: &Observed, plan: &Plan, now: Timestamp) -> Decision {
    if let Some(why) = &o.refusal {
        return rollback(o, now, Some(why.clone()));
    }
    let waited = elapsed(o.status.since, now);
    let threshold = plan.canary_ready_threshold;
    let ready = o.canary.is_some_and(|c| c.current && c.replicas > 0 && c.ready >= ready_needed(c.replicas, threshold));
    let weight = o.route_weight.unwrap_or(o.status.weight);
    if !ready {
        let why = not_ready(o, threshold);
        if o.status.weight == 0 && o.status.iterations == 0 && waited >= plan.progress_deadline {
            return rollback(o, now, Some(format!("progress deadline exceeded {why}")));
        }
        // Said while the release waits to start; a scale-up between steps waits quietly.
        let mut actions = Vec::new();
        if o.status.weight == 0 {
            actions.push(Action::Event { warning: true, message: why });
        }
        if o.canary.is_none() || o.canary.is_some_and(|c| !c.current) {
            let next = plan.next_weight(weight).unwrap_or(plan.max_weight);
            actions.insert(0, Action::ApplyCanary { replicas: canary_replicas(o.target.replicas, next.max(weight)) });
        }
        // The canary's pods are watched: their readiness wakes the release at once. Until
        // then it looks again once an interval, as Flagger's ticker does (a poll every
        // second of a thousand waiting releases was most of the API server's load), or
        // at the progress deadline when that comes first.
        let mut again = plan.interval;
        if o.status.weight == 0 && o.status.iterations == 0 {
            again = again.min(plan.progress_deadline.saturating_sub(waited)).max(POLL);
        }
        return Decision::Act { actions, requeue: Some(again) };
    }
    if o.status.failed_checks >= plan.threshold {
        return rollback(o, now, None);
    }
    // A step whose status write was lost (a crash after the route moved): record it,
    // and give the step its full interval from now.
    if let Some(routed) = o.route_weight.filter(|w| *w > 0 && *w != o.status.weight) {
        let status =
            Status { weight: routed, iterations: o.status.iterations + 1, since: Some(now), ..o.status.clone() };
        return Decision::Act {
            actions: vec![advanced(o, routed), Action::SetStatus(status)],
            requeue: Some(plan.interval),
        };
    }
    if o.status.weight == 0 && o.status.iterations == 0 {
        return first_step(o, plan, waited, now);
    }
    // The sequential judge looks whenever Prometheus may have new counts, between the
    // interval's checks too: a rejection rolls the release back at once, whatever the
    // threshold.
    if matches!(plan.judge, Judge::Sequential { .. }) && o.status.weight > 0 && o.status.started.is_some() {
        let Some(tested) = &o.tested else { return Decision::RunTest };
        if let Some(why) = tested.iter().find_map(|t| t.rejected.as_ref()) {
            return rollback(o, now, Some(format!(": {why}")));
        }
        if waited < plan.interval {
            return Decision::wait((plan.interval - waited).min(SEQUENTIAL_EVERY));
        }
    }
    if waited < plan.interval {
        return Decision::wait(plan.interval - waited);
    }
    // The next step's pods come first: the interval's checks run once they are ready,
    // so a scale-up never runs the checks (and the rollout hooks) twice.
    if let Some(scale) = plan.next_weight(weight).and_then(|next| scale_for(o, next)) {
        return scale;
    }
    let phase = o.status.phase.unwrap_or(Phase::Progressing);
    if let Some(hook) = heard!(manual_rollback(o, plan, phase)) {
        return rollback_by_hand(o, now, hook);
    }
    let mut halts = match heard!(hear(o, plan, HookKind::Rollout, Phase::Progressing)) {
        Heard::Passed(_) => Vec::new(),
        Heard::Failed { .. } => external_failures(o),
    };
    let Some(checks) = &o.checks else { return Decision::RunChecks };
    halts.extend(checks.iter().filter_map(|c| c.halt.clone()));
    if !halts.is_empty() {
        return failed_check(o, now, halts);
    }
    let waits: Vec<&str> = checks.iter().filter_map(|c| c.wait.as_deref()).collect();
    if !waits.is_empty() {
        return hold_for_traffic(o, plan, now, &waits);
    }
    // `apisix-canary promote`: the remaining steps and gates are skipped.
    if o.requests.promote.is_some() && o.requests.promote == o.status.applied {
        let canary = o.status.applied.clone().unwrap_or_else(|| o.target.revision.clone());
        let message = format!("Promoting {} on request ({PROMOTE}) at canary weight {weight}", o.id);
        return consuming(promote(o, &canary, now, message), PROMOTE);
    }
    // An A/B release stays on the matching requests for its iterations.
    if let Some(ab) = plan.ab.as_ref().filter(|ab| o.status.iterations < ab.iterations) {
        return iterate(o, plan, ab.iterations, now);
    }
    if plan.at_max(weight) {
        return match heard!(hear(o, plan, HookKind::ConfirmPromotion, Phase::Progressing)) {
            Heard::Failed { hook, .. } => hold_promotion(o, plan, now, hook),
            Heard::Passed(hooks) => {
                let canary = o.status.applied.clone().unwrap_or_else(|| o.target.revision.clone());
                let message = format!("Promoting {}: the rolling update to revision {canary} resumes", o.id);
                prepend(passed(hooks, "Confirm-promotion"), promote(o, &canary, now, message))
            }
        };
    }
    match heard!(hear(o, plan, HookKind::ConfirmTrafficIncrease, Phase::Progressing)) {
        Heard::Failed { hook, .. } => hold_traffic(o, plan, now, hook),
        Heard::Passed(hooks) => prepend(passed(hooks, "Confirm-traffic-increase"), advance(o, plan, weight, now)),
    }
}

/// The first step needs no metrics (there is no canary traffic yet): the start of the
/// analysis is recorded in the status (`started`) and announced with it, the traffic
/// gate is asked, then the pre-rollout hooks run, once per analysis unless they fail
/// (Flagger runs them, and announces the start, at every tick, #1248).
fn first_step(o: &Observed, plan: &Plan, waited: Duration, now: Timestamp) -> Decision {
    // After a failed pre-rollout check, the next try comes an interval later.
    if o.status.failed_checks > 0 && waited < plan.interval {
        return Decision::wait(plan.interval - waited);
    }
    if o.status.started.is_none() {
        // Decided as if started, so every status this decision writes says so.
        let started = Observed { status: Status { started: Some(now), ..o.status.clone() }, ..o.clone() };
        let announce = Action::Event { warning: false, message: format!("Starting canary analysis for {}", o.id) };
        return match first_step(&started, plan, waited, now) {
            Decision::Act { mut actions, requeue } => {
                if !actions.iter().any(|a| matches!(a, Action::SetStatus(_))) {
                    actions.insert(0, Action::SetStatus(started.status.clone()));
                }
                // The first report of the decision (reports go after its writes).
                actions.insert(0, announce);
                Decision::Act { actions, requeue }
            }
            asking => asking,
        };
    }
    if let Some(scale) = plan.next_weight(0).and_then(|next| scale_for(o, next)) {
        return scale;
    }
    let approved = match heard!(hear(o, plan, HookKind::ConfirmTrafficIncrease, Phase::Progressing)) {
        Heard::Failed { hook, .. } => return hold_traffic(o, plan, now, hook),
        Heard::Passed(hooks) => passed(hooks, "Confirm-traffic-increase"),
    };
    match heard!(hear(o, plan, HookKind::PreRollout, Phase::Progressing)) {
        Heard::Failed { hook, error } => {
            let halt = format!("Halt {} advancement pre-rollout check {hook} failed {error}", o.id);
            failed_check(o, now, vec![halt])
        }
        Heard::Passed(hooks) => {
            let mut actions = passed(hooks, "Pre-rollout");
            actions.extend(approved);
            prepend(actions, advance(o, plan, 0, now))
        }
    }
}

/// "Halt podinfo.test advancement external check load failed ...", per rollout hook
/// that failed.
fn external_failures(o: &Observed) -> Vec<String> {
    let answers = o.hooks.get(&HookKind::Rollout).map(Vec::as_slice).unwrap_or_default();
    answers
        .iter()
        .filter_map(|(hook, r)| {
            r.as_ref().err().map(|e| format!("Halt {} advancement external check {hook} failed {e}", o.id))
        })
        .collect()
}

fn ab(o: &Observed) -> bool {
    o.plan.as_ref().is_ok_and(|p| p.ab.is_some())
}

/// One failed check for this interval, whatever failed in it, each halt said.
fn failed_check(o: &Observed, now: Timestamp, halts: Vec<String>) -> Decision {
    let status = Status {
        failed_checks: o.status.failed_checks + 1,
        // An A/B release counts only the intervals that passed, as Flagger's.
        iterations: o.status.iterations + u32::from(o.status.weight > 0 && !ab(o)),
        since: Some(now),
        held_since: None,
        ..o.status.clone()
    };
    let mut actions = vec![Action::SetStatus(status)];
    actions.extend(halts.into_iter().map(|message| Action::Event { warning: true, message }));
    // Looked at again at once: reaching the threshold rolls back without an interval.
    Decision::act(actions)
}

/// Too few canary requests to judge a metric (`minRequests`): the weight holds, no
/// check fails, each interval says why; for at most progressDeadlineSeconds, after
/// which a canary nobody sends traffic to is rolled back.
fn hold_for_traffic(o: &Observed, plan: &Plan, now: Timestamp, waits: &[&str]) -> Decision {
    let since = o.status.held_since.unwrap_or(now);
    if elapsed(Some(since), now) >= plan.progress_deadline {
        let detail = waits[0].split_once("waiting for traffic: ").map_or(waits[0], |(_, d)| d);
        return rollback(o, now, Some(format!("progress deadline exceeded waiting for traffic: {detail}")));
    }
    let status = Status {
        since: Some(now),
        held_since: Some(since),
        message: Some(WAITING_FOR_TRAFFIC.to_owned()),
        ..o.status.clone()
    };
    let mut actions = vec![Action::SetStatus(status)];
    actions.extend(waits.iter().map(|w| Action::Event { warning: true, message: (*w).to_owned() }));
    Decision::Act { actions, requeue: Some(plan.interval) }
}

/// Scales the canary for `next` when it is too small; the weight moves once the larger
/// canary is ready.
fn scale_for(o: &Observed, next: u32) -> Option<Decision> {
    let needed = canary_replicas(o.target.replicas, next);
    let have = o.canary.map_or(0, |c| c.replicas);
    (have < needed).then(|| Decision::act(vec![Action::ApplyCanary { replicas: needed }]))
}

/// Moves to the next weight.
fn advance(o: &Observed, plan: &Plan, weight: u32, now: Timestamp) -> Decision {
    let Some(next) = plan.next_weight(weight) else {
        return Decision::wait(plan.interval);
    };
    if let Some(scale) = scale_for(o, next) {
        return scale;
    }
    let status = Status {
        weight: next,
        iterations: o.status.iterations + 1,
        since: Some(now),
        held_since: None,
        message: Some(PROGRESSING.to_owned()),
        ..o.status.clone()
    };
    // The status records the step once its weight is read back; the Event reports it.
    let said = match &plan.ab {
        Some(ab) => iterated(o, status.iterations, ab.iterations),
        None => advanced(o, next),
    };
    Decision::Act {
        actions: vec![Action::SetWeight(next), Action::SetStatus(status), said],
        requeue: Some(plan.interval),
    }
}

/// An A/B release's next interval on the matching requests: "Advance podinfo.test
/// canary iteration 2/5", as Flagger says it.
fn iterate(o: &Observed, plan: &Plan, of: u32, now: Timestamp) -> Decision {
    let status = Status { iterations: o.status.iterations + 1, since: Some(now), held_since: None, ..o.status.clone() };
    let said = iterated(o, status.iterations, of);
    Decision::Act { actions: vec![Action::SetStatus(status), said], requeue: Some(plan.interval) }
}

fn iterated(o: &Observed, iteration: u32, of: u32) -> Action {
    Action::Event { warning: false, message: format!("Advance {} canary iteration {iteration}/{of}", o.id) }
}

/// `actions` before those of `decision`.
fn prepend(mut actions: Vec<Action>, decision: Decision) -> Decision {
    match decision {
        Decision::Act { actions: rest, requeue } => {
            actions.extend(rest);
            Decision::Act { actions, requeue }
        }
        asking => asking,
    }
}

/// "Advance podinfo.test canary weight 20": the report of a step the status records.
pub(super) fn advanced(o: &Observed, weight: u32) -> Action {
    Action::Event { warning: false, message: format!("Advance {} canary weight {weight}", o.id) }
}

/// Flagger's readiness message for the canary Deployment: the pods it needs are the
/// `canaryReadyThreshold` share of its replicas.
fn not_ready(o: &Observed, threshold: u32) -> String {
    let (ready, replicas) = o.canary.map_or((0, 1), |c| (c.ready, c.replicas.max(1)));
    let needed = ready_needed(replicas, threshold);
    let (name, ns) = (&o.id.target, &o.id.namespace);
    format!(
        "canary deployment {name}-canary.{ns} not ready: waiting for rollout to finish: {ready} of {needed} \
         (readyThreshold {threshold}%) updated replicas are available"
    )
}

/// Available pods a Deployment of `replicas` needs at `threshold` percent, rounded down
/// as Flagger rounds (`canaryReadyThreshold: 50` of 3 replicas: 1).
fn ready_needed(replicas: i32, threshold: u32) -> i32 {
    i32::try_from(i64::from(replicas) * i64::from(threshold) / 100).unwrap_or(replicas)
}

pub(super) fn elapsed(since: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(since) = since else { return Duration::MAX };
    let d: SignedDuration = now.duration_since(since);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}
