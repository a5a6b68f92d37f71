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
    /// `$upstream_addr`, the upstream node the ingress controller wrote: the endpoint's
    /// IP and its EndpointSlice port, or the ClusterIP and the Service port.
    pub addr: String,
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
    NoPod { ip: String, node: String, addr: String },
}

impl UpstreamError {
    /// The status APISIX answers with, and the `node` label of the request.
    pub fn status(&self) -> (u16, &str) {
        match self {
            UpstreamError::NoPod { node, .. } => (502, node),
            _ => (503, ""),
        }
    }

    /// `$upstream_addr`: the node tried, when the balancer chose one.
    pub fn addr(&self) -> Option<&str> {
        match self {
            UpstreamError::NoPod { addr, .. } => Some(addr),
            _ => None,
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn has_port(service: &Value, port: &IntOrString) -> bool {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array);
    let Some(ports) = ports.filter(|p| !p.is_empty()) else { return true };
    ports.iter().any(|p| is_port(p, port))
}

fn is_port(service_port: &Value, port: &IntOrString) -> bool {
    match port {
        IntOrString::Int(n) => service_port.get("port").and_then(Value::as_i64) == Some(i64::from(*n)),
        IntOrString::String(s) => service_port.get("name").and_then(Value::as_str) == Some(s.as_str()),
    }
}

/// The Service port a backend names (its first without `servicePort`).
fn service_port<'a>(service: &'a Value, port: Option<&IntOrString>) -> Option<&'a Value> {
    let mut ports = service.pointer("/spec/ports").and_then(Value::as_array)?.iter();
    match port {
        Some(port) => ports.find(|p| is_port(p, port)),
        None => ports.next(),
    }
}

/// The node's port as the ingress controller writes it: the Service port with
/// `resolveGranularity: service`; otherwise the EndpointSlice port named as the Service
/// port (the controller would list no node without one; the sim falls back on a
/// numeric `targetPort`, then the port).
fn node_port(service_port: Option<&Value>, backend: &Backend, endpoint: &Endpoint, by_service: bool) -> i64 {
    let given = match &backend.service_port {
        Some(IntOrString::Int(n)) => Some(i64::from(*n)),
        _ => None,
    };
    let port = service_port.and_then(|p| p.get("port")).and_then(Value::as_i64).or(given).unwrap_or(80);
    if by_service {
        return port;
    }
    let name = service_port.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or_default();
    let sliced = endpoint.ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p);
    sliced.or_else(|| service_port.and_then(|p| p.get("targetPort")).and_then(Value::as_i64)).unwrap_or(port)
}

/// Where EndpointSlices are stored: (group, resource).
pub const SLICES: (&str, &str) = ("discovery.k8s.io", "endpointslices");

/// A ready endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ip: String,
    /// Its Pod's name, when the slice says.
    pub pod: Option<String>,
    /// Its slice's ports: (name, or "" for none; port).
    pub ports: Arc<[(String, i64)]>,
}

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
        let ports: Arc<[(String, i64)]> = slice
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((str_at(p, "/name").unwrap_or_default().to_owned(), p.get("port")?.as_i64()?)))
            .collect();
        let listed = slice.get("endpoints").and_then(Value::as_array).into_iter().flatten();
        endpoints.extend(
            listed.filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false)).filter_map(|e| {
                let ip = str_at(e, "/addresses/0")?.to_owned();
                let pod = (str_at(e, "/targetRef/kind") == Some("Pod")).then(|| str_at(e, "/targetRef/name")).flatten();
                Some(Endpoint { ip, pod: pod.map(str::to_owned), ports: ports.clone() })
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
    let endpoint = &endpoints[fastrand::usize(..endpoints.len())];
    let by_service = backend.resolve_granularity.as_deref() == Some("service");
    let node = if by_service {
        str_at(&service, "/spec/clusterIP").unwrap_or_default().to_owned()
    } else {
        endpoint.ip.clone()
    };
    let port = node_port(service_port(&service, backend.service_port.as_ref()), backend, endpoint, by_service);
    let addr = format!("{node}:{port}");
    match pod_of(store, namespace, &endpoint.ip, endpoint.pod.as_deref()) {
        Some(pod) => Ok(Node { ip: node, addr, pod }),
        None => Err(UpstreamError::NoPod { ip: endpoint.ip.clone(), node, addr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_ports_are_the_ingress_controllers() {
        let service = json!({"spec": {"clusterIP": "10.96.0.9", "ports": [
            {"name": "http", "port": 80, "targetPort": 9898}, {"name": "metrics", "port": 9797, "targetPort": 9797}]}});
        let endpoint = |ports: &[(&str, i64)]| Endpoint {
            ip: "10.244.0.5".into(),
            pod: None,
            ports: ports.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect(),
        };
        let backend = |port: Option<IntOrString>| Backend { service_port: port, ..Backend::default() };
        let port = |p: Option<IntOrString>, e: &Endpoint, by_service: bool| {
            node_port(service_port(&service, p.as_ref()), &backend(p.clone()), e, by_service)
        };
        let sliced = endpoint(&[("metrics", 9797), ("http", 8080)]);
        assert_eq!(port(Some(IntOrString::Int(80)), &sliced, true), 80);
        assert_eq!(port(Some(IntOrString::String("metrics".into())), &sliced, true), 9797);
        assert_eq!(port(Some(IntOrString::Int(80)), &sliced, false), 8080, "the slice port named as the Service's");
        assert_eq!(port(None, &sliced, false), 8080, "no servicePort: the Service's first");
        assert_eq!(port(Some(IntOrString::Int(80)), &endpoint(&[]), false), 9898, "no slice port: the targetPort");
    }
}
