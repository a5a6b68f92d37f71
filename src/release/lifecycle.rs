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
//!      │ confirm-rollout says no ─▶ Waiting          └ confirm-promotion says no ▶ WaitingPromotion (checks go on)
//! ```
//!
//! What only the outside world knows (webhook answers, metrics) is asked for: the
//! decision is then [`Decision::Call`] or [`Decision::RunChecks`], and `decide` runs again
//! with the answers in [`Observed::hooks`] or [`Observed::checks`]. Gates and hooks are
//! in `gates.rs`, the analysis loop in `steps.rs`, the ends in `endings.rs`.
//!
//! Rollback: route to stable FIRST, then the canary objects go, then the lock records the
//! failed revision (the Deployment stays paused on it). Promotion: the lock is dropped and
//! the Deployment unpaused in ONE write, the native rolling update runs, and only then the
//! route goes to stable and the generated objects go.

/// The answer of [`gates::hear`], or return the decision that asks for it.
macro_rules! heard {
    ($heard:expr) => {
        match $heard {
            Ok(heard) => heard,
            Err(ask) => return ask,
        }
    };
}

mod endings;
mod gates;
mod initial;
mod messages;
mod steps;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

pub use self::endings::deleted;
use self::endings::*;
use self::gates::*;
use self::initial::*;
pub use self::messages::*;
pub use self::steps::SEQUENTIAL_EVERY;
use self::steps::*;
pub use super::copies::canary_replicas;
use super::lock::{Lock, Outcome};
use super::plan::{HookKind, Plan, Severity};
use super::revision::Revision;
use crate::api::annotations::{ABORT, PROMOTE, PROMOTE_NOW};
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
    /// ReplicaSets of the Deployment that still have pods. Counted only while a release
    /// may start (the lock names a canary revision the status has not applied), the one
    /// decision that reads it; 0 otherwise.
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

/// Who a release is: its Canary, whose `name.namespace` every message says as
/// Flagger's do, and the Deployment it releases. Kept apart, never split from a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub canary: String,
    pub namespace: String,
    /// The targetRef's Deployment.
    pub target: String,
}

impl Release {
    /// The Deployment as Flagger's messages name one: `<name>.<namespace>`.
    pub fn deployment(&self) -> String {
        format!("{}.{}", self.target, self.namespace)
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.canary, self.namespace)
    }
}

/// Whether the webhook intercepts the target's releases for this Canary: what the
/// Deployment's opt-in annotations say (see `release::claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Its opt-in names this Canary (or, in annotation mode, is the annotations').
    Protected,
    /// Nothing opts the Deployment in: the Canary takes it over, as Flagger's does, by
    /// writing `apisix-canary.dev/canary` under our field manager.
    Claim,
    /// No release of it could be intercepted for this Canary; why, in the status' words.
    Unprotected(String),
}

/// The Service in front of the target, when the Canary may generate it (Flagger's apex
/// Service, from `spec.service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apex {
    /// The Service exists and is not ours to change, or nothing asks to generate it.
    Kept,
    /// Ours, as `spec.service` says.
    Current,
    /// Missing, or ours but no longer as `spec.service` says: (re)written.
    Stale,
}

/// What was read of one release.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The Canary and its Deployment; shown as `<canary>.<namespace>`, as Flagger's
    /// messages name a release.
    pub id: Release,
    /// Whether the target's releases reach this Canary.
    pub protection: Protection,
    /// The Canary was made from the Deployment's annotations (annotation mode).
    pub from_annotations: bool,
    /// The apex Service, when `spec.service` asks for it.
    pub apex: Apex,
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
    /// The Prometheus the checks query (`analysis.metricsServer` or the controller's).
    pub metrics_server: Option<String>,
    /// The sequential test, when the executor was asked to run it.
    pub tested: Option<Vec<Tested>>,
    /// What the webhooks of each kind answered, when the executor was asked to call them.
    pub hooks: BTreeMap<HookKind, Vec<HookResult>>,
    /// What an operator asked of the release (annotations on the Canary).
    pub requests: Requests,
}

