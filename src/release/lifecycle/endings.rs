//! How a release ends: promotion (the lock handed back in one write, then the native
//! rolling update, then the route and the generated objects), rollback (route first),
//! refusal, suspension, an end from outside (lock removed, template reverted) and a
//! release that slipped past the webhook.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::release::lock::Transition;

/// Hands the release to the native rolling update: one write unpauses the Deployment
/// and drops the lock, naming the promoted revision.
pub(super) fn promote(o: &Observed, canary: &Revision, now: Timestamp, message: String) -> Decision {
    let lock = Lock { canary: Some(canary.clone()), ..o.target.lock.clone() };
    let Some(outcome) = lock.promote() else { return Decision::idle() };
    let status = Status {
        phase: Some(Phase::Promoting),
        applied: Some(canary.clone()),
        since: Some(now),
        held_since: None,
        message: Some(PROMOTING.to_owned()),
        ..o.status.clone()
    };
    Decision::act(vec![
        Action::WriteLock(outcome),
        Action::SetStatus(status),
        Action::Event { warning: false, message },
    ])
}

/// After the promotion write: wait for the rolling update, then route to stable, then
/// remove the generated objects.
pub(super) fn promoting(o: &Observed, now: Timestamp) -> Decision {
    let promoted = o.status.applied.clone();
    if o.target.lock.held() && o.target.lock.canary != promoted {
        // A newer release arrived during the promotion: it starts from here.
        let status = Status { phase: Some(Phase::Succeeded), promoted, ..o.status.clone() };
        return Decision::act(vec![Action::SetStatus(status)]);
    }
    if !o.target.rolled_out || Some(&o.target.revision) != promoted.as_ref() {
        return Decision::wait(POLL);
    }
    if o.status.phase != Some(Phase::Finalising) {
        if let Some(step) = promotion_step(o, now) {
            return step;
        }
        let status = Status {
            phase: Some(Phase::Finalising),
            since: Some(now),
            message: Some(FINALISING.to_owned()),
            ..o.status.clone()
        };
        return Decision::act(vec![Action::RouteToStable, Action::SetStatus(status)]);
    }
    let status = Status {
        phase: Some(Phase::Succeeded),
        weight: 0,
        // Kept, as Flagger keeps it: the count that explains the ending.
        iterations: 0,
        promoted,
        since: Some(now),
        message: Some(SUCCEEDED.to_owned()),
        ..o.status.clone()
    };
    let Decision::Act { mut actions, requeue } =
        wind_up(status, false, format!("Promotion completed! Scaling down {}", o.id))
    else {
        unreachable!()
    };
    let skipped = o.plan.as_ref().is_ok_and(|p| p.skip_analysis);
    actions.push(Action::RunHooks(HookKind::PostRollout, Phase::Succeeded));
    actions.push(alert(
        Severity::Info,
        if skipped {
            "Canary analysis was skipped, promotion finished."
        } else {
            "Canary analysis completed successfully, promotion finished."
        },
    ));
    Decision::Act { actions, requeue }
}

/// With `stepWeightPromotion`, once the promoted stable pods are rolled out, the
/// canary's share moves to them one step per interval ("Advance podinfo.test primary
/// weight 70"), as Flagger's promotion does; without it, all at once.
fn promotion_step(o: &Observed, now: Timestamp) -> Option<Decision> {
    let plan = o.plan.as_ref().ok()?;
    let step = plan.step_weight_promotion.filter(|s| *s > 0)?;
    let weight = o.route_weight.filter(|w| *w > step)?;
    let waited = elapsed(o.status.since, now);
    if waited < plan.interval {
        return Some(Decision::wait(plan.interval - waited));
    }
    let next = weight - step;
    let status = Status { weight: next, since: Some(now), ..o.status.clone() };
    let message = format!("Advance {} primary weight {}", o.id, 100 - next);
    Some(Decision::Act {
        actions: vec![Action::SetWeight(next), Action::Event { warning: false, message }, Action::SetStatus(status)],
        requeue: Some(plan.interval),
    })
}

