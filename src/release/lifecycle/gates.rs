//! The webhooks the lifecycle waits on or acts on, in Flagger's words: the gates
//! (confirm-rollout, confirm-traffic-increase, confirm-promotion) that hold a release
//! without failing it, and the rollback hook that ends it by hand.
//!
//! A gate is asked through the executor ([`Decision::Call`]) and answered in
//! [`Observed::hooks`]. While a gate holds, the analysis goes on at every interval:
//! failed checks still count and still roll back (Flagger #1801).

use k8s_openapi::jiff::Timestamp;

use super::*;

/// What the webhooks of one kind said.
pub(super) enum Heard<'a> {
    /// None is configured, or every one answered with success: their answers.
    Passed(&'a [HookResult]),
    /// The first one that did not pass, and why.
    Failed { hook: &'a str, error: &'a str },
}

/// The answers of the hooks of `kind`; `Err` asks the executor to call them.
pub(super) fn hear<'a>(o: &'a Observed, plan: &Plan, kind: HookKind, phase: Phase) -> Result<Heard<'a>, Decision> {
    if plan.hooks(kind).next().is_none() {
        return Ok(Heard::Passed(&[]));
    }
    let Some(answers) = o.hooks.get(&kind) else { return Err(Decision::Call(kind, phase)) };
    Ok(match answers.iter().find_map(|(name, r)| r.as_ref().err().map(|e| (name, e))) {
        Some((hook, error)) => Heard::Failed { hook, error },
        None => Heard::Passed(answers),
    })
}

/// The rollback hooks: the first one that answered with success, which asks for a
/// rollback; `None` when none did (or none is configured).
pub(super) fn manual_rollback<'a>(o: &'a Observed, plan: &Plan, phase: Phase) -> Result<Option<&'a str>, Decision> {
    if plan.hooks(HookKind::Rollback).next().is_none() {
        return Ok(None);
    }
    let Some(answers) = o.hooks.get(&HookKind::Rollback) else {
        return Err(Decision::Call(HookKind::Rollback, phase));
    };
    Ok(answers.iter().find(|(_, r)| r.is_ok()).map(|(hook, _)| hook.as_str()))
}

/// "Confirm-rollout check load passed", one Event per hook that passed.
pub(super) fn passed(hooks: &[HookResult], what: &str) -> Vec<Action> {
    hooks
        .iter()
        .map(|(name, _)| Action::Event { warning: false, message: format!("{what} check {name} passed") })
        .collect()
}

/// A rollback hook said so: the release fails now, in any phase that holds it.
pub(super) fn rollback_by_hand(o: &Observed, now: Timestamp, hook: &str) -> Decision {
    let first = Action::Event { warning: true, message: format!("Rollback check {hook} passed") };
    asked_rollback(o, now, "manual webhook invoked", Some(first))
}

/// An operator's `apisix-canary abort` (the annotation on the Canary).
pub(super) fn aborted(o: &Observed, now: Timestamp) -> Decision {
    consuming(asked_rollback(o, now, &format!("aborted by the operator ({ABORT})"), None), ABORT)
}

/// A rollback someone asked for: a warning alert, not the error of a failed analysis.
fn asked_rollback(o: &Observed, now: Timestamp, why: &str, first: Option<Action>) -> Decision {
    let Decision::Act { mut actions, requeue } = rollback(o, now, Some(why.to_owned())) else { unreachable!() };
    if let Some(first) = first {
        actions.insert(0, first);
    }
    actions.retain(|a| !matches!(a, Action::Alert { .. }));
    actions.push(alert(Severity::Warn, format!("Rolling back {why}")));
    Decision::Act { actions, requeue }
}

/// confirm-rollout said no: the release waits, nothing of it runs, and the stable
/// version serves. Said once; asked again at every interval.
pub(super) fn wait_for_approval(o: &Observed, plan: &Plan, now: Timestamp, hook: &str) -> Decision {
    if o.status.phase == Some(Phase::Waiting) {
        return Decision::wait(plan.interval);
    }
    let status = Status {
        phase: Some(Phase::Waiting),
        weight: 0,
        since: Some(now),
        message: Some(WAITING.to_owned()),
        ..o.status.clone()
    };
    let message = format!("Halt {} advancement waiting for approval {hook}", o.id);
    let mut actions = vec![
        Action::RouteToStable,
        Action::DeleteGenerated,
        Action::SetStatus(status),
        Action::Event { warning: true, message },
    ];
    actions.extend(waiting_alert(plan, hook, "Canary is waiting for approval."));
    Decision::Act { actions, requeue: Some(plan.interval) }
}

/// A gate's waiting alert, unless its hook says `muteAlert` (Flagger's).
fn waiting_alert(plan: &Plan, hook: &str, text: &str) -> Option<Action> {
    let muted = plan.webhooks.iter().any(|w| w.name == hook && w.mute_alert);
    (!muted).then(|| alert(Severity::Warn, text))
}

/// confirm-traffic-increase said no: the weight holds, the analysis goes on. Said once
/// per weight; the condition says why meanwhile.
pub(super) fn hold_traffic(o: &Observed, plan: &Plan, now: Timestamp, hook: &str) -> Decision {
    let status =
        Status { since: Some(now), held_since: None, message: Some(WAITING_TRAFFIC.to_owned()), ..o.status.clone() };
    let mut actions = vec![Action::SetStatus(status)];
    if o.status.message.as_deref() != Some(WAITING_TRAFFIC) {
        let message = format!("Halt {} advancement waiting for traffic increase approval {hook}", o.id);
        actions.push(Action::Event { warning: true, message });
        actions.extend(waiting_alert(plan, hook, "Canary traffic increase is waiting for approval."));
    }
    Decision::Act { actions, requeue: Some(plan.interval) }
}

/// confirm-promotion said no: `WaitingPromotion` at the top weight, the analysis going
/// on at every interval until the gate opens or the checks fail.
pub(super) fn hold_promotion(o: &Observed, plan: &Plan, now: Timestamp, hook: &str) -> Decision {
    let status = Status {
        phase: Some(Phase::WaitingPromotion),
        since: Some(now),
        held_since: None,
        message: Some(WAITING.to_owned()),
        ..o.status.clone()
    };
    let mut actions = vec![Action::SetStatus(status)];
    if o.status.phase != Some(Phase::WaitingPromotion) {
        let message = format!("Halt {} advancement waiting for promotion approval {hook}", o.id);
        actions.push(Action::Event { warning: true, message });
        actions.extend(waiting_alert(plan, hook, "Canary promotion is waiting for approval."));
    }
    Decision::Act { actions, requeue: Some(plan.interval) }
}
