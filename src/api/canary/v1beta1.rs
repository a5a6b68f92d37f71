//! `apisix-canary.dev/v1beta1` Canary: Flagger's `flagger.app/v1beta1` field names, so
//! a Flagger user's YAML ports by changing the apiVersion.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod flagger;

pub use self::flagger::{AutoscalerRef, MeshSettings, ScalerReplicas, SessionAffinity, UnmanagedMetadata};
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
    /// Flagger's mesh provider: `apisix` or unset; any other value is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The Prometheus (an absolute http or https URL) that this Canary's built-in metrics
    /// and inline `query` metrics are sent to, instead of serve's `--prometheus-url`.
    /// MetricTemplates keep their own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,
    /// The Deployment released, in the Canary's namespace: apiVersion `apps/v1`, kind
    /// `Deployment`.
    pub target_ref: ObjectRef,
    /// Flagger's autoscaler of the target. Accepted with a warning and not needed: the
    /// Deployment's own autoscaler keeps scaling it, and the canary copy is sized from
    /// the Deployment's current replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_ref: Option<AutoscalerRef>,
    /// An Ingress (kind `Ingress`) whose name `{{ ingress }}` renders in queries, as in
    /// Flagger; nothing else reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ref: Option<ObjectRef>,
    /// Required: the ApisixRoute (apiVersion `apisix.apache.org/v2`, kind `ApisixRoute`)
    /// with the one http rule whose only backend is the Service; a copy of that rule,
    /// `<route>-<target>-canary`, splits the traffic during a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<ObjectRef>,
    /// Flagger's Gloo Upstream. Rejected: APISIX's route backends are Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub upstream_ref: Option<serde_json::Value>,
    /// The Service in front of the target (Flagger's `service`); only `name` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<CanaryService>,
    #[serde(default, skip_serializing_if = "Analysis::is_empty")]
    pub analysis: Analysis,
    /// Flagger's deprecated name of `analysis`. Rejected: rename it to analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub canary_analysis: Option<serde_json::Value>,
    /// Seconds (1-86400, default 600) the canary may take to become ready before its
    /// first step, and the longest a metric's `minRequests` may hold the weight; past
    /// it the release is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Promote each new revision at once, without a canary or an analysis
    /// (confirm-rollout webhooks still gate it). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,
    /// Flagger's revert on deletion. Accepted either way: deleting a Canary always sends
    /// the traffic back to the Deployment's own pods and deletes the generated objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_on_deletion: Option<bool>,
    /// Stop acting on this Canary, keeping its state: a release in progress holds where
    /// it is until this is false again. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// The Service in front of the target, in Flagger's shape. When it does not exist and
/// `port` is set, the Canary generates it as Flagger generates its apex Service; a
/// Service that exists is used as it is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryService {
    /// The Service that is the only backend of the routeRef's rule, in the Canary's
    /// namespace (default: the targetRef's name). Its copy `<name>-canary` selects the
    /// canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Service's port, 1-65535. With it, a missing Service is generated (owned by
    /// the Canary, selecting the Deployment's own pods, never the canary's); an existing
    /// Service keeps its own ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// The container port a generated Service sends to: a number (1-65535) or a port
    /// name (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub target_port: Option<serde_json::Value>,
    /// The name of a generated Service's port (default `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// The application protocol of a generated Service's port (`appProtocol`, such as
    /// `http` or `kubernetes.io/h2c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// A generated Service also exposes every other named port of the target's
    /// containers, each on its container port. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_discovery: Option<bool>,
    /// A generated Service is headless (`clusterIP: None`). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless: Option<bool>,
    /// `trafficDistribution` of a generated Service (`PreferClose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<String>,
    /// Labels and annotations of a generated Service (Flagger's apex Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<CustomMetadata>,
    /// Flagger's labels and annotations of `<service>-primary`. Rejected: there is no
    /// primary Service, the Deployment's own pods serve through the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<CustomMetadata>,
    /// Flagger's labels and annotations of `<service>-canary`. Rejected: the canary
    /// Service is a copy of the Service, its labels and annotations included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CustomMetadata>,
    /// Flagger's labels and annotations left to other controllers. Accepted and not
    /// needed: generated Services never lose what another manager wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_metadata: Option<UnmanagedMetadata>,
    /// Other meshes' routing settings, accepted and ignored with a warning each.
    #[serde(flatten)]
    pub mesh: MeshSettings,
}

