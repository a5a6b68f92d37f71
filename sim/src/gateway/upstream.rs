//! From a backend to the pod that answers: the Service, its EndpointSlices
//! (`kubernetes.io/service-name`), a ready endpoint and its Pod. Addresses are labels
//! only; nothing here dials them.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::apisix_route::Backend;
use crate::store::{ObjectKey, Store};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The balancer's choice for one request.
#[derive(Debug, Clone)]
pub struct Node {
    /// The `node` label: the endpoint's IP, or the ClusterIP with `resolveGranularity: service`.
    pub ip: String,
    pub pod: Arc<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("service {namespace}/{name} not found")]
    NoService { namespace: String, name: String },
    #[error("service {namespace}/{name} has no port {port}")]
    NoPort { namespace: String, name: String, port: String },
    #[error("no valid upstream node: service {namespace}/{name} has no ready endpoints")]
    NoEndpoints { namespace: String, name: String },
    /// An endpoint whose pod is gone: the connection would be refused.
    #[error("connect() to {ip} failed: no pod has this address")]
    NoPod { ip: String, node: String },
}

impl UpstreamError {
    /// The status APISIX answers with, and the `node` label of the request.
    pub fn status(&self) -> (u16, &str) {
        match self {
            UpstreamError::NoPod { node, .. } => (502, node),
            _ => (503, ""),
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn has_port(service: &Value, port: &IntOrString) -> bool {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array);
    let Some(ports) = ports.filter(|p| !p.is_empty()) else { return true };
    ports.iter().any(|p| match port {
        IntOrString::Int(n) => p.get("port").and_then(Value::as_i64) == Some(i64::from(*n)),
        IntOrString::String(s) => p.get("name").and_then(Value::as_str) == Some(s.as_str()),
    })
}

/// Where EndpointSlices are stored: (group, resource).
pub const SLICES: (&str, &str) = ("discovery.k8s.io", "endpointslices");

/// A ready endpoint: its address, and its Pod's name when the slice says.
pub type Endpoint = (String, Option<String>);

/// (namespace, Service) -> its ready endpoints.
pub type Index = HashMap<(String, String), Arc<Vec<Endpoint>>>;

/// The ready endpoints of every Service, from all EndpointSlices in `store`.
pub fn index(store: &Store) -> Index {
    let (slices, _) = store.list(SLICES.0, SLICES.1, None);
    let mut index: HashMap<(String, String), Vec<Endpoint>> = HashMap::new();
    for slice in &slices {
        let metadata = slice.get("metadata");
        let labels = metadata.and_then(|m| m.get("labels"));
        let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).and_then(Value::as_str) else { continue };
        let namespace = metadata.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or_default();
        let endpoints = index.entry((namespace.to_owned(), service.to_owned())).or_default();
        let listed = slice.get("endpoints").and_then(Value::as_array).into_iter().flatten();
        endpoints.extend(
            listed.filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false)).filter_map(|e| {
                let ip = str_at(e, "/addresses/0")?.to_owned();
                let pod = (str_at(e, "/targetRef/kind") == Some("Pod")).then(|| str_at(e, "/targetRef/name")).flatten();
                Some((ip, pod.map(str::to_owned)))
            }),
        );
    }
    index.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()
}

fn pod_of(store: &Store, namespace: &str, ip: &str, name: Option<&str>) -> Option<Arc<Value>> {
    if let Some(name) = name {
        return store.get(&ObjectKey::new("", "pods", namespace, name));
    }
    let (pods, _) = store.list("", "pods", Some(namespace));
    pods.into_iter().find(|p| str_at(p, "/status/podIP") == Some(ip))
}

/// Picks one of `endpoints`, the ready endpoints of the backend's Service, at random
/// like kube-proxy.
pub fn resolve(
    store: &Store,
    endpoints: &[Endpoint],
    namespace: &str,
    backend: &Backend,
) -> Result<Node, UpstreamError> {
    let name = backend.service_name.as_str();
    let service = store.get(&ObjectKey::new("", "services", namespace, name));
    let service = service.ok_or_else(|| UpstreamError::NoService { namespace: namespace.into(), name: name.into() })?;
    if let Some(port) = backend.service_port.as_ref().filter(|p| !has_port(&service, p)) {
        let port = match port {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        };
        return Err(UpstreamError::NoPort { namespace: namespace.into(), name: name.into(), port });
    }
    if endpoints.is_empty() {
        return Err(UpstreamError::NoEndpoints { namespace: namespace.into(), name: name.into() });
    }
    let (ip, pod_name) = &endpoints[fastrand::usize(..endpoints.len())];
    let node = if backend.resolve_granularity.as_deref() == Some("service") {
        str_at(&service, "/spec/clusterIP").unwrap_or_default().to_owned()
    } else {
        ip.clone()
    };
    match pod_of(store, namespace, ip, pod_name.as_deref()) {
        Some(pod) => Ok(Node { ip: node, pod }),
        None => Err(UpstreamError::NoPod { ip: ip.clone(), node }),
    }
}
