//! `ApisixRoute` (apisix.apache.org/v2), typed for the fields we read and write. Every
//! level keeps the fields we do not model, so a user's route round-trips unchanged.
//! APISIX owns its CRD: we generate no schema for it.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const API_VERSION: &str = "apisix.apache.org/v2";
pub const KIND: &str = "ApisixRoute";

/// Fields we do not model, kept as they came.
pub type Unmodelled = BTreeMap<String, Value>;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(group = "apisix.apache.org", version = "v2", kind = "ApisixRoute", namespaced, schema = "disabled")]
#[kube(derive = "PartialEq", derive = "Default")]
#[serde(rename_all = "camelCase")]
pub struct ApisixRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<HttpRule>>,
    #[serde(flatten)]
    pub other: Unmodelled,
}

/// One `spec.http[]` rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<RuleMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<Plugin>>,
    #[serde(flatten)]
    pub other: Unmodelled,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Header, query and cookie expressions, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exprs: Option<Vec<Value>>,
    #[serde(flatten)]
    pub other: Unmodelled,
}

/// A weighted Service backend; `weight: 0` means no traffic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<IntOrString>,
    /// `endpoints` (pod IPs, the default) or `service` (the ClusterIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_granularity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(flatten)]
    pub other: Unmodelled,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plugin {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(flatten)]
    pub other: Unmodelled,
}
