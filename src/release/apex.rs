//! Flagger's apex Service: the Service in front of the target, generated from a
//! Canary's `spec.service` when it does not exist, owned by the Canary. It selects the
//! Deployment's own pods (the stable version; the canary pods' selector values end in
//! `-canary`), so the user's route keeps working as in Flagger. A Service that exists
//! and is not ours is used as it is, never rewritten.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::copies::{self, CopyError};
use crate::release::lifecycle::Apex;

/// The port name Flagger gives the apex Service's port when `portName` is not set.
pub const DEFAULT_PORT_NAME: &str = "http";

/// `spec.service` as the apex Service needs it, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ApexService {
    pub port: u16,
    /// The container port, a number or a name (default: `port`).
    pub target_port: IntOrString,
    pub port_name: String,
    pub app_protocol: Option<String>,
    /// Every other named container port of the target is exposed too.
    pub port_discovery: bool,
    pub headless: bool,
    pub traffic_distribution: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The apex Service `name` for `target`, owned by `owner` (the Canary).
pub fn service(
    name: &str,
    apex: &ApexService,
    target: &Deployment,
    owner: OwnerReference,
) -> Result<Service, CopyError> {
    let selector = copies::selector_labels(target)?.clone();
    let main = ServicePort {
        name: Some(apex.port_name.clone()),
        port: i32::from(apex.port),
        target_port: Some(apex.target_port.clone()),
        protocol: Some("TCP".to_owned()),
        app_protocol: apex.app_protocol.clone(),
        node_port: None,
    };
    let mut ports = vec![main];
    if apex.port_discovery {
        ports.extend(discovered(apex, target));
    }
    let mut labels = apex.labels.clone();
    labels.insert(copies::MANAGED_BY_LABEL.to_owned(), copies::MANAGED_BY.to_owned());
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: target.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!apex.annotations.is_empty()).then(|| apex.annotations.clone()),
            owner_references: Some(vec![copies::controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: apex.headless.then(|| "None".to_owned()),
            selector: Some(selector),
            ports: Some(ports),
            traffic_distribution: apex.traffic_distribution.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The target's other named TCP container ports, each exposed on its own number, as
/// Flagger's `portDiscovery` adds them.
fn discovered(apex: &ApexService, target: &Deployment) -> Vec<ServicePort> {
    let containers = target.spec.as_ref().map(|s| s.template.spec.as_ref().map(|p| &p.containers[..]));
    let mut seen = vec![apex.port_name.clone()];
    let mut out = Vec::new();
    for port in containers.flatten().unwrap_or_default().iter().flat_map(|c| c.ports.iter().flatten()) {
        let Some(name) = port.name.clone() else { continue };
        let tcp = port.protocol.as_deref().is_none_or(|p| p == "TCP");
        let main = i32::from(apex.port) == port.container_port
            || apex.target_port == IntOrString::Int(port.container_port)
            || apex.target_port == IntOrString::String(name.clone());
        if !tcp || main || seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        out.push(ServicePort {
            name: Some(name),
            port: port.container_port,
            target_port: Some(IntOrString::Int(port.container_port)),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        });
    }
    out
}

/// Where the apex Service stands: `existing` is the Service of that name, if any, and
/// `owner_uid` the Canary's uid.
pub fn state(existing: Option<&Service>, desired: &Service, owner_uid: &str) -> Apex {
    let Some(existing) = existing else { return Apex::Stale };
    let ours = existing.metadata.owner_references.iter().flatten().any(|o| o.uid == owner_uid);
    if !ours {
        return Apex::Kept;
    }
    if same(existing, desired) { Apex::Current } else { Apex::Stale }
}

/// Whether `existing` already says what `desired` says, ignoring what the API server
/// fills in (cluster IPs, defaults).
fn same(existing: &Service, desired: &Service) -> bool {
    let (e, d) = (existing.spec.clone().unwrap_or_default(), desired.spec.clone().unwrap_or_default());
    let port = |p: &ServicePort| {
        let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
        (p.name.clone(), p.port, target, p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()), p.app_protocol.clone())
    };
    let ports = |s: &ServiceSpec| s.ports.iter().flatten().map(port).collect::<Vec<_>>();
    let headless = |s: &ServiceSpec| s.cluster_ip.as_deref() == Some("None");
    let contains = |have: Option<&BTreeMap<String, String>>, want: Option<&BTreeMap<String, String>>| {
        want.into_iter().flatten().all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    };
    ports(&e) == ports(&d)
        && e.selector == d.selector
        && headless(&e) == headless(&d)
        && e.traffic_distribution == d.traffic_distribution
        && contains(existing.metadata.labels.as_ref(), desired.metadata.labels.as_ref())
        && contains(existing.metadata.annotations.as_ref(), desired.metadata.annotations.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn podinfo() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "selector": {"matchLabels": {"app": "podinfo"}},
                "template": {
                    "metadata": {"labels": {"app": "podinfo"}},
                    "spec": {"containers": [{"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                        "ports": [{"name": "http", "containerPort": 9898},
                                  {"name": "http-metrics", "containerPort": 9797},
                                  {"name": "grpc", "containerPort": 9999},
                                  {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}
                }
            }
        }))
        .unwrap()
    }

    fn article() -> ApexService {
        ApexService {
            port: 80,
            target_port: IntOrString::Int(9898),
            port_name: DEFAULT_PORT_NAME.to_owned(),
            app_protocol: None,
            port_discovery: false,
            headless: false,
            traffic_distribution: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apisix-canary.dev/v1beta1".into(),
            kind: "Canary".into(),
            name: "podinfo".into(),
            uid: "uid-1".into(),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn the_articles_service_block_makes_flaggers_apex_service() {
        let svc = service("podinfo", &article(), &podinfo(), owner()).unwrap();
        let v = serde_json::to_value(&svc).unwrap();
        assert_eq!(v["spec"]["selector"], json!({"app": "podinfo"}), "the stable pods only");
        assert_eq!(v["spec"]["ports"], json!([{"name": "http", "port": 80, "targetPort": 9898, "protocol": "TCP"}]));
        assert_eq!(v["spec"]["type"], "ClusterIP");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/managed-by"], "apisix-canary");
        // The canary pods' labels end in -canary: this Service never selects them.
        let copy = copies::canary_deployment(&podinfo(), 1, owner()).unwrap();
        assert_eq!(copies::check_service(&svc, &copy), Ok(()));
    }

    #[test]
    fn port_discovery_headless_and_metadata() {
        let apex = ApexService {
            port_discovery: true,
            headless: true,
            app_protocol: Some("http".into()),
            traffic_distribution: Some("PreferClose".into()),
            labels: [("team".to_owned(), "a".to_owned())].into(),
            annotations: [("note".to_owned(), "apex".to_owned())].into(),
            ..article()
        };
        let v = serde_json::to_value(service("web", &apex, &podinfo(), owner()).unwrap()).unwrap();
        let names: Vec<&str> =
            v["spec"]["ports"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["http", "http-metrics", "grpc"], "UDP and the main port are not repeated");
        assert_eq!(v["spec"]["ports"][0]["appProtocol"], "http");
        assert_eq!(
            v["spec"]["ports"][1],
            json!({"name": "http-metrics", "port": 9797, "targetPort": 9797, "protocol": "TCP"})
        );
        assert_eq!(
            (v["spec"]["clusterIP"].as_str(), v["spec"]["trafficDistribution"].as_str()),
            (Some("None"), Some("PreferClose"))
        );
        assert_eq!(
            (v["metadata"]["labels"]["team"].as_str(), v["metadata"]["annotations"]["note"].as_str()),
            (Some("a"), Some("apex"))
        );
    }

    #[test]
    fn a_service_is_rewritten_only_when_ours_and_different() {
        let desired = service("podinfo", &article(), &podinfo(), owner()).unwrap();
        assert_eq!(state(None, &desired, "uid-1"), Apex::Stale, "missing: made");
        // As the API server returns it: a cluster IP and defaults filled in.
        let mut stored = desired.clone();
        let spec = stored.spec.as_mut().unwrap();
        spec.cluster_ip = Some("10.96.0.12".into());
        spec.session_affinity = Some("None".into());
        assert_eq!(state(Some(&stored), &desired, "uid-1"), Apex::Current);
        let moved = service("podinfo", &ApexService { port: 8080, ..article() }, &podinfo(), owner()).unwrap();
        assert_eq!(state(Some(&stored), &moved, "uid-1"), Apex::Stale, "spec.service.port changed");
        // The user's own Service is used as it is.
        let mut users = stored.clone();
        users.metadata.owner_references = None;
        assert_eq!(state(Some(&users), &moved, "uid-1"), Apex::Kept);
    }
}
