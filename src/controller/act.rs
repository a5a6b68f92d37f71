//! One reconcile of a release: observe, decide, carry out the actions in order. The
//! first failed write stops the rest; the next reconcile observes and decides again,
//! which is how every partial step resumes.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Api, Resource, ResourceExt};

mod writes;

use super::hooks::{self, Subject};
use super::observe::{COPY_OF, Objects, observe};
use super::{
    Context, Error, MANAGER,
    checks::{checks, sequential},
};
use crate::api::canary::Phase;
use crate::api::canary::v1beta1::Canary;
use crate::lease::Fence;
use crate::release::copies;
use crate::release::lifecycle::{Action, Decision, Observed, decide};
use crate::release::plan::{HookKind, Plan};
use crate::release::status;
use crate::route;

/// How long to wait when nothing is due: watches wake us earlier on any change.
const IDLE: Duration = Duration::from_secs(300);

pub async fn reconcile(canary: &Canary, ctx: &Context, fence: &Fence) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    let key = tick_key(canary);
    // Due before this reconcile began: a tick (not a watch event ahead of time).
    let due = ctx.ticks.take(&key).filter(|due| *due <= started);
    // What this reconcile reads covers every change seen so far.
    ctx.echoes.begin(&key);
    // A due step of a running analysis will check its metrics: the canary's endpoints
    // are listed beside the reads.
    let phase = canary.status.as_ref().and_then(|s| s.phase);
    let endpoints = due.is_some() && matches!(phase, Some(Phase::Progressing | Phase::WaitingPromotion));
    let (mut observed, objects) = observe(canary, ctx, endpoints).await?;
    // The Prometheus the checks query, recorded beside their values.
    let serve_prometheus = || ctx.config.prometheus_url.clone();
    observed.metrics_server =
        observed.plan.as_ref().ok().map(|p| p.metrics_server.clone().unwrap_or_else(serve_prometheus));
    if let Ok(plan) = &observed.plan {
        ctx.metrics.observe_info(&observed.id, &plan.route);
    }
    tracing::debug!(canary = %canary.name_any(), elapsed_us = started.elapsed().as_micros() as u64, "observed");
    let mut now = Timestamp::now();
    let who = Subject::of(&canary.name_any(), &objects.namespace, &observed);
    let mut decision = decide(&observed, now);
    // Each answer is asked for once: a decision that asks again is a bug, not a loop.
    for _ in 0..=HookKind::ALL.len() + 1 {
        let plan = match &decision {
            Decision::Act { .. } => break,
            _ => observed.plan.clone().map_err(Error::Invalid)?,
        };
        match decision {
            Decision::RunChecks if observed.checks.is_none() => {
                observed.checks = Some(checks(&plan, &observed, &objects, ctx).await);
            }
            Decision::RunTest if observed.tested.is_none() => {
                observed.tested = Some(sequential(&plan, &observed, &objects, ctx).await);
            }
            Decision::Call(kind, phase) if !observed.hooks.contains_key(&kind) => {
                fenced(fence)?;
                let answers = hooks::call(ctx, &plan, &who, kind, phase).await;
                observed.hooks.insert(kind, answers);
            }
            asked => return Err(Error::Invalid(format!("the lifecycle asked twice for {asked:?}"))),
        }
        // A slow answer (a hung hook, Prometheus) may come after another replica took
        // over: nothing decided on it is carried out then.
        fenced(fence)?;
        // The clock of the step starts when it is written, not before its checks ran
        // (they may take seconds): the next step comes a whole interval after this one.
        now = Timestamp::now();
        decision = decide(&observed, now);
    }
    let Decision::Act { actions, requeue } = decision else {
        return Err(Error::Invalid("the lifecycle kept asking for answers".into()));
    };
    let mut run = Run::new(canary, ctx, fence, objects, &observed, who);
    let skipped = observed.plan.as_ref().is_ok_and(|p| p.skip_analysis);
    for action in &actions {
        run.act(action).await?;
        tracing::debug!(canary = %observed.id, elapsed_us = started.elapsed().as_micros() as u64, action = ?action, "acted");
        if let Action::SetStatus(new) = action {
            ctx.metrics.observe_status(&observed.id, &observed.status, new, skipped);
        }
    }
    if let Some(due) = due.filter(|_| !actions.is_empty()) {
        ctx.metrics.observe_tick_lag(due.elapsed());
        tracing::debug!(canary = %observed.id, lag_ms = due.elapsed().as_millis() as u64, "tick written");
    }
    if let Some(after) = requeue {
        if let Some(written) = run.settled(&actions, now) {
            ctx.echoes.settle(&key, canary.resource_version().unwrap_or_default(), written);
        }
        ctx.ticks.schedule(key, std::time::Instant::now() + after);
    }
    Ok(Requeue::requeue(requeue.unwrap_or(IDLE)))
}

