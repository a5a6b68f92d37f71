//! `apisix-canary.dev/v1alpha1` Canary: the flat shape of the Deployment annotations.
//! What it cannot express (metric intervals, webhooks, alerts, ...) is kept by the
//! conversion webhook in the annotation `SPILL_ANNOTATION` and restored on the way back.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CanaryStatus;

/// Holds, as JSON, the part of a v1beta1 spec that v1alpha1 cannot express.
pub const SPILL_ANNOTATION: &str = "apisix-canary.dev/v1beta1-spec";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "apisix-canary.dev",
    version = "v1alpha1",
    kind = "Canary",
    namespaced,
    doc = "A canary release in the flat shape of the Deployment annotations (v1beta1 is the storage version)",
    status = "CanaryStatus",
    derive = "PartialEq",
    category = "all",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(name = "FailedChecks", type_ = "integer", json_path = ".status.failedChecks"),
    printcolumn(name = "StepWeight", type_ = "integer", json_path = ".spec.stepWeight", priority = "1"),
    printcolumn(name = "MaxWeight", type_ = "integer", json_path = ".spec.maxWeight", priority = "1"),
    printcolumn(name = "Interval", type_ = "string", json_path = ".spec.interval", priority = "1"),
    printcolumn(name = "LastTransitionTime", type_ = "string", json_path = ".status.lastTransitionTime")
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The Deployment released.
    pub target: String,
    /// The ApisixRoute serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weights: Option<Vec<i32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i32>,
    /// Minimum success rate in percent (the `request-success-rate` metric).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub min_success_rate: Option<f64>,
    /// Maximum P99 request duration, a duration such as `500ms` (the `request-duration` metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}
