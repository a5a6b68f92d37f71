//! The release lifecycle as a pure function: from what the controller observed of one
//! release and the clock, the next actions. The executor carries them out in order and
//! observes again; every decision is made from the Canary status, the lock on the
//! Deployment and the generated objects alone, so a crash at any point resumes.
//!
//! ```text
//!            lock held, new canary revision
//!  Initialized ─────────────────────────────▶ Progressing ──(weight 0, canary ready)──▶ Advance 10..max
//!      ▲                                         │   │ each interval: checks pass ▶ next step
//!      │ lock released / cancelled               │   │ check halts ▶ failedChecks+1 ─(threshold)─▶ rollback ▶ Failed
//!      │                                         │   └ at max, checks pass ▶ Promoting ─(rolled out)▶ Finalising ▶ Succeeded
//! ```
//!
//! Rollback: route to stable FIRST, then the canary objects go, then the lock records the
//! failed revision (the Deployment stays paused on it). Promotion: the lock is dropped and
//! the Deployment unpaused in ONE write, the native rolling update runs, and only then the
//! route goes to stable and the generated objects go.

mod endings;
mod messages;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use self::endings::*;
pub use self::messages::*;
pub use super::copies::canary_replicas;
use super::lock::{Lock, Outcome};
use super::plan::Plan;
use super::revision::Revision;
use crate::api::canary::Phase;

/// The Deployment released, as far as the lifecycle cares.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub lock: Lock,
    /// `apisix-canary.dev/promoted-revision`: the controller's last promotion.
    pub promoted: Option<Revision>,
    /// The revision of the pod template in the Deployment's spec.
    pub revision: Revision,
    pub paused: bool,
    pub replicas: i32,
    /// The native rollout of the spec is complete (observed, updated, available).
    pub rolled_out: bool,
    /// ReplicaSets of the Deployment that still have pods.
    pub active_replica_sets: usize,
}

/// The generated `<d>-canary` Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryPods {
    pub replicas: i32,
    pub ready: i32,
    /// Its template is the revision under analysis.
    pub current: bool,
}

/// What was read of one release.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `<deployment>.<namespace>`, as Flagger's messages name a release.
    pub id: String,
    /// The analysis, or why it cannot be read (invalid stored settings).
    pub plan: Result<Plan, String>,
    pub status: Status,
    pub target: Target,
    pub canary: Option<CanaryPods>,
    /// The generated route's canary weight, when the route exists.
    pub route_weight: Option<u32>,
    /// Why the release cannot run as configured (route rule, selectors, ...), if so.
    pub refusal: Option<String>,
    /// The analysis of this interval, when the executor was asked to run it.
    pub checks: Option<Vec<Check>>,
}

/// The release as the Canary status records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub phase: Option<Phase>,
    pub weight: u32,
    pub failed_checks: u32,
    pub iterations: u32,
    /// The revision under analysis (Flagger's `lastAppliedSpec`).
    pub applied: Option<Revision>,
    /// The revision last promoted, or adopted as stable.
    pub promoted: Option<Revision>,
    pub failed: Option<Revision>,
    /// When the status last changed: the clock of intervals and deadlines.
    pub since: Option<Timestamp>,
    /// The message of the current condition, so a refusal is reported once.
    pub message: Option<String>,
}

/// The result of one metric check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub metric: String,
    pub value: Option<f64>,
    /// `None` passes; otherwise Flagger's halt message.
    pub halt: Option<String>,
    /// The metric was not judged: too few requests of the canary yet (`minRequests`).
    /// Not a failed check; the weight holds. Why, in Flagger's style.
    pub wait: Option<String>,
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create or update `<d>-canary` and `<svc>-canary` at this size.
    ApplyCanary { replicas: i32 },
    /// Create or update the generated route with this canary weight; read it back.
    SetWeight(u32),
    /// Send all traffic to stable if the generated route exists (never creates it).
    RouteToStable,
    /// Delete the generated Deployment, Service and route.
    DeleteGenerated,
    /// Write this lock transition to the Deployment.
    WriteLock(Outcome),
    /// Write the status, with this condition message.
    SetStatus(Status),
    /// A Kubernetes Event; with `once`, recorded at most once for that key, so a step
    /// replayed after a crash is not announced twice.
    Event { warning: bool, message: String, once: Option<String> },
}

/// What the executor does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Carry out these actions in order, then observe again after `requeue`.
    Act { actions: Vec<Action>, requeue: Option<Duration> },
    /// Run the plan's checks and decide again with `Observed::checks` filled in.
    RunChecks,
}

/// How soon to look again while waiting on something the cluster does (pods, rollouts).
pub const POLL: Duration = Duration::from_secs(1);

