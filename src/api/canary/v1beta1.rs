//! `apisix-canary.dev/v1beta1` Canary: Flagger's `flagger.app/v1beta1` field names, so
//! a Flagger user's YAML ports by changing the apiVersion.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CanaryStatus, NamespacedRef, ObjectRef};

/// The desired release process of one Deployment behind one ApisixRoute.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "apisix-canary.dev",
    version = "v1beta1",
    kind = "Canary",
    namespaced,
    doc = "A canary release of one Deployment behind one ApisixRoute, analysed on APISIX metrics",
    status = "CanaryStatus",
    derive = "PartialEq",
    category = "all",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(name = "FailedChecks", type_ = "integer", json_path = ".status.failedChecks"),
    printcolumn(name = "StepWeight", type_ = "integer", json_path = ".spec.analysis.stepWeight", priority = "1"),
    printcolumn(name = "MaxWeight", type_ = "integer", json_path = ".spec.analysis.maxWeight", priority = "1"),
    printcolumn(name = "Interval", type_ = "string", json_path = ".spec.analysis.interval", priority = "1"),
    printcolumn(name = "LastTransitionTime", type_ = "string", json_path = ".status.lastTransitionTime")
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// `apisix` when set (Flagger's mesh provider field); nothing else is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The Deployment released: `apps/v1`, kind `Deployment`.
    pub target_ref: ObjectRef,
    /// The ApisixRoute whose rule serves the target: `apisix.apache.org/v2`, `ApisixRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<ObjectRef>,
    /// The Service of the route's backend; by default the one the route names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<CanaryService>,
    #[serde(default, skip_serializing_if = "Analysis::is_empty")]
    pub analysis: Analysis,
    /// Seconds the canary may take to become ready before the release fails (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Promote without analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
    /// Stop acting on this Canary, keeping its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub target_port: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true})
}

impl Analysis {
    /// Nothing set: every default applies.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How traffic moves and what must hold at each step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between steps, a duration such as `1m` (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Failed checks before a rollback (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weights: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<Alert>,
    /// Flagger's A/B testing. Not supported with APISIX: accepted only to be rejected.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::any_object_list")]
    pub match_: Option<Vec<serde_json::Value>>,
    /// Flagger's blue/green. Not supported: accepted only to be rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i32>,
    /// Flagger's traffic mirroring. Not supported with APISIX: accepted only to be rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_weight: Option<i32>,
    /// Flagger's session affinity. Not supported with APISIX: accepted only to be rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
}

/// A check run at every step: built-in by name, or a MetricTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// The range of the query, a duration such as `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<NamespacedRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<BTreeMap<String, String>>,
    /// Built-in metrics: `canary` (the default) counts the canary's own traffic; `route`
    /// is Flagger's query over the whole generated route, stable and canary blended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What an empty result (no values, or NaN) means: `fail` (the default, Flagger's
    /// rule: a failed check) or `pass` (for low-traffic services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_data: Option<String>,
    /// Built-in metrics: `baseline` judges the canary against the stable version over
    /// the same window and route, within `maxDelta`, instead of against fixed bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    /// With `compare: baseline`: how much worse than the stable version the canary may
    /// be, in the metric's unit (success-rate percentage points, milliseconds of P99).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub max_delta: Option<f64>,
    /// Requests the canary must have served in the metric's interval before the metric
    /// is judged; until then the weight holds (bounded by progressDeadlineSeconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ThresholdRange {
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub max: Option<f64>,
}

/// A call made at a point of the release (Flagger's webhook types).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub name: String,
    /// confirm-rollout, pre-rollout, rollout (the default), confirm-traffic-increase,
    /// confirm-promotion, post-rollout, rollback or event.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub url: String,
    /// A duration such as `10s` (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Attempts after the first when a call fails to connect or gets a 5xx or 429
    /// (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
}

/// Where to post the release's events, and from which severity on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub name: String,
    /// `info`, `warn` or `error` (default `info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub provider_ref: NamespacedRef,
}
