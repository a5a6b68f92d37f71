//! `metadata.managedFields`, in the shape kube-apiserver writes it: one entry per
//! manager and operation, with the fields it set (`FieldsV1`). Ownership is recorded,
//! not enforced: conflicts between managers are not detected (see README).

use serde_json::{Map, Value, json};

/// Metadata fields the API server owns; never part of a manager's set.
const SERVER_OWNED: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
];

fn fields(v: &Value, top: bool) -> Value {
    let Some(map) = v.as_object() else { return json!({}) };
    let mut out = Map::new();
    if !top {
        out.insert(".".into(), json!({}));
    }
    for (k, child) in map {
        if top && (k == "apiVersion" || k == "kind") {
            continue;
        }
        if k == "metadata" && top {
            let meta: Map<String, Value> = child
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !SERVER_OWNED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !meta.is_empty() {
                let mut set = fields(&Value::Object(meta), true);
                if let Some(m) = set.as_object_mut() {
                    m.remove(".");
                }
                out.insert("f:metadata".into(), set);
            }
            continue;
        }
        let entry = match child {
            Value::Object(_) => fields(child, false),
            _ => json!({}),
        };
        out.insert(format!("f:{k}"), entry);
    }
    Value::Object(out)
}

/// The `FieldsV1` set of what a request wrote.
pub fn fields_v1(written: &Value) -> Value {
    fields(written, true)
}

/// Records (or replaces) `manager`'s entry for `operation` on `object`.
pub fn record(object: &mut Value, manager: &str, operation: &str, sub: Option<&str>, written: &Value) {
    let api_version = object.get("apiVersion").cloned().unwrap_or_default();
    let set = fields_v1(written);
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let entries = meta.entry("managedFields").or_insert_with(|| json!([]));
    let Some(list) = entries.as_array_mut() else { return };
    list.retain(|e| {
        !(e["manager"] == manager && e["operation"] == operation && e.get("subresource").and_then(Value::as_str) == sub)
    });
    let mut entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": super::defaults::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": set,
    });
    if let Some(sub) = sub {
        entry["subresource"] = json!(sub);
    }
    list.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_like_the_api_server() {
        let set = fields_v1(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"app": "a"}}, "data": {"k": "v"}}));
        assert_eq!(set, json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:data": {".": {}, "f:k": {}}}));
        let mut o = json!({"apiVersion": "v1", "metadata": {"name": "x"}});
        record(&mut o, "kubectl", "Update", None, &json!({"data": {"k": "v"}}));
        record(&mut o, "kubectl", "Update", None, &json!({"data": {"k": "w"}}));
        assert_eq!(o["metadata"]["managedFields"].as_array().unwrap().len(), 1);
        assert_eq!(o["metadata"]["managedFields"][0]["fieldsType"], "FieldsV1");
    }
}