/// Threshold reached (or an unrecoverable wait): traffic back to stable first, then the
/// canary objects go, then the lock records the failure, then the status, the
/// post-rollout hooks and an alert (Flagger sends none for a deadline, #1663).
pub(super) fn rollback(o: &Observed, now: Timestamp, why: Option<String>) -> Decision {
    let (reason, alert_message) = match (&why, &o.plan) {
        // ": canary 5xx share ..." (the sequential judge) follows the name, as Flagger
        // writes "Rolling back podinfo.test: ..."; other reasons after a space.
        (Some(why), _) => match why.strip_prefix(": ") {
            Some(said) => (format!("Rolling back {}{why}", o.id), capitalized(said)),
            None => (format!("Rolling back {} {why}", o.id), capitalized(why)),
        },
        (None, Ok(plan)) => (
            format!("Rolling back {} failed checks threshold reached {}", o.id, plan.threshold),
            format!("Failed checks threshold reached {}", plan.threshold),
        ),
        (None, Err(_)) => (format!("Rolling back {}", o.id), "Rolling back".to_owned()),
    };
    let mut actions =
        vec![Action::Event { warning: true, message: reason }, Action::RouteToStable, Action::DeleteGenerated];
    actions.extend(o.target.lock.fail().map(Action::WriteLock));
    let why = why.map(|w| w.strip_prefix(": ").map_or_else(|| w.clone(), str::to_owned));
    actions.extend(failed_status(o, now, why));
    actions.push(alert(Severity::Error, alert_message));
    Decision::Act { actions, requeue: None }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A rollback that stopped after its lock write: the same steps again, all idempotent.
pub(super) fn rolled_back(o: &Observed, now: Timestamp) -> Decision {
    let mut actions = vec![Action::RouteToStable, Action::DeleteGenerated];
    actions.extend(failed_status(o, now, None));
    Decision::Act { actions, requeue: None }
}

/// The last writes of a rollback: the status, the event, then the post-rollout hooks.
pub(super) fn failed_status(o: &Observed, now: Timestamp, why: Option<String>) -> [Action; 3] {
    let status = Status {
        phase: Some(Phase::Failed),
        weight: 0,
        // Kept, as Flagger keeps it: the count that explains the ending.
        iterations: 0,
        // The revision of the release: one held at its gate never became `applied`.
        failed: o.target.lock.canary.clone().or_else(|| o.status.applied.clone()),
        held_since: None,
        since: Some(now),
        message: Some(why.map_or_else(|| FAILED.to_owned(), |w| format!("{FAILED} {w}"))),
        ..o.status.clone()
    };
    [
        Action::SetStatus(status),
        Action::Event { warning: true, message: format!("Canary failed! Scaling down {}", o.id) },
        Action::RunHooks(HookKind::PostRollout, Phase::Failed),
    ]
}

/// A release that cannot run: say why once, leave nothing behind, keep the Deployment
/// paused on its stable pods. It starts when the cause is fixed.
pub(super) fn refuse(o: &Observed, now: Timestamp, why: &str) -> Decision {
    let mut actions = vec![Action::RouteToStable, Action::DeleteGenerated];
    let message = format!("{REFUSED} {why}");
    if o.status.message.as_deref() != Some(&message) || o.status.phase != Some(Phase::Failed) {
        let status = Status {
            phase: Some(Phase::Failed),
            weight: 0,
            applied: None,
            since: Some(now),
            message: Some(message),
            ..o.status.clone()
        };
        actions.push(Action::SetStatus(status));
        actions.push(Action::Event { warning: true, message: format!("Halt {} release refused: {why}", o.id) });
    }
    Decision::Act { actions, requeue: Some(Duration::from_secs(10)) }
}

pub(super) fn suspended(o: &Observed, now: Timestamp) -> Decision {
    if o.status.message.as_deref() == Some(SUSPENDED) {
        return Decision::idle();
    }
    let status = Status { since: Some(now), message: Some(SUSPENDED.to_owned()), ..o.status.clone() };
    Decision::Act {
        actions: vec![
            Action::SetStatus(status),
            Action::Event { warning: false, message: "skipping canary run as object is suspended".to_owned() },
        ],
        requeue: None,
    }
}

/// The lock went away during a release without our promotion: the user released
/// control, cancelled by reverting, or opted out. Traffic back, objects gone.
pub(super) fn ended_outside(o: &Observed, now: Timestamp) -> Decision {
    let cancelled = o.status.promoted.as_ref() == Some(&o.target.revision) && !o.target.paused;
    let (message, event) = if cancelled {
        (CANCELLED.to_owned(), format!("Release of {} cancelled: the template is back at the stable revision", o.id))
    } else {
        (
            RELEASED.to_owned(),
            format!(
                "Release of {} ended: the lock was removed; the Deployment stays paused until you resume it \
                 (kubectl rollout resume)",
                o.id
            ),
        )
    };
    let status = Status {
        phase: Some(Phase::Initialized),
        weight: 0,
        failed_checks: 0,
        iterations: 0,
        applied: None,
        since: Some(now),
        message: Some(message),
        ..o.status.clone()
    };
    wind_up(status, true, event)
}

/// Not locked and idle: a template that changed without the webhook (it was down and
/// failurePolicy is Ignore) is reported, never silent, and becomes the stable revision.
pub(super) fn adopt_untracked(o: &Observed, now: Timestamp) -> Decision {
    let stable = o.status.promoted.as_ref();
    if stable.is_none_or(|s| *s == o.target.revision) || o.target.promoted.as_ref() == Some(&o.target.revision) {
        return Decision::idle();
    }
    let why = format!(
        "revision {} of {} rolled out without analysis: the release was not intercepted (was the webhook down? \
         its failurePolicy is Ignore)",
        o.target.revision,
        o.id.deployment()
    );
    let status = Status {
        phase: Some(Phase::Failed),
        promoted: Some(o.target.revision.clone()),
        since: Some(now),
        message: Some(format!("{NOT_INTERCEPTED} {why}")),
        ..o.status.clone()
    };
    Decision::Act {
        actions: vec![Action::SetStatus(status), Action::Event { warning: true, message: why }],
        requeue: None,
    }
}

/// A Deployment resumed under the lock by a write the webhook did not see (it was down,
/// failurePolicy Ignore): its template rolled out without analysis. Said, never silent;
/// the release ends (traffic to the Deployment's pods, the canary copy gone) and the
/// lock is dropped, the Deployment left running what it rolled out: pausing it again
/// would strand a half rollout.
pub(super) fn resumed_outside(o: &Observed, outcome: Outcome, now: Timestamp) -> Decision {
    let ended = match &o.target.lock.canary {
        Some(c) if o.target.lock.is_failed() => format!("; revision {c} had failed its analysis"),
        Some(c) => format!("; the release of {c} ended"),
        None => String::new(),
    };
    let why = format!(
        "revision {} of {} rolled out without analysis: the Deployment was resumed under the release lock while \
         the webhook was down (its failurePolicy is Ignore){ended}",
        o.target.revision,
        o.id.deployment()
    );
    let status = Status {
        phase: Some(Phase::Failed),
        promoted: Some(o.target.revision.clone()),
        weight: 0,
        // Kept, as Flagger keeps it: the count that explains the ending.
        iterations: 0,
        applied: None,
        since: Some(now),
        message: Some(format!("{NOT_INTERCEPTED} {why}")),
        ..o.status.clone()
    };
    let mut decision = wind_up(status, true, why);
    // The lock last: until it is gone, the next look finds the resumed Deployment again.
    if let Decision::Act { actions, .. } = &mut decision {
        actions.push(Action::WriteLock(outcome));
    }
    decision
}

/// A template the webhook did not see, written under the lock of a paused Deployment
/// (the webhook was down, failurePolicy Ignore): the lock takes it as the webhook would
/// have, said in a warning Event, and the next look starts, refuses or cancels it.
pub(super) fn intercept_late(o: &Observed, outcome: Outcome) -> Decision {
    let what = match &outcome.transition {
        Transition::Refused { failed } => format!("revision {failed} already failed its analysis: no new release"),
        Transition::Cancelled { stable } => format!("it is the stable revision {stable}: the release is cancelled"),
        _ => format!("the analysis of revision {} starts", o.target.revision),
    };
    let message = format!(
        "{NOT_INTERCEPTED} revision {} of {} was written while the webhook was down (its failurePolicy is Ignore); \
         the Deployment stayed paused, nothing rolled out, and {what}",
        o.target.revision,
        o.id.deployment()
    );
    Decision::act(vec![Action::WriteLock(outcome), Action::Event { warning: true, message }])
}

/// The Canary is being deleted: a running release ends safely (traffic back to stable
/// first, then the generated objects go); the Deployment stays as it is, paused if a
/// release held it, with an Event on it that says how to resume (the Canary's Events go
/// with it). A Canary of its own gives its claim up and leaves its apex Service behind.
pub fn deleted(o: &Observed) -> Vec<Action> {
    let mut actions = vec![Action::RouteToStable, Action::DeleteGenerated];
    if !o.from_annotations {
        if o.protection == Protection::Protected {
            actions.push(Action::Unclaim);
        }
        actions.push(Action::KeepApex);
    }
    if o.route_weight.is_some() || o.canary.is_some() {
        let message = if o.from_annotations {
            format!(
                "Release of {} stopped: its Canary was deleted; traffic is back on the stable version, and the \
                 release starts over with the Canary made again from the annotations",
                o.id
            )
        } else {
            format!(
                "Release of {} ended: the Canary was deleted; traffic is back on the stable version. The \
                 Deployment stays paused until you resume it (kubectl rollout resume)",
                o.id
            )
        };
        actions.push(Action::TargetEvent { message });
    }
    actions
}

/// The end of a release: traffic to stable first, the generated objects gone, then the
/// status and the word; nothing to look at again.
fn wind_up(status: Status, warning: bool, message: String) -> Decision {
    Decision::Act {
        actions: vec![
            Action::RouteToStable,
            Action::DeleteGenerated,
            Action::SetStatus(status),
            Action::Event { warning, message },
        ],
        requeue: None,
    }
}
