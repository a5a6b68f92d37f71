//! The executor's side of webhooks and alerts: it calls the hooks the lifecycle asks
//! for, reports what post-rollout hooks said, posts every Event to the `event` hooks
//! and sends alerts. Event hooks and alerts never hold a release up: they are sent in
//! the background, and their failures are logged.

use k8s_openapi::jiff::Timestamp;

use super::Context;
use crate::analysis::alerts::{self, Notice};
use crate::analysis::hooks::{Event, Payload};
use crate::api::canary::Phase;
use crate::release::lifecycle::{HookResult, Observed};
use crate::release::plan::{HookKind, Plan, Severity};

/// Who a call is about: the Canary's name and namespace, and the revision under
/// release (the payload's `checksum`).
#[derive(Debug, Clone)]
pub(super) struct Subject {
    pub canary: String,
    pub namespace: String,
    pub checksum: String,
}

impl Subject {
    pub fn of(canary: &str, namespace: &str, o: &Observed) -> Self {
        let revision = o.target.lock.canary.as_ref().or(o.status.applied.as_ref());
        Self {
            canary: canary.to_owned(),
            namespace: namespace.to_owned(),
            checksum: revision.map(|r| r.to_string()).unwrap_or_default(),
        }
    }

    fn payload(&self, phase: Phase) -> Payload<'_> {
        Payload { name: &self.canary, namespace: &self.namespace, phase, checksum: &self.checksum }
    }
}

/// Every hook of `kind`, in order, with `phase`: what each answered.
pub(super) async fn call(ctx: &Context, plan: &Plan, who: &Subject, kind: HookKind, phase: Phase) -> Vec<HookResult> {
    let answers = ctx.hooks.call_all(plan, kind, &who.payload(phase)).await;
    answers
        .into_iter()
        .map(|(hook, answer)| {
            match &answer {
                Ok(()) => tracing::debug!(canary = %who.canary, %kind, hook, "webhook passed"),
                Err(e) => tracing::info!(canary = %who.canary, %kind, hook, error = %e, "webhook did not pass"),
            }
            (hook, answer.map_err(|e| e.to_string()))
        })
        .collect()
}

/// The Events that report post-rollout answers, in Flagger's words.
pub(super) fn reported(kind: HookKind, answers: &[HookResult]) -> Vec<(bool, String)> {
    let what = match kind {
        HookKind::PostRollout => "Post-rollout",
        other => other.as_str(),
    };
    answers
        .iter()
        .map(|(hook, answer)| match answer {
            Ok(()) => (false, format!("{what} check {hook} passed")),
            Err(e) => (true, format!("{what} hook {hook} failed {e}")),
        })
        .collect()
}

/// Posts a recorded Event to the plan's `event` hooks, in the background.
pub(super) fn post_event(ctx: &Context, plan: &Plan, who: &Subject, phase: Phase, warning: bool, message: &str) {
    let hooks: Vec<_> = plan.hooks(HookKind::Event).cloned().collect();
    if hooks.is_empty() {
        return;
    }
    let (caller, who, message, timestamp) = (ctx.hooks.clone(), who.clone(), message.to_owned(), Timestamp::now());
    tokio::spawn(async move {
        let event = Event { message: &message, warning, timestamp };
        for hook in &hooks {
            if let Err(e) = caller.event(hook, &who.payload(phase), &event).await {
                tracing::warn!(canary = %who.canary, hook = hook.name, error = %e, "error sending event to webhook");
            }
        }
    });
}

/// Sends an alert to the plan's providers that take `severity`, in the background.
#[allow(clippy::too_many_arguments)]
pub(super) fn alert(
    ctx: &Context,
    plan: &Plan,
    who: &Subject,
    target: &str,
    phase: Phase,
    severity: Severity,
    message: &str,
    fields: &[(String, String)],
) {
    if !plan.alerts.iter().any(|a| alerts::wants(a.severity, severity)) {
        return;
    }
    let notice = Notice {
        canary: who.canary.clone(),
        namespace: who.namespace.clone(),
        target: target.to_owned(),
        phase,
        severity,
        message: message.to_owned(),
        fields: fields.to_vec(),
    };
    let (client, resolver, alerts, ns) =
        (ctx.client.clone(), ctx.config.resolver.clone(), plan.alerts.clone(), who.namespace.clone());
    tokio::spawn(async move {
        for (alert, result) in alerts::notify(&client, &ns, &alerts, &notice, &resolver).await {
            match result {
                Ok(()) => tracing::debug!(canary = %notice.canary, alert, "alert sent"),
                Err(e) => tracing::warn!(canary = %notice.canary, alert, error = %e, "alert not sent"),
            }
        }
    });
}
