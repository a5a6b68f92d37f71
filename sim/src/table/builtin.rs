//! kube-apiserver's printers for the built-in kinds the sim serves.

use serde_json::{Value, json};

use super::{age, int, text};

/// One column: name, type, priority (1 = only with `-o wide`).
pub(super) type Column = (&'static str, &'static str, u8);

fn containers_and_images(object: &Value, spec: &str) -> (String, String) {
    let containers = object.pointer(spec).and_then(Value::as_array).cloned().unwrap_or_default();
    let names: Vec<String> = containers.iter().map(|c| text(c.get("name"))).collect();
    let images: Vec<String> = containers.iter().map(|c| text(c.get("image"))).collect();
    (names.join(","), images.join(","))
}

fn selector(object: &Value, pointer: &str) -> String {
    let labels = object.pointer(pointer).and_then(Value::as_object).cloned().unwrap_or_default();
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", text(Some(v)))).collect();
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

/// The columns and cells of a built-in kind, as kube-apiserver prints them.
pub(super) fn builtin(kind: &str, o: &Value) -> Option<(Vec<Column>, Vec<Value>)> {
    let name = json!(text(o.pointer("/metadata/name")));
    Some(match kind {
        "Deployment" => {
            let (c, i) = containers_and_images(o, "/spec/template/spec/containers");
            let ready = format!("{}/{}", int(o.pointer("/status/readyReplicas")), int(o.pointer("/spec/replicas")));
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Up-to-date", "string", 0),
                    ("Available", "string", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(ready),
                    json!(int(o.pointer("/status/updatedReplicas"))),
                    json!(int(o.pointer("/status/availableReplicas"))),
                    json!(age(o)),
                    json!(c),
                    json!(i),
                    json!(selector(o, "/spec/selector/matchLabels")),
                ],
            )
        }
        "ReplicaSet" => {
            let (c, i) = containers_and_images(o, "/spec/template/spec/containers");
            (
                vec![
                    ("Name", "string", 0),
                    ("Desired", "integer", 0),
                    ("Current", "integer", 0),
                    ("Ready", "integer", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(int(o.pointer("/spec/replicas"))),
                    json!(int(o.pointer("/status/replicas"))),
                    json!(int(o.pointer("/status/readyReplicas"))),
                    json!(age(o)),
                    json!(c),
                    json!(i),
                    json!(selector(o, "/spec/selector/matchLabels")),
                ],
            )
        }
        "Pod" => {
            let statuses =
                o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|s| int(s.get("restartCount"))).sum();
            let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating".to_owned()
            } else {
                text(o.pointer("/status/phase"))
            };
            let ip = o.pointer("/status/podIP").map_or("<none>".to_owned(), |v| text(Some(v)));
            let node = o.pointer("/spec/nodeName").map_or("<none>".to_owned(), |v| text(Some(v)));
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Status", "string", 0),
                    ("Restarts", "string", 0),
                    ("Age", "string", 0),
                    ("IP", "string", 1),
                    ("Node", "string", 1),
                    ("Nominated Node", "string", 1),
                    ("Readiness Gates", "string", 1),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(status),
                    json!(restarts.to_string()),
                    json!(age(o)),
                    json!(ip),
                    json!(node),
                    json!("<none>"),
                    json!("<none>"),
                ],
            )
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", text(p.get("port")), text(p.get("protocol")).if_empty("TCP")))
                .collect();
            (
                vec![
                    ("Name", "string", 0),
                    ("Type", "string", 0),
                    ("Cluster-IP", "string", 0),
                    ("External-IP", "string", 0),
                    ("Port(s)", "string", 0),
                    ("Age", "string", 0),
                    ("Selector", "string", 1),
                ],
                vec![
                    name,
                    json!(text(o.pointer("/spec/type"))),
                    json!(text(o.pointer("/spec/clusterIP"))),
                    json!("<none>"),
                    json!(if ports.is_empty() { "<none>".to_owned() } else { ports.join(",") }),
                    json!(age(o)),
                    json!(selector(o, "/spec/selector")),
                ],
            )
        }
        "Node" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            let roles: Vec<&str> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            (
                vec![
                    ("Name", "string", 0),
                    ("Status", "string", 0),
                    ("Roles", "string", 0),
                    ("Age", "string", 0),
                    ("Version", "string", 0),
                ],
                vec![
                    name,
                    json!(if ready { "Ready" } else { "NotReady" }),
                    json!(if roles.is_empty() { "<none>".to_owned() } else { roles.join(",") }),
                    json!(age(o)),
                    json!(text(o.pointer("/status/nodeInfo/kubeletVersion"))),
                ],
            )
        }
        "HorizontalPodAutoscaler" => (super::hpa::columns(), super::hpa::cells(o)),
        "Namespace" => (
            vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
            vec![name, json!(text(o.pointer("/status/phase"))), json!(age(o))],
        ),
        "Event" => (super::event::columns(), super::event::cells(o)),
        "ConfigMap" | "Secret" => {
            let data = o.get("data").and_then(Value::as_object).map_or(0, serde_json::Map::len);
            (
                vec![("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
                vec![name, json!(data), json!(age(o))],
            )
        }
        "EndpointSlice" => {
            let ports: Vec<String> =
                o.get("ports").and_then(Value::as_array).into_iter().flatten().map(|p| text(p.get("port"))).collect();
            let addresses: Vec<String> = o
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| text(Some(&a)))
                .collect();
            (
                vec![
                    ("Name", "string", 0),
                    ("AddressType", "string", 0),
                    ("Ports", "string", 0),
                    ("Endpoints", "string", 0),
                    ("Age", "string", 0),
                ],
                vec![
                    name,
                    json!(text(o.get("addressType"))),
                    json!(ports.join(",")),
                    json!(if addresses.is_empty() { "<unset>".to_owned() } else { addresses.join(",") }),
                    json!(age(o)),
                ],
            )
        }
        _ => return None,
    })
}

trait IfEmpty {
    fn if_empty(self, default: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, default: &str) -> String {
        if self.is_empty() { default.to_owned() } else { self }
    }
}
