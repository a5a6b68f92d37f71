//! Strategic merge patch for the built-in kinds the sim serves: what `kubectl set
//! image`, `kubectl apply` and `kubectl patch` send. Lists merge by their patch merge
//! keys (containers and env by `name`, container ports by `containerPort`, ...), `null`
//! deletes, and the `$patch`, `$setElementOrder/`, `$retainKeys` and
//! `$deleteFromPrimitiveList/` directives work as in apimachinery.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    Replace,
    /// Items are objects merged by this key.
    Key(&'static str),
    /// A set of scalars (finalizers).
    Set,
}

/// The patch strategy of the list at `path` (field names from the object root).
pub(crate) fn strategy(path: &[String]) -> Strategy {
    let last = path.last().map(String::as_str).unwrap_or_default();
    let parent = path.len().checked_sub(2).and_then(|i| path.get(i)).map(String::as_str).unwrap_or_default();
    match last {
        "containers" | "initContainers" | "ephemeralContainers" => Strategy::Key("name"),
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => Strategy::Key("name"),
        "ports" if matches!(parent, "containers" | "initContainers" | "ephemeralContainers") => {
            Strategy::Key("containerPort")
        }
        "ports" if parent == "spec" => Strategy::Key("port"),
        "volumeMounts" => Strategy::Key("mountPath"),
        "volumeDevices" => Strategy::Key("devicePath"),
        "hostAliases" => Strategy::Key("ip"),
        "ownerReferences" => Strategy::Key("uid"),
        "conditions" => Strategy::Key("type"),
        "topologySpreadConstraints" => Strategy::Key("topologyKey"),
        "finalizers" => Strategy::Set,
        _ => Strategy::Replace,
    }
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, String> {
    let (Some(original), Some(patch)) = (original.as_object(), patch.as_object()) else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    Ok(merge_map(original, patch, &mut Vec::new())?.map(Value::Object).unwrap_or(Value::Null))
}

/// A patch value without its directives, for places where nothing is merged.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), clean(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().filter(|i| i.get(PATCH).is_none()).map(clean).collect()),
        other => other.clone(),
    }
}

/// Merges a map; `None` means the map itself is deleted (`$patch: delete`).
fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get(PATCH).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            return Ok(clean(&Value::Object(patch.clone())).as_object().cloned());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type {other:?}")),
    }
    let mut out = original.clone();
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        path.push(key.clone());
        match value {
            Value::Null => {
                out.remove(key);
            }
            Value::Object(p) => match original.get(key).and_then(Value::as_object) {
                Some(o) => match merge_map(o, p, path)? {
                    Some(merged) => {
                        out.insert(key.clone(), Value::Object(merged));
                    }
                    None => {
                        out.remove(key);
                    }
                },
                None => {
                    if p.get(PATCH).and_then(Value::as_str) == Some("delete") {
                        out.remove(key);
                    } else {
                        out.insert(key.clone(), clean(value));
                    }
                }
            },
            Value::Array(items) => {
                let current = original.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
                let order = patch.get(&format!("{ORDER}{key}")).and_then(Value::as_array);
                let merged = merge_list(&current, items, order, path)?;
                out.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                out.insert(key.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    // Directives about lists that the patch does not otherwise touch.
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let remove: Vec<&Value> = value.as_array().map(|v| v.iter().collect()).unwrap_or_default();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|v| !remove.contains(&v));
            }
        } else if let Some(field) = key.strip_prefix(ORDER)
            && !patch.contains_key(field)
            && let (Some(Value::Array(list)), Some(order)) = (out.get(field).cloned(), value.as_array())
        {
            path.push(field.to_owned());
            let reordered = reorder(list, order, strategy(path));
            path.pop();
            out.insert(field.to_owned(), Value::Array(reordered));
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS).and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(out))
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object()?.get(key)
}