/// An operator's requests, each naming the revision it is about, so a request left
/// behind never acts on a later release.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests {
    /// `apisix-canary.dev/abort`: roll back now.
    pub abort: Option<Revision>,
    /// `apisix-canary.dev/promote`: promote once the current check passes.
    pub promote: Option<Revision>,
    /// `apisix-canary.dev/promote-now`: promote now, without a check.
    pub promote_now: Option<Revision>,
}

/// One webhook's answer: its name, and `Err` with Flagger's `%v` (the response body or
/// the transport error) unless it answered with success.
pub type HookResult = (String, Result<(), String>);

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
    /// Since when the weight has held waiting for canary traffic (`minRequests`).
    pub held_since: Option<Timestamp>,
    /// When the analysis of `applied` started (its first step announced).
    pub started: Option<Timestamp>,
    /// The message of the current condition, so a refusal is reported once.
    pub message: Option<String>,
    /// The metric checks of this release (or the last), oldest first: the record every
    /// view reads. At most `MAX_CHECKS`.
    pub checks: Vec<Measured>,
    /// The Prometheus the checks queried.
    pub metrics_server: Option<String>,
}

/// A check as the status records it: when it was judged, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub at: Timestamp,
    pub check: Check,
    /// The sequential test's evidence on this metric then: (ln E, ln 1/alpha).
    pub evidence: Option<(f64, f64)>,
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

/// The sequential test of one built-in metric (`judge: sequential`) on the canary's
/// requests since its first traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Tested {
    pub metric: String,
    /// The canary's share of failures (5xx, or slower than the bound), in percent;
    /// `None` before any request.
    pub share: Option<f64>,
    pub requests: u64,
    /// The log of the test's evidence against a healthy canary.
    pub log_e: f64,
    /// The log of the evidence at which it rejects: ln(1 / alpha).
    pub boundary: f64,
    /// The test rejected a healthy canary: the rollback's reason, with the evidence.
    pub rejected: Option<String>,
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Opt the target in for this Canary: `apisix-canary.dev/canary` on the Deployment.
    Claim,
    /// Give the claim up: the opt-in goes unless someone else wrote it too.
    Unclaim,
    /// Remove our owner reference from the apex Service, so it outlives the Canary.
    KeepApex,
    /// Create or update the apex Service from `spec.service`.
    ApplyApex,
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
    /// A Kubernetes Event on the Canary, also posted to the `event` webhooks: a report
    /// of what the writes before it did, best effort. Nothing depends on it.
    Event { warning: bool, message: String },
    /// A warning Event on the Deployment, for when the Canary and its Events are going.
    TargetEvent { message: String },
    /// Call the webhooks of this kind with this phase, reporting each answer as an
    /// Event (`post-rollout`); what they say changes nothing.
    RunHooks(HookKind, Phase),
    /// Remove an operator's request (this annotation of the Canary) once acted on, so a
    /// retry of the same revision is not caught by it again.
    Consume(&'static str),
    /// Post to the plan's alert providers that take this severity. Always last in a
    /// list, so it is sent only once the state it reports is written.
    Alert { severity: Severity, message: String, fields: Vec<(String, String)> },
}

/// What the executor does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Carry out these actions in order, then observe again after `requeue`.
    Act { actions: Vec<Action>, requeue: Option<Duration> },
    /// Run the plan's checks and decide again with `Observed::checks` filled in.
    RunChecks,
    /// Run the sequential test and decide again with `Observed::tested` filled in.
    RunTest,
    /// Call every webhook of this kind with this phase, and decide again with
    /// `Observed::hooks` holding their answers.
    Call(HookKind, Phase),
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

/// Whether a release holds the Deployment in this phase: it is analysed, held at a gate,
/// or promoted. The one list of them.
pub fn holds_release(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(Phase::Progressing | Phase::Waiting | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising)
    )
}

