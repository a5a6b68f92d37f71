//! Server-side printing (`meta.k8s.io/v1 Table`), so `kubectl get` shows the columns a
//! real cluster shows: kube-apiserver's printers for the built-in kinds, and a CRD's
//! `additionalPrinterColumns` for custom resources.

use serde_json::{Value, json};

use super::resources::Resource;

/// Whether an `Accept` header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// One column: name, type, priority (1 = only with `-o wide`).
type Column = (&'static str, &'static str, u8);

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// kube's `HumanDuration`: `45s`, `3m20s`, `5h`, `2d3h`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn age(object: &Value) -> String {
    let created = object.pointer("/metadata/creationTimestamp").and_then(Value::as_str);
    let parsed = created.and_then(|c| c.parse::<k8s_openapi::jiff::Timestamp>().ok());
    match parsed {
        Some(t) => human_age(k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

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
fn builtin(kind: &str, o: &Value) -> Option<(Vec<Column>, Vec<Value>)> {
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
        "Namespace" => (
            vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
            vec![name, json!(text(o.pointer("/status/phase"))), json!(age(o))],
        ),
        "Event" => {
            let involved = o.get("involvedObject").or_else(|| o.get("regarding")).cloned().unwrap_or_default();
            let last = o.get("lastTimestamp").or_else(|| o.get("eventTime")).and_then(Value::as_str);
            let seen = last
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .map_or_else(|| age(o), |t| human_age(k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()));
            let object = format!("{}/{}", text(involved.get("kind")).to_lowercase(), text(involved.get("name")));
            let message = o.get("message").or_else(|| o.get("note"));
            (
                vec![
                    ("Last Seen", "string", 0),
                    ("Type", "string", 0),
                    ("Reason", "string", 0),
                    ("Object", "string", 0),
                    ("Message", "string", 0),
                ],
                vec![
                    json!(seen),
                    json!(text(o.get("type"))),
                    json!(text(o.get("reason"))),
                    json!(object),
                    json!(text(message)),
                ],
            )
        }
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

/// A CRD's printer columns for `version`: (name, type, priority, jsonPath).
fn crd_columns(r: &Resource, version: &str) -> Vec<(String, String, u8, String)> {
    let versions =
        r.crd.as_ref().and_then(|c| c.pointer("/spec/versions")).and_then(Value::as_array).cloned().unwrap_or_default();
    let v = versions.iter().find(|v| v["name"] == version);
    v.and_then(|v| v.get("additionalPrinterColumns"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            (
                text(c.get("name")),
                text(c.get("type")),
                c["priority"].as_u64().unwrap_or(0) as u8,
                text(c.get("jsonPath")),
            )
        })
        .collect()
}

/// The values at a simple JSONPath: `.status.phase`, `.spec.http[].match.hosts`
/// (`[]` and `[*]` visit every element).
fn walk<'a>(v: &'a Value, parts: &[&str], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = parts.split_first() else {
        out.push(v);
        return;
    };
    let (field, each) = match first.strip_suffix("[]").or_else(|| first.strip_suffix("[*]")) {
        Some(field) => (field, true),
        None => (*first, false),
    };
    let Some(next) = (if field.is_empty() { Some(v) } else { v.get(field) }) else { return };
    if each {
        for item in next.as_array().into_iter().flatten() {
            walk(item, rest, out);
        }
    } else {
        walk(next, rest, out);
    }
}

/// A printer-column cell: one value as is, several (or an array) as JSON, dates as ages.
fn cell(o: &Value, path: &str, type_: &str) -> Value {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut found = Vec::new();
    walk(o, &parts, &mut found);
    let value = match found.as_slice() {
        [] => return Value::Null,
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    };
    match (&value, type_) {
        (Value::String(t), "date") => t
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map(|t| json!(human_age(k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second())))
            .unwrap_or(value),
        (Value::Array(_) | Value::Object(_), _) => json!(serde_json::to_string(&value).unwrap_or_default()),
        _ => value,
    }
}

/// The Table of `objects` of resource `r` at `version`.
pub fn table(r: &Resource, version: &str, objects: &[Value], resource_version: &str) -> Value {
    let partial = |o: &Value| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or_default()});
    let (columns, rows): (Vec<Value>, Vec<Value>) = if r.crd.is_some() {
        let custom = crd_columns(r, version);
        let mut columns = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ];
        if custom.is_empty() {
            columns.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
        }
        for (name, type_, priority, _) in &custom {
            columns.push(json!({"name": name, "type": type_, "format": "", "description": "", "priority": priority}));
        }
        let rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![json!(text(o.pointer("/metadata/name")))];
                if custom.is_empty() {
                    cells.push(json!(age(o)));
                }
                cells.extend(custom.iter().map(|(_, type_, _, path)| cell(o, path, type_)));
                json!({"cells": cells, "object": partial(o)})
            })
            .collect();
        (columns, rows)
    } else {
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        for o in objects {
            let (cols, cells) = builtin(&r.kind, o).unwrap_or_else(|| {
                (
                    vec![("Name", "string", 0), ("Age", "string", 0)],
                    vec![json!(text(o.pointer("/metadata/name"))), json!(age(o))],
                )
            });
            if columns.is_empty() {
                columns = cols
                    .iter()
                    .map(|(n, t, p)| {
                        let format = if *n == "Name" { "name" } else { "" };
                        json!({"name": n, "type": t, "format": format, "description": "", "priority": p})
                    })
                    .collect();
            }
            rows.push(json!({"cells": cells, "object": partial(o)}));
        }
        if columns.is_empty() {
            let cols = builtin(&r.kind, &json!({}))
                .map(|(c, _)| c)
                .unwrap_or_else(|| vec![("Name", "string", 0), ("Age", "string", 0)]);
            columns = cols
                .iter()
                .map(|(n, t, p)| json!({"name": n, "type": t, "format": "", "description": "", "priority": p}))
                .collect();
        }
        (columns, rows)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86_400, "3d"),
        ] {
            assert_eq!(human_age(s), want);
        }
        assert!(wanted("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wanted("application/json"));
    }
}