/// `Err(Fenced)` once the leadership this reconcile decided under has ended.
fn fenced(fence: &Fence) -> Result<(), Error> {
    if fence.holds() { Ok(()) } else { Err(Error::Fenced) }
}

/// The Canary's `namespace/name`, under which its next step is scheduled.
fn tick_key(canary: &Canary) -> String {
    super::key(canary.namespace().as_deref(), &canary.name_any())
}

/// The Canary is being deleted: what `lifecycle::deleted` says, then it is forgotten.
pub async fn cleanup(canary: &Canary, ctx: &Context, fence: &Fence) -> Result<Requeue, Error> {
    // No step falls due any more.
    let key = tick_key(canary);
    ctx.ticks.take(&key);
    ctx.echoes.forget(&key);
    let (observed, objects) = observe(canary, ctx, false).await?;
    let who = Subject::of(&canary.name_any(), &objects.namespace, &observed);
    let mut run = Run::new(canary, ctx, fence, objects, &observed, who);
    for action in crate::release::lifecycle::deleted(&observed) {
        run.act(&action).await?;
    }
    ctx.index.forget(&run.objects.namespace, &canary.name_any());
    Ok(Requeue::await_change())
}

struct Run<'a> {
    canary: &'a Canary,
    ctx: &'a Context,
    /// Checked before every write: a replica whose term ended writes nothing more.
    fence: &'a Fence,
    objects: Objects,
    observed: &'a Observed,
    /// Whom webhook payloads and alerts name.
    who: Subject,
    /// The phase as last written: what Events posted to `event` hooks carry.
    phase: Phase,
    /// The Canary as our last write of it returned it.
    written: Option<Canary>,
}

impl<'a> Run<'a> {
    fn new(
        canary: &'a Canary,
        ctx: &'a Context,
        fence: &'a Fence,
        objects: Objects,
        observed: &'a Observed,
        who: Subject,
    ) -> Self {
        let phase = observed.status.phase.unwrap_or(Phase::Initializing);
        Self { canary, ctx, fence, objects, observed, who, phase, written: None }
    }

    /// The Canary as this reconcile last read or wrote it: the version its writes are
    /// preconditioned on.
    fn canary_version(&self) -> Option<String> {
        self.written.as_ref().unwrap_or(self.canary).resource_version()
    }

    fn plan(&self) -> Option<&Plan> {
        self.observed.plan.as_ref().ok()
    }