fn merge_list(
    current: &[Value],
    patch: &[Value],
    order: Option<&Vec<Value>>,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    let strategy = strategy(path);
    if patch.iter().any(|i| i.get(PATCH).and_then(Value::as_str) == Some("replace")) {
        return Ok(patch.iter().filter(|i| i.get(PATCH).is_none()).map(clean).collect());
    }
    let mut out: Vec<Value> = match strategy {
        Strategy::Replace => return Ok(patch.iter().map(clean).collect()),
        Strategy::Set => {
            let mut out = current.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            out
        }
        Strategy::Key(key) => {
            let mut out = current.to_vec();
            for item in patch {
                let Some(id) = key_of(item, key).cloned() else {
                    return Err(format!("map: {item} does not contain declared merge key: {key}"));
                };
                let position = out.iter().position(|o| key_of(o, key) == Some(&id));
                let delete = item.get(PATCH).and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let (Some(o), Some(p)) = (out[i].as_object(), item.as_object()) else { continue };
                        match merge_map(o, p, path)? {
                            Some(merged) => out[i] = Value::Object(merged),
                            None => {
                                out.remove(i);
                            }
                        }
                    }
                    (None, false) => out.push(clean(item)),
                }
            }
            out
        }
    };
    if let Some(order) = order {
        out = reorder(out, order, strategy);
    }
    Ok(out)
}

/// Puts items in the order of `$setElementOrder`; items it does not name keep their
/// relative order after the named ones.
fn reorder(items: Vec<Value>, order: &[Value], strategy: Strategy) -> Vec<Value> {
    let id = |item: &Value| -> Value {
        match strategy {
            Strategy::Key(key) => key_of(item, key).cloned().unwrap_or(Value::Null),
            _ => item.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&id).collect();
    let mut named: Vec<(usize, Value)> = Vec::new();
    let mut rest = Vec::new();
    for item in items {
        match wanted.iter().position(|w| *w == id(&item)) {
            Some(i) => named.push((i, item)),
            None => rest.push(item),
        }
    }
    named.sort_by_key(|(i, _)| *i);
    named.into_iter().map(|(_, v)| v).chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "podinfo", "finalizers": ["a"]}, "spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "image": "podinfo:6.0.0", "ports": [{"containerPort": 9898, "name": "http"}],
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "envoy:1"}
        ]}}}})
    }

    #[test]
    fn set_image_merges_by_name() {
        // Recorded from `kubectl -n test set image deployment/podinfo podinfod=...:6.0.1` (kubectl 1.33).
        let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"podinfod"},{"name":"sidecar"}],
            "containers":[{"image":"podinfo:6.0.1","name":"podinfod"}]}}}});
        let out = apply(&deployment(), &patch).unwrap();
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "podinfo:6.0.1");
        assert_eq!(c[0]["ports"][0]["containerPort"], 9898, "the rest of the container is kept");
        assert_eq!(c[1]["name"], "sidecar");
    }

    #[test]
    fn directives() {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["b"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}],
             "$setElementOrder/env": [{"name": "C"}, {"name": "B"}]},
            {"name": "sidecar", "$patch": "delete"}
        ]}}}});
        let out = apply(&deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let c = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["env"], json!([{"name": "C", "value": "3"}, {"name": "B", "value": "2"}]));

        let replace = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}}});
        let out = apply(&deployment(), &replace).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "only", "image": "x"}]));

        let retain = json!({"spec": {"template": {"spec": {"$retainKeys": ["containers"], "containers": []}}}});
        assert!(
            apply(&json!({"spec": {"template": {"spec": {"x": 1}}}}), &retain).unwrap()["spec"]["template"]["spec"]
                .get("x")
                .is_none()
        );

        let null = json!({"metadata": {"finalizers": null}});
        assert!(apply(&deployment(), &null).unwrap()["metadata"].get("finalizers").is_none());
        assert!(
            apply(&deployment(), &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})).is_err()
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_unknown_lists_replace() {
        let svc =
            json!({"spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"app": "a"}, "externalIPs": ["1"]}});
        let out =
            apply(&svc, &json!({"spec": {"ports": [{"port": 443, "name": "https"}], "externalIPs": ["2"]}})).unwrap();
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["externalIPs"], json!(["2"]));
    }
}
