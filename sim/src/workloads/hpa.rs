//! The horizontal-pod-autoscaler controller of kube-controller-manager
//! (`reconcileAutoscaler`): each HorizontalPodAutoscaler keeps the replicas of its
//! target (any kind with a scale subresource) within its bounds and, from its metrics,
//! at what they ask for; it writes the target's `/scale`, its own status (replicas,
//! metrics, the `AbleToScale`, `ScalingActive` and `ScalingLimited` conditions) and
//! kube's Events (`SuccessfulRescale`, `FailedGetScale`, `FailedGetResourceMetric`, ...).
//!
//! ```text
//!  HPA (v2) ─▶ target /scale ─▶ 0 replicas: disabled │ outside [min, max]: to the bound
//!                                 └─▶ metrics (metrics.rs) ─▶ normalize (normalize.rs) ─▶ /scale, status, Events
//! ```
//!
//! The sim has no metrics API. Its stand-in is the autoscaler's annotation
//! [`UTILIZATION_ANNOTATION`]: with it, every ready pod of the target uses that percent
//! of its CPU request; without it, CPU metrics fail as in a cluster without
//! metrics-server (`cpu: <unknown>/99%`), which still enforces the bounds. The sync is
//! here; the I/O around it is in `hpa/sync.rs`.

mod metrics;
mod normalize;
mod sync;
#[cfg(test)]
mod tests;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub use self::normalize::History;
use self::normalize::{Behavior, Condition};
use super::stamp;

/// The stand-in for a metrics pipeline: the CPU utilization (a whole percent of the
/// request) every ready pod of the autoscaler's target reports.
pub const UTILIZATION_ANNOTATION: &str = "sim.k8s.io/cpu-utilization";
/// `--horizontal-pod-autoscaler-sync-period`.
pub const SYNC_PERIOD: std::time::Duration = std::time::Duration::from_secs(15);
/// `--horizontal-pod-autoscaler-tolerance`: usage within 10% of the target changes nothing.
pub const TOLERANCE: f64 = 0.1;

/// How a pod of the target counts for metrics (`groupPods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Ready,
    /// Pending, or running but not ready: no CPU sample yet.
    Unready,
    /// Being deleted, or failed.
    Ignored,
}

/// A pod of the target: its state and CPU request in millicores (or the container
/// without one).
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub name: String,
    pub state: PodState,
    pub cpu_request: Result<i64, String>,
}

/// The target's `/scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub replicas: i32,
    pub selector: String,
}

/// What a sync observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The target's scale, or why it could not be read (kube's error text).
    pub target: Result<Scale, String>,
    /// The pods the scale's selector selects.
    pub pods: Vec<Pod>,
    /// The stand-in utilization, if the annotation gives one.
    pub utilization: Option<i64>,
}

/// An Event about the autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: String) -> Self {
        Self { warning: false, reason, message }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Self { warning: true, reason, message }
    }
}

/// A change of the target's replicas, and kube's reason for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescale {
    pub from: i32,
    pub to: i32,
    pub reason: String,
}

/// What a sync decided: Events to record, maybe a rescale, the status to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub rescale: Option<Rescale>,
    /// The status when there is no rescale, or it succeeded.
    pub status: Value,
    /// The status if the rescale fails, but for the `AbleToScale` condition.
    failed: Value,
    now: Timestamp,
}

impl Decision {
    /// The Event of a rescale that went through.
    pub fn rescaled(&self) -> Option<Event> {
        let r = self.rescale.as_ref()?;
        Some(Event::normal("SuccessfulRescale", format!("New size: {}; reason: {}", r.to, r.reason)))
    }

    /// The status and Event of a rescale the API refused with `error`.
    pub fn failed(&self, error: &str) -> (Value, Event) {
        let r = self.rescale.as_ref().map_or((0, ""), |r| (r.to, r.reason.as_str()));
        let mut status = self.failed.clone();
        let message = format!("the HPA controller was unable to update the target scale: {error}");
        set_condition(&mut status, "AbleToScale", (false, "FailedUpdateScale", ""), &message, self.now);
        let event = Event::warning("FailedRescale", format!("New size: {}; reason: {}; error: {error}", r.0, r.1));
        (status, event)
    }
}

/// `setCondition`: the transition time moves only when the status does.
fn set_condition(status: &mut Value, type_: &str, (ok, reason, _): Condition, message: &str, now: Timestamp) {
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("just made a list");
    let value = if ok { "True" } else { "False" };
    let at = match conditions.iter().position(|c| c["type"] == type_) {
        Some(at) => at,
        None => {
            conditions.push(json!({"type": type_}));
            conditions.len() - 1
        }
    };
    let c = &mut conditions[at];
    if c["status"] != value {
        c["lastTransitionTime"] = json!(stamp(now));
    }
    c["status"] = json!(value);
    c["reason"] = json!(reason);
    c["message"] = json!(message);
}

fn set(status: &mut Value, type_: &str, condition: Condition, now: Timestamp) {
    set_condition(status, type_, condition, condition.2, now);
}

/// `setStatus`: replicas, metrics and the time of a rescale; conditions as they are.
fn with_replicas(
    status: &Value,
    current: i32,
    desired: i32,
    metrics: Option<Vec<Value>>,
    scaled: Option<Timestamp>,
) -> Value {
    let mut out = json!({"desiredReplicas": desired});
    if current != 0 {
        out["currentReplicas"] = json!(current);
    }
    if let Some(t) = scaled.map(stamp).map(Value::from).or_else(|| status.get("lastScaleTime").cloned()) {
        out["lastScaleTime"] = t;
    }
    if let Some(m) = metrics.filter(|m| !m.is_empty()) {
        out["currentMetrics"] = Value::Array(m);
    }
    if let Some(c) = status.get("conditions").filter(|c| c.as_array().is_some_and(|c| !c.is_empty())) {
        out["conditions"] = c.clone();
    }
    out
}