impl Decision {
    fn act(actions: Vec<Action>) -> Self {
        Decision::Act { actions, requeue: Some(POLL) }
    }

    fn wait(after: Duration) -> Self {
        Decision::Act { actions: Vec::new(), requeue: Some(after) }
    }

    fn idle() -> Self {
        Decision::Act { actions: Vec::new(), requeue: None }
    }
}

/// The next step of one release. Pure.
pub fn decide(o: &Observed, now: Timestamp) -> Decision {
    let phase = o.status.phase;
    let lock = &o.target.lock;
    let busy =
        matches!(phase, Some(Phase::Progressing | Phase::Promoting | Phase::Finalising | Phase::WaitingPromotion));

    // A promotion this controller wrote: the lock is gone, the revision is named.
    if phase == Some(Phase::Progressing)
        && !lock.held()
        && o.target.promoted.is_some()
        && o.target.promoted == o.status.applied
    {
        return promoting(o, now);
    }
    match phase {
        Some(Phase::Promoting | Phase::Finalising) => return promoting(o, now),
        None => return initialize(o, now),
        _ => {}
    }
    if !lock.held() {
        if busy {
            return ended_outside(o, now);
        }
        return adopt_untracked(o, now);
    }
    let Some(canary) = lock.canary.clone() else { return Decision::idle() };
    // A rollback that stopped before its status: finish it.
    if lock.is_failed() {
        if busy && o.status.applied.as_ref() == Some(&canary) {
            return rolled_back(o, now);
        }
        return Decision::idle();
    }
    let plan = match &o.plan {
        Ok(plan) => plan,
        Err(why) => return refuse(o, now, &format!("invalid analysis settings: {why}")),
    };
    if plan.suspend {
        return suspended(o, now);
    }
    if o.status.applied.as_ref() != Some(&canary) || !busy {
        return start(o, plan, &canary, now);
    }
    progress(o, plan, now)
}

/// A Canary seen for the first time: record the stable revision and wait for releases.
fn initialize(o: &Observed, now: Timestamp) -> Decision {
    let stable = o.target.lock.stable.clone().unwrap_or_else(|| o.target.revision.clone());
    let status = Status {
        phase: Some(Phase::Initialized),
        promoted: Some(stable),
        failed: o.target.lock.failed.clone(),
        since: Some(now),
        message: Some(INITIALIZED.to_owned()),
        ..Status::default()
    };
    Decision::act(vec![
        Action::SetStatus(status),
        Action::Event { warning: false, message: format!("Initialization done! {}", o.id), once: None },
    ])
}

/// A new revision under the lock: refuse with a reason, or create the canary at weight 0.
fn start(o: &Observed, plan: &Plan, canary: &Revision, now: Timestamp) -> Decision {
    if let Some(why) = &o.refusal {
        return refuse(o, now, why);
    }
    if o.status.applied.as_ref() != Some(canary) && o.target.active_replica_sets > 1 && !busy_on(o, canary) {
        let why = format!(
            "{} has {} active ReplicaSets: a rollout was already in progress when the release began; let it finish \
             (kubectl rollout status) and apply the change again",
            o.id, o.target.active_replica_sets
        );
        return refuse(o, now, &why);
    }
    if plan.skip_analysis {
        return promote(o, canary, now, format!("Promotion completed! Canary analysis was skipped for {}", o.id));
    }
    let restarted = matches!(o.status.phase, Some(Phase::Progressing | Phase::WaitingPromotion))
        && o.status.applied.as_ref().is_some_and(|a| a != canary);
    let message = if restarted {
        format!("New revision detected! Restarting analysis for {}", o.id)
    } else {
        format!("New revision detected! Scaling up {}", o.id)
    };
    let replicas = canary_replicas(o.target.replicas, plan.steps.first().copied().unwrap_or(plan.max_weight));
    let status = Status {
        phase: Some(Phase::Progressing),
        weight: 0,
        failed_checks: 0,
        iterations: 0,
        applied: Some(canary.clone()),
        since: Some(now),
        message: Some(PROGRESSING.to_owned()),
        ..o.status.clone()
    };
    let mut actions = Vec::new();
    if restarted {
        actions.push(Action::RouteToStable);
    }
    actions.push(Action::ApplyCanary { replicas });
    actions.push(Action::SetWeight(0));
    actions.push(Action::SetStatus(status));
    actions.push(Action::Event { warning: false, message, once: None });
    Decision::act(actions)
}

fn busy_on(o: &Observed, canary: &Revision) -> bool {
    o.status.applied.as_ref() == Some(canary)
}