/// Labels and annotations for an object we generate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CustomMetadata {
    /// Labels added to the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true})
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
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
    /// Time between two steps, each running the checks: a duration such as `30s` or
    /// `1m`, from 1s to 24h (default 1m; under 10s gets a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Failed checks, counted over the whole analysis, that roll the release back: 1 to
    /// 1000 (default 5; 1 gets a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i32>,
    /// Canary weight in percent (1-100) whose step, once its checks pass, promotes the
    /// release (default 50; with stepWeights and no maxWeight, their last entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i32>,
    /// Percent of traffic added to the canary at each step, 1-100 and at most maxWeight
    /// (default 10, or maxWeight when smaller); the last step lands on maxWeight. Not
    /// with stepWeights (rejected: Flagger would mix the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i32>,
    /// The canary weights to visit in order, in percent: each 1-100, strictly
    /// increasing, the last at most maxWeight. Not with stepWeight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weights: Option<Vec<i32>>,
    /// Once the promoted revision has rolled out, percent of traffic moved from the
    /// canary to the Deployment at each interval (1-100); unset, all at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<i32>,
    /// Percent (0-100, default 100) of the canary's pods that must be available before
    /// its analysis starts and before each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ready_threshold: Option<i32>,
    /// Flagger's readiness percent of the primary. Accepted (0-100) with a warning and
    /// ignored: the promotion waits for the Deployment's whole rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_ready_threshold: Option<i32>,
    /// Checks run at every interval: a failing one halts the advancement and counts a
    /// failed check. Names are unique; none: no metric is checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// How the built-in metrics are judged: `interval` (the default, Flagger's rule:
    /// the checks of each interval, `threshold` failed checks roll the release back) or
    /// `sequential`: in addition, an anytime-valid test of the canary's 5xx share and
    /// slow-request share since its first traffic, checked at each Prometheus scrape; a
    /// rejection rolls the release back at once, whatever the threshold. The interval
    /// checks and the threshold keep running as in Flagger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// With `judge: sequential`, the test's confidence in percent, strictly between 50
    /// and 100 (default 99): at most 100 - confidence percent of healthy releases are
    /// rolled back by the test (1 % at 99). Without it, no effect (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub confidence: Option<f64>,
    /// HTTP calls made at points of the release: gates, load tests, checks and
    /// notifications (Flagger's webhooks). Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// AlertProviders that receive the release's events. Names are unique.
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
    /// Flagger's percentage of mirrored traffic. Not supported with APISIX: accepted only
    /// to be rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_weight: Option<i32>,
    /// Flagger's session affinity. Not supported with APISIX: accepted only to be rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

/// A check run at every step: built-in by name, or a MetricTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Unique among the metrics. Without templateRef or query, a built-in metric:
    /// `request-success-rate` (percent of the canary's responses that are not 5xx) or
    /// `request-duration` (the canary's P99 request duration, in milliseconds); with
    /// either, any other name.
    pub name: String,
    /// The bounds the value must stay within, in the metric's unit: min, max or both.
    /// Required unless `threshold` or `compare` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// Flagger's single bound, used when thresholdRange is absent: the lowest value that
    /// passes for `request-success-rate`, the highest for every other metric.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub threshold: Option<f64>,
    /// A PromQL query giving the value (instead of templateRef), with a MetricTemplate's
    /// variables, sent to metricsServer or serve's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The range of the query (`{{ interval }}` in a template), a duration from 1s to
    /// 24h (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The MetricTemplate whose query gives the value; unset for a built-in metric or
    /// an inline query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<NamespacedRef>,
    /// Values of `{{ variables.<key> }}` in the template's query.
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
    /// Built-in metrics only, not with `scope: route`: `baseline` judges the canary
    /// against the stable version, over the same window and route, within `maxDelta`;
    /// thresholdRange is then optional, an absolute bound when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    /// Required with `compare: baseline`, and only there: how much worse than the
    /// stable version the canary may be, in the metric's unit (success-rate percentage
    /// points, 0-100, or milliseconds of P99, at least 0).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub max_delta: Option<f64>,
    /// Requests the canary must have served in the metric's interval before the metric
    /// is judged; until then the weight holds (bounded by progressDeadlineSeconds).
    /// At least 0 (default 0: judged at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<i64>,
}

/// Inclusive bounds of a metric's value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ThresholdRange {
    /// The lowest value that passes, not above max (`request-success-rate`: percent,
    /// 0-100).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub min: Option<f64>,
    /// The highest value that passes (`request-duration`: milliseconds, 1 to 600000;
    /// `request-success-rate`: percent, 0-100).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "super::go_number::serialize")]
    pub max: Option<f64>,
}

/// A call made at a point of the release (Flagger's webhook types).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Names the webhook in events and messages; unique among the webhooks.
    pub name: String,
    /// When it is called: confirm-rollout, pre-rollout, rollout (the default),
    /// confirm-traffic-increase, confirm-promotion, post-rollout, rollback or event.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Where the JSON `{name, namespace, phase, checksum, metadata}` is POSTed: an
    /// absolute http or https URL. A status of 202 or less passes.
    pub url: String,
    /// How long one call may take, a duration from 1s to 10m (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Strings sent as the body's `metadata` (Flagger's load tester reads `cmd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Attempts after the first, 0-10 (default 0), when a call fails to connect, times
    /// out, or gets a 429 or a 5xx other than 501.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    /// Gates only: their "waiting for approval" alert is not sent. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_alert: Option<bool>,
    /// Do not verify the hook's TLS certificate (a self-signed one). Default false.
    #[serde(default, rename = "disableTLS", skip_serializing_if = "Option::is_none")]
    pub disable_tls: Option<bool>,
}

/// Where to post the release's events, and from which severity on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Names the alert; unique among the alerts.
    pub name: String,
    /// The least severe events posted: `info` (all), `warn` (warnings and errors) or
    /// `error` (errors only); default `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The AlertProvider to post to.
    pub provider_ref: NamespacedRef,
}
