//! Before any release: the Canary takes its target over, its apex Service exists, and
//! only then is it `Initialized`. A Canary is never reported initialized for a
//! Deployment whose releases would slip past it; until it can be, it stays
//! `Initializing` and its condition and a Warning Event say why.

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::annotations::CANARY;

/// How soon a Canary that cannot initialize looks again: a change of its Deployment
/// wakes it at once, one of the user's route or Service (not watched) at the next look.
pub(super) const RETRY_INIT: Duration = Duration::from_secs(10);

/// What comes before every decision: the target opted in for this Canary, and the
/// apex Service as `spec.service` says. `None` when both already hold.
pub(super) fn prepare(o: &Observed) -> Option<Decision> {
    if o.protection == Protection::Claim {
        // The webhook intercepts its releases from this write on; the next look decides.
        let message = format!(
            "Protecting {}: {CANARY}={} written, its releases are intercepted for this Canary",
            o.id.deployment(),
            o.id.canary
        );
        return Some(Decision::act(vec![Action::Claim, Action::Event { warning: false, message }]));
    }
    // Only a protected target's Service is ours to make.
    if o.apex == Apex::Stale && o.protection == Protection::Protected {
        let service = o.plan.as_ref().ok().and_then(|p| p.service.clone()).unwrap_or_else(|| o.id.target.clone());
        let message = format!("Service {service}.{} applied from spec.service", o.id.namespace);
        return Some(Decision::act(vec![Action::ApplyApex, Action::Event { warning: false, message }]));
    }
    None
}

/// A Canary seen for the first time, or that could not initialize before: record the
/// stable revision and wait for releases, once nothing stands in the way.
pub(super) fn initialize(o: &Observed, now: Timestamp) -> Decision {
    if let Some(why) = obstacle(o) {
        return uninitialized(o, now, &why);
    }
    let stable = o.target.lock.stable.clone().unwrap_or_else(|| o.target.revision.clone());
    let status = Status {
        phase: Some(Phase::Initialized),
        promoted: Some(stable),
        failed: o.target.lock.failed.clone().or_else(|| o.status.failed.clone()),
        since: Some(now),
        message: Some(INITIALIZED.to_owned()),
        ..Status::default()
    };
    Decision::act(vec![
        Action::SetStatus(status),
        Action::Event { warning: false, message: format!("Initialization done! {}", o.id) },
        alert(Severity::Info, "New Deployment detected, initialization completed."),
    ])
}

/// A Canary between releases whose target is no longer protected for it (taken by
/// another Canary, opted in by annotations, deleted): back to `Initializing`, saying
/// why. During a release the lock keeps the Deployment paused and the release ends
/// by its own rules.
pub(super) fn protect(o: &Observed, now: Timestamp, busy: bool) -> Option<Decision> {
    match &o.protection {
        Protection::Unprotected(why) if !busy => Some(uninitialized(o, now, why)),
        _ => None,
    }
}

/// Why the Canary cannot be initialized yet, if so: its target is not protected, or a
/// release could not run (no route rule, no Service, a selector clash).
fn obstacle(o: &Observed) -> Option<String> {
    match &o.protection {
        Protection::Unprotected(why) => Some(why.clone()),
        Protection::Claim => Some(format!("Deployment {} is not opted in yet", o.id.target)),
        Protection::Protected => o.refusal.clone(),
    }
}

/// `Initializing`, with why in the condition and a Warning Event, each said once.
fn uninitialized(o: &Observed, now: Timestamp, why: &str) -> Decision {
    let message = format!("{NOT_INITIALIZED} {why}");
    if o.status.phase == Some(Phase::Initializing) && o.status.message.as_deref() == Some(&message) {
        return Decision::wait(RETRY_INIT);
    }
    let status = Status {
        phase: Some(Phase::Initializing),
        weight: 0,
        since: Some(now),
        message: Some(message),
        ..o.status.clone()
    };
    let event = format!("Halt {} initialization: {why}", o.id);
    Decision::Act {
        actions: vec![Action::SetStatus(status), Action::Event { warning: true, message: event }],
        requeue: Some(RETRY_INIT),
    }
}