    fn ns(&self) -> &str {
        &self.objects.namespace
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.ctx.client.clone(), self.ns())
    }

    fn owner(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        self.canary.controller_owner_ref(&()).unwrap_or_default()
    }

    fn canary_service_name(&self) -> String {
        copies::canary_service_name(&self.objects.service_name)
    }

    async fn act(&mut self, action: &Action) -> Result<(), Error> {
        fenced(self.fence)?;
        match action {
            Action::Claim => self.claim().await,
            Action::Unclaim => self.unclaim().await,
            Action::KeepApex => self.keep_apex().await,
            Action::ApplyApex => self.apply_apex().await,
            Action::TargetEvent { message } => {
                // On the Deployment: the Canary and its Events are going away.
                let target = self.objects.target.as_ref().map(|d| d.object_ref(&()));
                let object = target.unwrap_or_else(|| self.canary.object_ref(&()));
                tracing::warn!(canary = %self.observed.id, msg = message.as_str(), "{message}");
                self.ctx.events.report(object, true, message, self.fence);
                Ok(())
            }
            Action::ApplyCanary { replicas } => self.apply_canary(*replicas).await,
            Action::SetWeight(weight) => self.set_weight(*weight, true).await,
            Action::RouteToStable => self.set_weight(0, false).await,
            Action::DeleteGenerated => self.delete_generated().await,
            Action::WriteLock(outcome) => self.write_lock(outcome).await,
            Action::SetStatus(s) => {
                let mut patch = serde_json::json!({"status": status::to_canary(s, self.canary.status.as_ref())});
                // A merge patch removes a field only when it says null.
                if s.held_since.is_none() {
                    patch["status"]["heldSince"] = serde_json::Value::Null;
                }
                if s.started.is_none() {
                    patch["status"]["analysisStarted"] = serde_json::Value::Null;
                }
                // A release starts with no check: the last one's would stay otherwise.
                if s.checks.is_empty() {
                    patch["status"]["checks"] = serde_json::Value::Null;
                }
                // Written over the status it was decided on, or not at all: a decision on
                // an older status (a replica that lost its term) gets a conflict.
                patch["metadata"] = serde_json::json!({"resourceVersion": self.canary_version()});
                let api: Api<Canary> = self.api();
                let written = api
                    .patch_status(&self.canary.name_any(), &params(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("writing the status of Canary {}", self.observed.id)))?;
                self.written = Some(written);
                self.phase = s.phase.unwrap_or(self.phase);
                Ok(())
            }
            Action::Event { warning, message } => {
                self.event(*warning, message).await;
                Ok(())
            }
            Action::RunHooks(kind, phase) => {
                let Some(plan) = self.plan() else { return Ok(()) };
                let answers = hooks::call(self.ctx, plan, &self.who, *kind, *phase).await;
                for (warning, message) in hooks::reported(*kind, &answers) {
                    self.event(warning, &message).await;
                }
                Ok(())
            }
            Action::Consume(key) => {
                let version = self.canary_version();
                let patch = serde_json::json!({"metadata": {"annotations": {*key: null}, "resourceVersion": version}});
                let api: Api<Canary> = self.api();
                let written = api
                    .patch(&self.canary.name_any(), &params(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("removing {key} from Canary {}", self.observed.id)))?;
                self.written = Some(written);
                Ok(())
            }
            Action::Alert { severity, message, fields } => {
                if let Some(plan) = self.plan() {
                    let target = &self.canary.spec.target_ref.name;
                    hooks::alert(self.ctx, plan, &self.who, target, self.phase, *severity, message, fields);
                }
                Ok(())
            }
        }
    }

    /// The Canary after this reconcile's writes, when they leave nothing to do before
    /// the next step: `actions` wrote only the route's weight, the
    /// status, Events and hooks, nobody changed the Canary in between, and the lifecycle,
    /// deciding again on what was written, only waits. Its watch echoes need no reconcile.
    fn settled(&self, actions: &[Action], now: Timestamp) -> Option<Canary> {
        let simple = actions.iter().all(|a| {
            matches!(
                a,
                Action::SetWeight(_)
                    | Action::SetStatus(_)
                    | Action::Event { .. }
                    | Action::RunHooks(..)
                    | Action::Alert { .. }
            )
        });
        if !simple {
            return None;
        }
        let (read, after) = (self.canary, self.written.as_ref().unwrap_or(self.canary));
        let untouched = after.spec == read.spec
            && after.metadata.generation == read.metadata.generation
            && after.metadata.annotations == read.metadata.annotations
            && after.metadata.labels == read.metadata.labels
            && after.metadata.finalizers == read.metadata.finalizers
            && after.metadata.deletion_timestamp.is_none();
        if !untouched {
            return None;
        }
        let status = actions.iter().rev().find_map(|a| match a {
            Action::SetStatus(s) => Some(s.clone()),
            _ => None,
        });
        let weight = self.objects.generated.as_ref().and_then(|g| route::weights(g, &self.canary_service_name()));
        let again = Observed {
            status: status.unwrap_or_else(|| self.observed.status.clone()),
            route_weight: weight.map(|(_, w)| w),
            checks: None,
            tested: None,
            hooks: Default::default(),
            ..self.observed.clone()
        };
        match decide(&again, now) {
            Decision::Act { actions, requeue: Some(_) } if actions.is_empty() => Some(after.clone()),
            _ => None,
        }
    }

    /// A Kubernetes Event on the Canary (queued: a report never holds a release back), a
    /// JSON log line and the `event` webhooks, in Flagger's words.
    async fn event(&self, warning: bool, message: &str) {
        if warning {
            tracing::warn!(canary = %self.observed.id, msg = message, "{message}");
        } else {
            tracing::info!(canary = %self.observed.id, msg = message, "{message}");
        }
        self.ctx.events.report(self.canary.object_ref(&()), warning, message, self.fence);
        if let Some(plan) = self.plan() {
            hooks::post_event(self.ctx, plan, &self.who, self.phase, warning, message);
        }
    }
}

/// The field manager of every write.
fn params() -> PatchParams {
    PatchParams { field_manager: Some(MANAGER.to_owned()), ..PatchParams::default() }
}

fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
