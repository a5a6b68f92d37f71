//! The `Canary` resource (apisix-canary.dev), served as `v1beta1` (storage, Flagger's
//! field names) and `v1alpha1` (the flat shape of the Deployment annotations). The
//! status is the same in both versions: it is the single record of a release.

pub mod convert;
pub mod flat;
pub mod v1alpha1;
pub mod v1beta1;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::revision::Revision;

pub const GROUP: &str = "apisix-canary.dev";
pub const KIND: &str = "Canary";
pub const V1BETA1: &str = "apisix-canary.dev/v1beta1";
pub const V1ALPHA1: &str = "apisix-canary.dev/v1alpha1";

/// The built-in metrics, computed from APISIX's exposition.
pub const REQUEST_SUCCESS_RATE: &str = "request-success-rate";
pub const REQUEST_DURATION: &str = "request-duration";
/// Where a release is, with Flagger's phase names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
}

/// A condition in Flagger's shape (`Promoted`), shown by `kubectl describe`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCondition {
    /// The condition's type: always `Promoted`, as in Flagger.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` once the Canary is initialized or a release succeeded, `False` after a
    /// rollback, `Unknown` while a release is in progress.
    pub status: String,
    /// When the controller last wrote this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The phase the condition was written in (`Progressing`, `Succeeded`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the release is doing or waiting for, in Flagger's words where Flagger has
    /// them ("New revision detected, progressing canary analysis.").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The observed state of a release; written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Where the release is, in Flagger's phase names: `Initialized` (stable revision
    /// recorded), `Waiting` (held by a confirm-rollout webhook), `Progressing` (the
    /// canary gets traffic step by step), `WaitingPromotion` (held by a
    /// confirm-promotion webhook), `Promoting` (the Deployment rolls out the new
    /// revision), `Finalising` (traffic back to the Deployment, the generated objects
    /// deleted), then `Succeeded`, or `Failed` (rolled back; the Deployment stays paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Percent of traffic on the canary (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// Failed checks of the current analysis; at `analysis.threshold` the release is
    /// rolled back. Reset to 0 when a release starts; kept after it ends, as Flagger
    /// keeps it (the count that explains a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_checks: Option<i32>,
    /// Weight steps taken, plus failed checks at a non-zero weight, in the current
    /// analysis. Reset to 0 when a release starts or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i32>,
    /// Revision (pod-template hash) of the release under analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_spec: Option<Revision>,
    /// Revision last promoted, or adopted as stable when the Canary was initialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promoted_spec: Option<Revision>,
    /// Revision that failed its analysis last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<Revision>,
    /// When the status last changed: intervals and deadlines are counted from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `Promoted` condition, as Flagger writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<CanaryCondition>>,
    /// Since when the weight has held for lack of canary traffic (a metric's
    /// `minRequests`); the hold is bounded by progressDeadlineSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<Time>,
    /// When the analysis of lastAppliedSpec started ("Starting canary analysis"): the
    /// record that it is said once per analysis, whatever became of the Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_started: Option<Time>,
    /// The metric checks of the current (or last) release, oldest first, as the analysis
    /// judged them: the numbers the Events, `apisix-canary status` and `report` show.
    /// Reset when a release starts; the last [`MAX_CHECKS`] are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckRecord>>,
    /// The Prometheus the checks queried (`analysis.metricsServer` or the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,
}

impl CanaryStatus {
    /// The value the newest check of `metric` measured: what `status` and the demo show
    /// beside the Events that said it. `None` when that check had none.
    pub fn last_value(&self, metric: &str) -> Option<f64> {
        self.checks.iter().flatten().rev().find(|c| c.metric == metric).and_then(|c| c.value)
    }

    /// The checks of the newest interval judged.
    pub fn last_checks(&self) -> &[CheckRecord] {
        let checks = self.checks.as_deref().unwrap_or_default();
        let Some(newest) = checks.last() else { return checks };
        let first = checks.iter().rposition(|c| c.time != newest.time).map_or(0, |i| i + 1);
        &checks[first..]
    }
}

/// How many checks `status.checks` keeps: a release of 20 steps, 10 failed checks and
/// 3 metrics fits.
pub const MAX_CHECKS: usize = 100;

/// One metric checked at one interval.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// When the check was judged.
    pub time: Time,
    /// The metric's name in the analysis.
    pub metric: String,
    /// What was measured on the canary: a success rate in percent, a duration in
    /// milliseconds, a template's value as its query returned it; absent when there
    /// was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub result: CheckResult,
    /// Why it failed or was not judged: the Event's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `judge: sequential`: the natural log of the test's evidence against a healthy
    /// canary (its likelihood ratio `E`) at this check; the test rejects, and the release
    /// is rolled back, once it reaches `boundary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    /// `judge: sequential`: `ln(1 / alpha)`, the evidence at which the test rejects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<f64>,
}

/// The verdict of one [`CheckRecord`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CheckResult {
    /// Within its bounds (or no data, with `onNoData: pass`).
    Passed,
    /// A failed check: out of bounds, no values, or the query failed.
    Failed,
    /// Not judged: the canary has not served `minRequests` yet.
    Waiting,
}

/// A reference to another object, by apiVersion, kind and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apps/v1` for targetRef, `apisix.apache.org/v2` for routeRef, nothing else; any
    /// for ingressRef (as in Flagger).
    pub api_version: String,
    /// `Deployment` for targetRef, `ApisixRoute` for routeRef, `Ingress` for ingressRef;
    /// nothing else is accepted.
    pub kind: String,
    /// Name of the Deployment (targetRef), the ApisixRoute (routeRef) or the Ingress
    /// (ingressRef), in the Canary's namespace.
    pub name: String,
}

/// A reference to an object that may live in another namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NamespacedRef {
    /// `apisix-canary.dev/v1beta1`, or Flagger's `flagger.app/v1beta1` (read as ours);
    /// unset means ours. Anything else is rejected.
    #[serde(default, rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `MetricTemplate` (templateRef) or `AlertProvider` (providerRef), or unset;
    /// anything else is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the MetricTemplate (templateRef) or the AlertProvider (providerRef).
    pub name: String,
    /// Its namespace (default: the Canary's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A schema for a list of arbitrary objects (Flagger's `analysis.match`).
pub(crate) fn any_object_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// Numbers as Go's encoding/json writes them: `99`, not `99.0`, when integral. Keeps
/// converted objects byte-identical to what the API server stored.
pub(crate) mod go_number {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => s.serialize_i64(*x as i64),
            Some(x) => s.serialize_f64(*x),
            None => s.serialize_none(),
        }
    }
}
