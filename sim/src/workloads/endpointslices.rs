//! The EndpointSlice controller: for every Service with a selector, slices of the
//! addressed pods it selects (ready, serving, terminating), one per resolved port set,
//! or one empty placeholder when no pod is there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::pods::is_ready;
use super::queue::{Kind, Name};
use super::{Controllers, controller_ref, is_deleting, str_at, uid_of};
use crate::selector::labels;

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const HEADLESS: &str = "service.kubernetes.io/headless";

/// The label selector of a Service; `None` when it selects by hand (no selector).
fn selector(service: &Value) -> Option<&Map<String, Value>> {
    service.pointer("/spec/selector")?.as_object().filter(|s| !s.is_empty())
}

/// `podutil.FindPort`: a numeric targetPort as is, a named one from the pod's
/// container ports (same protocol).
fn target_port(service_port: &Value, pod: &Value) -> Option<i64> {
    let target = service_port.get("targetPort").or_else(|| service_port.get("port"))?;
    if let Some(n) = target.as_i64() {
        return Some(n);
    }
    let name = target.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let protocol = service_port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    pod.pointer("/spec/containers")?.as_array()?.iter().find_map(|c| {
        c.get("ports")?.as_array()?.iter().find_map(|p| {
            let same = p["name"] == name && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol;
            same.then(|| p.get("containerPort").and_then(Value::as_i64)).flatten()
        })
    })
}

/// The slice ports of a pod: the Service's ports it resolves.
fn ports_of(service: &Value, pod: &Value) -> Vec<Value> {
    let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            let port = target_port(sp, pod)?;
            let mut p = json!({"name": sp.get("name").cloned().unwrap_or(json!("")), "port": port,
                "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(app) = sp.get("appProtocol") {
                p["appProtocol"] = app.clone();
            }
            Some(p)
        })
        .collect()
}

/// An endpoint for a pod with an IPv4 address.
fn endpoint(pod: &Value) -> Option<Value> {
    let ip = str_at(pod, "/status/podIP");
    if ip.is_empty() || ip.contains(':') {
        return None;
    }
    let terminating = is_deleting(pod);
    let ready = is_ready(pod);
    let mut e = json!({
        "addresses": [ip],
        "conditions": {"ready": ready && !terminating, "serving": ready, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": str_at(pod, "/metadata/namespace"),
            "name": str_at(pod, "/metadata/name"), "uid": uid_of(pod)},
    });
    if let Some(node) = pod.pointer("/spec/nodeName").filter(|n| n.as_str().is_some_and(|n| !n.is_empty())) {
        e["nodeName"] = node.clone();
    }
    Some(e)
}

/// The endpoints of `service` grouped by their port list; one empty group when none.
pub fn desired(service: &Value, pods: &[&Value]) -> Vec<(Vec<Value>, Vec<Value>)> {
    let Some(selector) = selector(service) else { return Vec::new() };
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    let mut chosen: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| {
            let have = labels(p);
            selector.iter().all(|(k, v)| have.get(k).map(String::as_str) == v.as_str())
                && !matches!(str_at(p, "/status/phase"), "Succeeded" | "Failed")
        })
        .collect();
    chosen.sort_by_key(|p| str_at(p, "/metadata/name"));
    for pod in chosen {
        let Some(e) = endpoint(pod) else { continue };
        let ports = ports_of(service, pod);
        groups.entry(Value::Array(ports.clone()).to_string()).or_insert_with(|| (ports, Vec::new())).1.push(e);
    }
    if groups.is_empty() {
        return vec![(Vec::new(), Vec::new())];
    }
    groups.into_values().collect()
}

/// The slice `existing` (or a new one) made to hold `endpoints` on `ports`.
pub fn slice(service: &Value, existing: Option<&Value>, ports: &[Value], endpoints: &[Value]) -> Value {
    let name = str_at(service, "/metadata/name");
    let mut slice = existing.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": format!("{name}-"), "namespace": str_at(service, "/metadata/namespace")}})
    });
    let mut wanted: Map<String, Value> =
        service.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    wanted.insert(SERVICE_NAME.into(), json!(name));
    wanted.insert(MANAGED_BY.into(), json!(CONTROLLER));
    if str_at(service, "/spec/clusterIP") == "None" {
        wanted.insert(HEADLESS.into(), json!(""));
    }
    slice["metadata"]["labels"] = Value::Object(wanted);
    slice["metadata"]["ownerReferences"] = json!([controller_ref(service)]);
    slice["addressType"] = json!("IPv4");
    slice["endpoints"] = json!(endpoints);
    match ports {
        [] => {
            if let Some(m) = slice.as_object_mut() {
                m.remove("ports");
            }
        }
        _ => slice["ports"] = json!(ports),
    }
    slice
}

/// The port list of an existing slice, as [`desired`] keys it.
fn ports_key(slice: &Value) -> String {
    Value::Array(slice.get("ports").and_then(Value::as_array).cloned().unwrap_or_default()).to_string()
}