/// One sync of autoscaler `hpa` (its v2 form) over what was observed, remembering in
/// `history` what kube-controller-manager remembers between syncs.
pub fn reconcile(hpa: &Value, observed: &Observed, history: &mut History, now: Timestamp) -> Decision {
    let mut status = hpa.get("status").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    let previous_desired = status.get("desiredReplicas").and_then(Value::as_i64).unwrap_or(0) as i32;
    let mut events = Vec::new();
    let decided = |events, rescale, status: Value, failed| Decision { events, rescale, status, failed, now };
    let scale = match &observed.target {
        Ok(scale) => scale,
        Err(error) => {
            events.push(Event::warning("FailedGetScale", error.clone()));
            let message = format!("the HPA controller was unable to get the target's current scale: {error}");
            set_condition(&mut status, "AbleToScale", (false, "FailedGetScale", ""), &message, now);
            return decided(events, None, status.clone(), status);
        }
    };
    set(
        &mut status,
        "AbleToScale",
        (true, "SucceededGetScale", "the HPA controller was able to get the target's current scale"),
        now,
    );
    let current = scale.replicas;
    history.first_seen(current, now);
    let spec = hpa.get("spec").cloned().unwrap_or_default();
    let int = |p: &str| spec.pointer(p).and_then(Value::as_i64).map(|n| n.clamp(0, i64::from(i32::MAX)) as i32);
    let (min, max) = (int("/minReplicas").unwrap_or(1), int("/maxReplicas").unwrap_or(0));
    let mut metric_statuses = None;
    let (desired, reason) = if current == 0 && min != 0 {
        let disabled = "scaling is disabled since the replica count of the target is zero";
        set(&mut status, "ScalingActive", (false, "ScalingDisabled", disabled), now);
        (0, String::new())
    } else if current > max {
        (max, "Current number of replicas above Spec.MaxReplicas".to_owned())
    } else if current < min {
        (min, "Current number of replicas below Spec.MinReplicas".to_owned())
    } else {
        let metrics = spec.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default();
        let proposals = if scale.selector.is_empty() {
            events.push(Event::warning("SelectorRequired", "selector is required".into()));
            let missing = (false, "InvalidSelector", "the HPA target's scale is missing a selector");
            set(&mut status, "ScalingActive", missing, now);
            events.push(Event::warning("FailedComputeMetricsReplicas", "selector is required".into()));
            None
        } else {
            Some(metrics::propose(&metrics, current, observed))
        };
        let Some(proposals) = proposals else {
            let out = with_replicas(&status, current, previous_desired, None, None);
            return decided(events, None, out.clone(), out);
        };
        events.extend(proposals.events());
        let failing = proposals.failures.len();
        let best = proposals.best.clone().filter(|(replicas, _)| failing == 0 || *replicas >= current);
        let Some((proposed, metric)) = best else {
            // Every metric failed, or some did and the rest would scale down.
            if let Some(first) = proposals.failures.first() {
                let message = format!("the HPA was unable to compute the replica count: {}", first.error);
                set_condition(&mut status, "ScalingActive", (false, first.reason, ""), &message, now);
            }
            if let Some(error) = proposals.error() {
                events.push(Event::warning("FailedComputeMetricsReplicas", error));
            }
            let out = with_replicas(&status, current, previous_desired, Some(proposals.statuses), None);
            return decided(events, None, out.clone(), out);
        };
        let found = format!("the HPA was able to successfully calculate a replica count from {metric}");
        set_condition(&mut status, "ScalingActive", (true, "ValidMetricFound", ""), &found, now);
        let reason = match proposed.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{metric} above target"),
            std::cmp::Ordering::Less => "All metrics below target".to_owned(),
            std::cmp::Ordering::Equal => String::new(),
        };
        let behavior = spec.get("behavior").filter(|b| b.is_object()).map(Behavior::of);
        let normalized = match &behavior {
            None => history.normalize(now, current, proposed, min, max),
            Some(b) => history.normalize_with(b, now, current, proposed, min, max),
        };
        set(&mut status, "AbleToScale", normalized.able_to_scale, now);
        set(&mut status, "ScalingLimited", normalized.scaling_limited, now);
        metric_statuses = Some(proposals.statuses);
        (normalized.replicas, reason)
    };
    if desired == current {
        let out = with_replicas(&status, current, current, metric_statuses, None);
        return decided(events, None, out.clone(), out);
    }
    let failed = with_replicas(&status, current, previous_desired, metric_statuses.clone(), None);
    let message = format!("the HPA controller was able to update the target scale to {desired}");
    set_condition(&mut status, "AbleToScale", (true, "SucceededRescale", ""), &message, now);
    let behavior = spec.get("behavior").filter(|b| b.is_object()).map(Behavior::of);
    history.rescaled(behavior.as_ref(), current, desired, now);
    let out = with_replicas(&status, current, desired, metric_statuses, Some(now));
    decided(events, Some(Rescale { from: current, to: desired, reason }), out, failed)
}

/// The stand-in utilization an autoscaler's annotation gives: a whole percent, `150`
/// or `150%`.
pub fn stand_in_utilization(hpa: &Value) -> Option<i64> {
    let value = hpa.pointer("/metadata/annotations")?.get(UTILIZATION_ANNOTATION)?.as_str()?;
    value.trim().trim_end_matches('%').parse().ok().filter(|u: &i64| *u >= 0)
}
