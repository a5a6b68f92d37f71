//! Flagger's Canary fields that do nothing with APISIX's weighted backends, each with a
//! schema so a Flagger object ports as written: the admission webhook then refuses
//! them with the reason, or accepts them with a warning that they are ignored (as
//! Flagger's own APISIX provider ignores the mesh settings). Never a second meaning.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::any_object_list;

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The routing settings of `spec.service` that other meshes and ingresses read
/// (Istio, Gateway API, App Mesh, Gloo). Flagger's APISIX provider ignores them, and so
/// do we, with an admission warning each: the routes are the routeRef's ApisixRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    /// Flagger's Istio/Gateway API request timeout. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Flagger's Gateway API backend timeout. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_timeout: Option<String>,
    /// Flagger's Istio gateways. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Flagger's Gateway API parent references. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_list")]
    pub gateway_refs: Option<Vec<serde_json::Value>>,
    /// Flagger's Istio/Gateway API host names. Ignored with APISIX (the ApisixRoute's
    /// hosts apply), with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Flagger's Istio delegate VirtualService. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<bool>,
    /// Flagger's Istio traffic policy. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub traffic_policy: Option<serde_json::Value>,
    /// Flagger's Istio/Gateway API URI match. Ignored with APISIX (the ApisixRoute's
    /// match applies), with a warning.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_list")]
    pub match_: Option<Vec<serde_json::Value>>,
    /// Flagger's Istio/Gateway API rewrite. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub rewrite: Option<serde_json::Value>,
    /// Flagger's Istio retry policy. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub retries: Option<serde_json::Value>,
    /// Flagger's Istio header operations. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub headers: Option<serde_json::Value>,
    /// Flagger's Gateway API request mirror filters. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object_list")]
    pub mirror: Option<Vec<serde_json::Value>>,
    /// Flagger's Istio CORS policy. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub cors_policy: Option<serde_json::Value>,
    /// Flagger's App Mesh mesh name. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_name: Option<String>,
    /// Flagger's App Mesh backends. Ignored with APISIX, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
}

impl MeshSettings {
    /// The fields written, by their names in `spec.service`, with what reads them in
    /// Flagger.
    pub fn written(&self) -> Vec<(&'static str, &'static str)> {
        [
            ("timeout", self.timeout.is_some(), "Istio and Gateway API"),
            ("backendTimeout", self.backend_timeout.is_some(), "Gateway API"),
            ("gateways", self.gateways.is_some(), "Istio"),
            ("gatewayRefs", self.gateway_refs.is_some(), "Gateway API"),
            ("hosts", self.hosts.is_some(), "Istio and Gateway API"),
            ("delegation", self.delegation.is_some(), "Istio"),
            ("trafficPolicy", self.traffic_policy.is_some(), "Istio"),
            ("match", self.match_.is_some(), "Istio and Gateway API"),
            ("rewrite", self.rewrite.is_some(), "Istio and Gateway API"),
            ("retries", self.retries.is_some(), "Istio"),
            ("headers", self.headers.is_some(), "Istio and Gateway API"),
            ("mirror", self.mirror.is_some(), "Gateway API"),
            ("corsPolicy", self.cors_policy.is_some(), "Istio"),
            ("meshName", self.mesh_name.is_some(), "App Mesh"),
            ("backends", self.backends.is_some(), "App Mesh"),
        ]
        .into_iter()
        .filter(|(_, written, _)| *written)
        .map(|(name, _, mesh)| (name, mesh))
        .collect()
    }
}

/// Flagger's keys of labels and annotations it leaves to others on the Services it
/// manages. Accepted and not needed: our generated Services are written by server-side
/// apply, which never removes what another manager wrote.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct UnmanagedMetadata {
    /// Annotation keys left to other controllers (all are, here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<String>>,
    /// Label keys left to other controllers (all are, here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

/// Flagger's session affinity settings; refused as a whole.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    /// Flagger's affinity cookie name. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    /// Flagger's affinity cookie lifetime, in seconds. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
    /// Flagger's cookie for the primary. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cookie_name: Option<String>,
    /// Flagger's cookie Domain attribute. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Flagger's cookie Path attribute. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Flagger's cookie HttpOnly attribute. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// Flagger's cookie Secure attribute. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// Flagger's cookie SameSite attribute. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    /// Flagger's cookie Partitioned attribute. Rejected with sessionAffinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioned: Option<bool>,
}

/// Flagger's autoscaler of the target, which it copies for the primary. Accepted with a
/// warning and not needed: the Deployment's own autoscaler keeps scaling it through a
/// release, and the canary copy is sized from the Deployment's current replicas.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerRef {
    /// The autoscaler's API version (`autoscaling/v2`, or KEDA's `keda.sh/v1alpha1`).
    pub api_version: String,
    /// `HorizontalPodAutoscaler` or `ScaledObject`; anything else is rejected.
    pub kind: String,
    /// The autoscaler's name, in the Canary's namespace.
    pub name: String,
    /// Flagger's queries of the primary's KEDA ScaledObject. Ignored with a warning:
    /// there is no primary copy to scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    /// Flagger's replica bounds of the primary's autoscaler. Ignored with a warning:
    /// there is no primary copy to scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_replicas: Option<ScalerReplicas>,
}

/// Replica bounds of Flagger's primary autoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalerReplicas {
    /// The primary autoscaler's minimum replicas. Ignored, with autoscalerRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// The primary autoscaler's maximum replicas. Ignored, with autoscalerRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
}