/// The analysis loop of a running release.
fn progress(o: &Observed, plan: &Plan, now: Timestamp) -> Decision {
    if let Some(why) = &o.refusal {
        return rollback(o, now, Some(why.clone()));
    }
    let waited = elapsed(o.status.since, now);
    let ready = o.canary.is_some_and(|c| c.current && c.ready >= c.replicas && c.replicas > 0);
    let weight = o.route_weight.unwrap_or(o.status.weight);
    if !ready {
        let why = not_ready(o);
        if o.status.weight == 0 && o.status.iterations == 0 && waited >= plan.progress_deadline {
            return rollback(o, now, Some(format!("progress deadline exceeded {why}")));
        }
        // Said while the release waits to start; a scale-up between steps waits quietly.
        let mut actions = Vec::new();
        if o.status.weight == 0 {
            actions.push(Action::Event { warning: true, message: why, once: None });
        }
        if o.canary.is_none() || o.canary.is_some_and(|c| !c.current) {
            let next = plan.next_weight(weight).unwrap_or(plan.max_weight);
            actions.insert(0, Action::ApplyCanary { replicas: canary_replicas(o.target.replicas, next.max(weight)) });
        }
        return Decision::Act { actions, requeue: Some(POLL) };
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
    // The first step needs no metrics: there is no canary traffic yet.
    if o.status.weight == 0 && o.status.iterations == 0 {
        let mut d = advance(o, plan, weight, now);
        if let Decision::Act { actions, .. } = &mut d {
            let message = format!("Starting canary analysis for {}", o.id);
            actions.insert(0, Action::Event { warning: false, message, once: None });
        }
        return d;
    }
    if waited < plan.interval {
        return Decision::wait(plan.interval - waited);
    }
    let Some(checks) = &o.checks else { return Decision::RunChecks };
    let halts: Vec<&str> = checks.iter().filter_map(|c| c.halt.as_deref()).collect();
    if !halts.is_empty() {
        let status = Status {
            failed_checks: o.status.failed_checks + 1,
            iterations: o.status.iterations + 1,
            since: Some(now),
            ..o.status.clone()
        };
        let mut actions = vec![Action::SetStatus(status)];
        actions.extend(halts.iter().map(|h| Action::Event { warning: true, message: (*h).to_owned(), once: None }));
        return Decision::act(actions);
    }
    if plan.at_max(weight) {
        let canary = o.status.applied.clone().unwrap_or_else(|| o.target.revision.clone());
        let message = format!("Promoting {}: the rolling update to revision {canary} resumes", o.id);
        return promote(o, &canary, now, message);
    }
    advance(o, plan, weight, now)
}

/// Moves to the next weight: scales the canary up first, and moves traffic once the
/// larger canary is ready.
fn advance(o: &Observed, plan: &Plan, weight: u32, now: Timestamp) -> Decision {
    let Some(next) = plan.next_weight(weight) else {
        return Decision::wait(plan.interval);
    };
    let needed = canary_replicas(o.target.replicas, next);
    let have = o.canary.map_or(0, |c| c.replicas);
    if have < needed {
        // Scaled before the weight moves; the weight moves once they are ready.
        return Decision::act(vec![Action::ApplyCanary { replicas: needed }]);
    }
    let status = Status { weight: next, iterations: o.status.iterations + 1, since: Some(now), ..o.status.clone() };
    // Announced before the status records it: a replay after a crash in between finds
    // the Event already there (`once`), so each step is announced exactly once.
    Decision::Act {
        actions: vec![Action::SetWeight(next), advanced(o, next), Action::SetStatus(status)],
        requeue: Some(plan.interval),
    }
}

/// "Advance podinfo.test canary weight 20", once per revision and weight.
fn advanced(o: &Observed, weight: u32) -> Action {
    let revision = o.status.applied.as_ref().map(Revision::as_str).unwrap_or_default();
    Action::Event {
        warning: false,
        message: format!("Advance {} canary weight {weight}", o.id),
        once: Some(format!("advance-{revision}-{weight}")),
    }
}

/// Flagger's readiness message for the canary Deployment.
fn not_ready(o: &Observed) -> String {
    let (ready, replicas) = o.canary.map_or((0, 1), |c| (c.ready, c.replicas.max(1)));
    let (name, ns) = o.id.split_once('.').unwrap_or((&o.id, ""));
    format!(
        "canary deployment {name}-canary.{ns} not ready: waiting for rollout to finish: {ready} of {replicas} \
         (readyThreshold 100%) updated replicas are available"
    )
}

fn elapsed(since: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(since) = since else { return Duration::MAX };
    let d: SignedDuration = now.duration_since(since);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}