/// The next step of one release. Pure. Its actions write first and report after: an
/// Event, a hook told of it or an alert says what the writes before it made durable,
/// so nothing is said of a step that did not land.
///
/// The checks it was given are recorded in every status it writes (one is written if
/// none was): what each view of the release shows is what was judged.
pub fn decide(o: &Observed, now: Timestamp) -> Decision {
    match decide_step(o, now) {
        Decision::Act { actions, requeue } => {
            let (mut writes, reports): (Vec<_>, Vec<_>) = actions.into_iter().partition(|a| !a.is_report());
            let rejections = o.tested.iter().flatten().filter_map(|t| {
                let halt = t.rejected.as_ref()?;
                let halt = Some(format!("Rolling back {}: {}", o.id, halt));
                Some(Check { metric: t.metric.clone(), value: t.share, halt, wait: None })
            });
            let checks: Vec<Check> = o.checks.iter().flatten().cloned().chain(rejections).collect();
            if o.checks.is_some() || !checks.is_empty() {
                record(o, &checks, now, &mut writes);
            }
            writes.extend(reports);
            Decision::Act { actions: writes, requeue }
        }
        asking => asking,
    }
}

/// Appends `checks`, judged at `now`, to the status each of `writes` sets, or to the
/// status as read in a write of its own.
fn record(o: &Observed, checks: &[Check], now: Timestamp, writes: &mut Vec<Action>) {
    let add = |status: &mut Status| {
        let evidence =
            |metric: &str| o.tested.iter().flatten().find(|t| t.metric == metric).map(|t| (t.log_e, t.boundary));
        status.checks.extend(checks.iter().map(|c| Measured {
            at: now,
            check: c.clone(),
            evidence: evidence(&c.metric),
        }));
        let over = status.checks.len().saturating_sub(crate::api::canary::MAX_CHECKS);
        status.checks.drain(..over);
        status.metrics_server.clone_from(&o.metrics_server);
    };
    let mut wrote = false;
    for action in writes.iter_mut() {
        if let Action::SetStatus(status) = action {
            add(status);
            wrote = true;
        }
    }
    if !wrote {
        let mut status = o.status.clone();
        add(&mut status);
        writes.push(Action::SetStatus(status));
    }
}

impl Action {
    /// An Event, a post-rollout hook or an alert: what tells of the writes.
    pub fn is_report(&self) -> bool {
        matches!(self, Action::Event { .. } | Action::TargetEvent { .. } | Action::RunHooks(..) | Action::Alert { .. })
    }
}