impl Controllers {
    /// Keeps the slices of the Services `names` in step with their pods.
    pub(super) async fn endpoint_slices(&mut self, names: BTreeSet<Name>) {
        let kind = self.kinds.endpoint_slice.clone();
        for (ns, name) in names {
            // Events keep coming while a long pass runs: take them before they overflow.
            self.drain_events();
            let Some(service) = self.cluster.get_raw("", "services", &ns, &name) else { continue };
            let get = |resource: &str, names: Vec<String>| -> Vec<Arc<Value>> {
                names.iter().filter_map(|n| self.cluster.get_raw(&kind.group, resource, &ns, n)).collect()
            };
            let mut existing = get(&kind.plural, self.slices_by_service.get(&ns, "", &name));
            // Every selected pod carries the selector's first pair: its candidates.
            let candidates: Vec<Arc<Value>> = match selector(&service).and_then(|s| s.iter().next()) {
                Some((k, v)) => {
                    let names = self.pods_by_label.get(&ns, k, v.as_str().unwrap_or_default());
                    names.iter().filter_map(|n| self.cluster.get_raw("", "pods", &ns, n)).collect()
                }
                None => Vec::new(),
            };
            let wanted = if service.pointer("/spec/type") == Some(&json!("ExternalName")) || is_deleting(&service) {
                Vec::new()
            } else {
                let candidates: Vec<&Value> = candidates.iter().map(|p| &**p).collect();
                desired(&service, &candidates)
            };
            for (ports, endpoints) in wanted {
                let key = Value::Array(ports.clone()).to_string();
                let reuse = existing.iter().position(|s| ports_key(s) == key);
                let current = reuse.map(|i| existing.remove(i));
                let next = slice(&service, current.as_deref(), &ports, &endpoints);
                let written = match current {
                    Some(current) if *current == next => continue,
                    Some(_) => self.replace(&kind, None, next).await.map(|_| ()),
                    None => self.create(&kind, next).await.map(|_| ()),
                };
                if let Err(e) = written {
                    e.log();
                    self.retry(Kind::Service, (&ns, &name));
                }
            }
            for stale in existing {
                if let Err(e) = self.delete(&kind, &ns, str_at(&stale, "/metadata/name")).await {
                    e.log();
                    self.retry(Kind::Service, (&ns, &name));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(target: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}]}})
    }

    fn pod(name: &str, ip: &str, ready: bool, port: i64) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
            "labels": {"app": "web"}},
            "spec": {"nodeName": "sim-node", "containers": [{"name": "c",
                "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": "Running"}});
        if !ip.is_empty() {
            p["status"]["podIP"] = json!(ip);
        }
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        p
    }

    #[test]
    fn endpoints_of_addressed_selected_pods() {
        let mut other = pod("other", "10.244.0.9", true, 9898);
        other["metadata"]["labels"]["app"] = json!("db");
        let mut leaving = pod("c-leaving", "10.244.0.4", true, 9898);
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let pods = [
            pod("b-ready", "10.244.0.2", true, 9898),
            pod("a-starting", "10.244.0.3", false, 9898),
            pod("d-unaddressed", "", false, 9898),
            leaving,
            other,
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let groups = desired(&service(json!("http")), &refs);
        assert_eq!(groups.len(), 1);
        let (ports, endpoints) = &groups[0];
        assert_eq!(ports, &[json!({"name": "http", "port": 9898, "protocol": "TCP"})]);
        let summary: Vec<(&str, &Value)> =
            endpoints.iter().map(|e| (e["addresses"][0].as_str().unwrap(), &e["conditions"])).collect();
        assert_eq!(
            summary,
            [
                ("10.244.0.3", &json!({"ready": false, "serving": false, "terminating": false})),
                ("10.244.0.2", &json!({"ready": true, "serving": true, "terminating": false})),
                ("10.244.0.4", &json!({"ready": false, "serving": true, "terminating": true})),
            ]
        );
        assert_eq!(
            endpoints[1]["targetRef"],
            json!({"kind": "Pod", "namespace": "default", "name": "b-ready",
            "uid": "b-ready-uid"})
        );
        assert_eq!(endpoints[1]["nodeName"], "sim-node");
    }

    #[test]
    fn named_ports_resolve_per_pod() {
        let pods = [pod("a", "10.244.0.2", true, 8080), pod("b", "10.244.0.3", true, 9090)];
        let refs: Vec<&Value> = pods.iter().collect();
        let groups = desired(&service(json!("http")), &refs);
        let ports: Vec<&Value> = groups.iter().map(|(p, _)| &p[0]["port"]).collect();
        assert_eq!(ports, [&json!(8080), &json!(9090)]);
        let numeric = desired(&service(json!(7000)), &refs);
        assert_eq!(numeric.len(), 1);
        assert_eq!(numeric[0].1.len(), 2);
    }

    #[test]
    fn slices_are_labelled_owned_and_placeholders_empty() {
        let svc = service(json!(80));
        let groups = desired(&svc, &[]);
        assert_eq!(groups, [(vec![], vec![])]);
        let s = slice(&svc, None, &[], &[]);
        assert_eq!(s["metadata"]["generateName"], "web-");
        assert_eq!(s["metadata"]["labels"], json!({"team": "a", SERVICE_NAME: "web", MANAGED_BY: CONTROLLER}));
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(s["endpoints"], json!([]));
        assert!(s.get("ports").is_none());
        let manual = json!({"metadata": {"name": "m"}, "spec": {"ports": [{"port": 80}]}});
        assert!(desired(&manual, &[]).is_empty(), "no selector, no managed slices");
    }
}
