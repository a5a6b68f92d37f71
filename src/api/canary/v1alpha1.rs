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

/// A release's settings in the flat shape of the Deployment annotations; the rest of a
/// v1beta1 spec is kept in the annotation `apisix-canary.dev/v1beta1-spec`.
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
    /// The Deployment released, in the Canary's namespace (v1beta1 `targetRef.name`).
    pub target: String,
    /// Required: the ApisixRoute whose rule serves the target (v1beta1
    /// `routeRef.name`; annotation `apisix-canary.dev/route`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The Service that is the only backend of the route's rule (default: `target`;
    /// v1beta1 `service.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Flagger's Service port (v1beta1 `service.port`). Checked (1-65535) but not used:
    /// the canary Service copies the Service's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Percent of traffic added to the canary at each step, 1-100 and at most maxWeight
    /// (default 10, or maxWeight when smaller). Ignored, with a warning, when
    /// stepWeights is set. Annotation `apisix-canary.dev/step-weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i32>,
    /// The canary weights to visit in order, in percent: each 1-100, strictly
    /// increasing, the last at most maxWeight. Annotation `apisix-canary.dev/step-weights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weights: Option<Vec<i32>>,
    /// Once the promoted revision has rolled out, percent of traffic moved from the
    /// canary to the Deployment at each interval (1-100); unset, all at once. Annotation
    /// `apisix-canary.dev/step-weight-promotion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<i32>,
    /// Canary weight in percent (1-100) whose step, once its checks pass, promotes the
    /// release (default 50; with stepWeights and no maxWeight, their last entry).
    /// Annotation `apisix-canary.dev/max-weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i32>,
    /// Time between two steps, each running the checks: a duration such as `30s` or
    /// `1m`, from 1s to 24h (default 1m). Annotation `apisix-canary.dev/interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Failed checks, counted over the whole analysis, that roll the release back: 1 to
    /// 1000 (default 5). Annotation `apisix-canary.dev/threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i32>,
    /// Minimum success rate in percent, 0-100: `thresholdRange.min` of the
    /// `request-success-rate` metric. Annotation `apisix-canary.dev/min-success-rate`.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub min_success_rate: Option<f64>,
    /// Maximum P99 request duration, a duration from 1ms to 10m such as `500ms`:
    /// `thresholdRange.max` of the `request-duration` metric. Annotation
    /// `apisix-canary.dev/max-request-duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_duration: Option<String>,
    /// How the built-in metrics are judged: `interval` (the default, Flagger's rule) or
    /// `sequential` (in addition, an anytime-valid test of the canary's 5xx share and
    /// slow-request share since its first traffic; a rejection rolls the release back at
    /// once). Annotation `apisix-canary.dev/judge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// With `judge: sequential`, the test's confidence in percent, strictly between 50
    /// and 100 (default 99): at most 100 - confidence percent of healthy releases are
    /// rolled back by the test. Annotation `apisix-canary.dev/confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub confidence: Option<f64>,
    /// Seconds (1-86400, default 600) the canary may take to become ready before its
    /// first step, and the longest a metric's `minRequests` may hold the weight; past
    /// it the release is rolled back. Annotation `apisix-canary.dev/progress-deadline-seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Promote each new revision at once, without a canary or an analysis
    /// (confirm-rollout webhooks still gate it). Default false. Annotation
    /// `apisix-canary.dev/skip-analysis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
    /// Stop acting on this Canary, keeping its state: a release in progress holds where
    /// it is until this is false again. Default false. Annotation `apisix-canary.dev/suspend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}