fn decide_step(o: &Observed, now: Timestamp) -> Decision {
    if let Some(first) = prepare(o) {
        return first;
    }
    let phase = o.status.phase;
    let lock = &o.target.lock;
    // Waiting for approval holds a release too, though nothing of it runs yet: said apart.
    let waiting = phase == Some(Phase::Waiting);
    let busy = holds_release(phase) && !waiting;

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
        None | Some(Phase::Initializing) => return initialize(o, now),
        _ => {}
    }
    if let Some(d) = protect(o, now, holds_release(phase)) {
        return d;
    }
    if !lock.held() {
        if holds_release(phase) {
            return ended_outside(o, now);
        }
        return adopt_untracked(o, now);
    }
    // Resumed under the lock by a write the webhook did not see: its template rolled out.
    if !o.target.paused
        && let Some(outcome) = lock.resumed()
    {
        return resumed_outside(o, outcome, now);
    }
    // A template written while the webhook was down, on a Deployment still paused under
    // the lock: nothing rolled out; do what the webhook would have done.
    if o.target.paused
        && let Some(outcome) = lock.intercept(&o.target.revision)
    {
        return intercept_late(o, outcome);
    }
    let Some(canary) = lock.canary.clone() else { return Decision::idle() };
    // A rollback that stopped before its status: finish it.
    if lock.is_failed() {
        if (busy && o.status.applied.as_ref() == Some(&canary)) || waiting {
            return rolled_back(o, now);
        }
        return Decision::idle();
    }
    // An operator's word goes before the analysis, a suspension included.
    if holds_release(phase) {
        if o.requests.abort.as_ref() == Some(&canary) {
            return aborted(o, now);
        }
        if o.requests.promote_now.as_ref() == Some(&canary) {
            let message = format!("Promoting {} on request ({PROMOTE_NOW}), without analysis", o.id);
            return consuming(promote(o, &canary, now, message), PROMOTE_NOW);
        }
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

/// A new revision under the lock: refuse with a reason, or create the canary at weight 0.
fn start(o: &Observed, plan: &Plan, canary: &Revision, now: Timestamp) -> Decision {
    if let Some(why) = &o.refusal {
        return refuse(o, now, why);
    }
    if o.status.applied.as_ref() != Some(canary) && o.target.active_replica_sets > 1 && !busy_on(o, canary) {
        let why = format!(
            "{} has {} active ReplicaSets: a rollout was already in progress when the release began; let it finish \
             (kubectl rollout status) and apply the change again",
            o.id.deployment(),
            o.target.active_replica_sets
        );
        return refuse(o, now, &why);
    }
    let phase = o.status.phase.unwrap_or(Phase::Initialized);
    // A release held at its gate can still be rolled back by hand (Flagger #1432).
    if phase == Phase::Waiting
        && let Some(hook) = heard!(manual_rollback(o, plan, phase))
    {
        return rollback_by_hand(o, now, hook);
    }
    // Every new revision asks for approval, a restart too (Flagger asks only once, #30).
    let approved = match heard!(hear(o, plan, HookKind::ConfirmRollout, phase)) {
        Heard::Failed { hook, .. } => return wait_for_approval(o, plan, now, hook),
        Heard::Passed(hooks) => passed(hooks, "Confirm-rollout"),
    };
    if plan.skip_analysis {
        let message = format!("Promotion completed! Canary analysis was skipped for {}", o.id);
        let Decision::Act { mut actions, requeue } = promote(o, canary, now, message) else { unreachable!() };
        actions.splice(0..0, approved);
        return Decision::Act { actions, requeue };
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
        held_since: None,
        started: None,
        message: Some(PROGRESSING.to_owned()),
        checks: Vec::new(),
        ..o.status.clone()
    };
    let mut actions = approved;
    // Traffic off any canary first (a restart's, or a route a failed cleanup left): a
    // Progressing status beside a routed canary would be read as a step taken.
    if restarted || o.route_weight.is_some_and(|w| w > 0) {
        actions.push(Action::RouteToStable);
    }
    // Then the status, so the paused Deployment is explained at once even when a write
    // below fails: the analysis loop makes the canary and the route it finds missing.
    actions.push(Action::SetStatus(status));
    actions.push(Action::Event { warning: false, message });
    actions.push(Action::Alert {
        severity: Severity::Info,
        message: PROGRESSING.to_owned(),
        fields: release_fields(o, plan),
    });
    actions.push(Action::ApplyCanary { replicas });
    actions.push(Action::SetWeight(0));
    Decision::act(actions)
}

/// What Flagger's "New revision detected" alert lists about the release.
fn release_fields(o: &Observed, plan: &Plan) -> Vec<(String, String)> {
    let step = plan.steps.first().copied().unwrap_or(plan.max_weight);
    vec![
        ("Target".to_owned(), format!("Deployment/{}", o.id.deployment())),
        ("Failed checks threshold".to_owned(), plan.threshold.to_string()),
        ("Progress deadline".to_owned(), format!("{}s", plan.progress_deadline.as_secs())),
        ("Traffic routing".to_owned(), format!("Weight step: {step} max: {}", plan.max_weight)),
    ]
}

/// `decision`, then the request `key` removed (before a final alert).
fn consuming(decision: Decision, key: &'static str) -> Decision {
    let Decision::Act { mut actions, requeue } = decision else { return decision };
    let at = actions.iter().rposition(|a| !matches!(a, Action::Alert { .. })).map_or(0, |i| i + 1);
    actions.insert(at, Action::Consume(key));
    Decision::Act { actions, requeue }
}

/// An alert without fields.
fn alert(severity: Severity, message: impl Into<String>) -> Action {
    Action::Alert { severity, message: message.into(), fields: Vec::new() }
}

fn busy_on(o: &Observed, canary: &Revision) -> bool {
    o.status.applied.as_ref() == Some(canary)
}
