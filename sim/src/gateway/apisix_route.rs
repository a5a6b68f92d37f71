//! ApisixRoute (`apisix.apache.org/v2`) as the gateway reads it, written from APISIX's
//! own CRD (`src/apisix/apisixroute-crd.yaml`, which the sim installs): the HTTP rules
//! with their match, backends and plugins. What the gateway does not simulate (stream
//! routes, authentication, upstreams, timeouts, websocket) is not read.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Where ApisixRoutes live in the store.
pub const GROUP: &str = "apisix.apache.org";
pub const PLURAL: &str = "apisixroutes";

/// `null` read as the type's default, like an absent field.
fn or_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One ApisixRoute object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApisixRoute {
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, deserialize_with = "or_default")]
    pub spec: Spec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    #[serde(default, deserialize_with = "or_default")]
    pub namespace: String,
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Spec {
    /// `spec.http`: the HTTP route rules.
    #[serde(default, deserialize_with = "or_default")]
    pub http: Vec<HttpRule>,
}

/// `spec.http[]` (`ApisixRouteHTTP`): `name` is required and unique within the route.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpRule {
    pub name: String,
    /// Among rules matching the same path, the higher wins (default 0).
    #[serde(default, deserialize_with = "or_default")]
    pub priority: i64,
    #[serde(default, rename = "match", deserialize_with = "or_default")]
    pub match_: Match,
    /// With two or more, the `traffic-split` plugin shares traffic by `weight`.
    #[serde(default, deserialize_with = "or_default")]
    pub backends: Vec<Backend>,
    #[serde(default, deserialize_with = "or_default")]
    pub plugins: Vec<Plugin>,
}

/// `spec.http[].match`: `paths` is required by the CRD.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Match {
    #[serde(default, deserialize_with = "or_default")]
    pub paths: Vec<String>,
    /// Exact or one-level `*.` wildcard host names.
    #[serde(default, deserialize_with = "or_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub methods: Vec<String>,
    /// Nginx-variable expressions (`subject`, `op`, `value` or `set`), compiled by the gateway.
    #[serde(default, deserialize_with = "or_default")]
    pub exprs: Vec<Value>,
}

/// `spec.http[].backends[]` (`ApisixRouteHTTPBackend`): a Service of the route's namespace.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub service_name: String,
    /// A port number or name of the Service.
    #[serde(default)]
    pub service_port: Option<IntOrString>,
    /// `endpoints` (pod IPs, the default) or `service` (the ClusterIP).
    #[serde(default)]
    pub resolve_granularity: Option<String>,
    #[serde(default)]
    pub weight: Option<i64>,
    #[serde(default)]
    pub subset: Option<String>,
}

/// `null` or absent read as `true`: the CRD's `default: true`, which kube-apiserver
/// writes into a stored object and the sim's API server does not.
fn or_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

fn yes() -> bool {
    true
}

/// `spec.http[].plugins[]`: `name` and `enable` (default `true`) are required by the
/// CRD. The ingress controller passes `config` to APISIX as is, under the plugin's
/// name, for each entry enabled (the last of a name wins) and leaves out the others.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Plugin {
    pub name: String,
    #[serde(default = "yes", deserialize_with = "or_true")]
    pub enable: bool,
    #[serde(default)]
    pub config: Option<Value>,
}
