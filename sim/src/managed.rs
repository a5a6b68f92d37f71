//! `metadata.managedFields`, in the shape kube-apiserver writes it: one entry per
//! manager and operation, with the fields it set (`FieldsV1`). A write takes the fields
//! it changes away from every other manager, and a server-side apply that would change
//! a field another manager owns is refused with a 409, as structured-merge-diff does,
//! unless forced. A field a manager applied before and leaves out of its next applied
//! configuration is removed, unless another manager owns it too. Lists are atomic here
//! (one leaf each, not one per merge key).

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

/// A field's path from the object's root: the keys, without FieldsV1's `f:`.
type Path = Vec<String>;

/// The leaves of a FieldsV1 set: the fields owned as a whole (scalars, lists).
fn leaves(set: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
    let Some(map) = set.as_object() else { return };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (key, child) in children {
        prefix.push(key.strip_prefix("f:").unwrap_or(key).to_owned());
        leaves(child, prefix, out);
        prefix.pop();
    }
}

fn leaves_of(object: &Value) -> Vec<Path> {
    let mut out = Vec::new();
    leaves(&fields_v1(object), &mut Vec::new(), &mut out);
    out
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key.as_str())).filter(|v| !v.is_null())
}

/// Whether `set` owns `path`: the field itself, or an ancestor owned as a whole.
fn owns(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for key in path {
        let has_children = node.as_object().is_some_and(|m| m.keys().any(|k| k != "."));
        match node.get(format!("f:{key}").as_str()) {
            Some(child) => node = child,
            // An ancestor owned as a whole (a leaf, not the root) owns what is below it.
            None => return !has_children && node.as_object().is_some_and(|m| m.is_empty()) && !std::ptr::eq(node, set),
        }
    }
    true
}

/// Removes `path` from `set`, and the parents it leaves empty.
fn disown(set: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else { return };
    let Some(map) = set.as_object_mut() else { return };
    let key = format!("f:{first}");
    if rest.is_empty() {
        map.remove(&key);
        return;
    }
    if let Some(child) = map.get_mut(&key) {
        disown(child, rest);
        if child.as_object().is_some_and(|m| m.keys().all(|k| k == ".")) {
            map.remove(&key);
        }
    }
}

/// How kube-apiserver names a manager in a conflict (`printManager`).
fn describe(entry: &Value) -> String {
    let mut name = format!("{:?}", entry["manager"].as_str().unwrap_or_default());
    if let Some(sub) = entry.get("subresource").and_then(Value::as_str) {
        name.push_str(&format!(" with subresource {sub:?}"));
    }
    if entry["operation"] == "Update" {
        name.push_str(&format!(" using {}", entry["apiVersion"].as_str().unwrap_or_default()));
        if let Some(time) = entry.get("time").and_then(Value::as_str) {
            name.push_str(&format!(" at {time}"));
        }
    }
    name
}

fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// The conflicts of `manager` applying `applied` to `current`: every field the apply
/// would change that another manager owns, as (manager, field). Fields absent from
/// `current`, or given the value they already have, never conflict.
pub fn conflicts(current: &Value, applied: &Value, manager: &str) -> Vec<(String, String)> {
    let entries = current.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut found = Vec::new();
    for path in leaves_of(applied) {
        let Some(old) = value_at(current, &path) else { continue };
        if value_at(applied, &path) == Some(old) {
            continue;
        }
        for entry in &entries {
            let ours =
                entry["manager"] == manager && entry["operation"] == "Apply" && entry.get("subresource").is_none();
            if !ours && owns(&entry["fieldsV1"], &path) {
                found.push((describe(entry), dotted(&path)));
            }
        }
    }
    found
}

/// What `manager` applied before and leaves out of `applied` now: removed from `doc`
/// (the object after the apply), unless another manager owns it too, as
/// structured-merge-diff removes what an applier stops applying. Maps it leaves empty go
/// with it.
pub fn remove_unapplied(current: &Value, doc: &mut Value, applied: &Value, manager: &str) {
    let entries = current.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    let mine = |e: &Value| e["manager"] == manager && e["operation"] == "Apply" && e.get("subresource").is_none();
    let Some(before) = entries.iter().find(|e| mine(e)) else { return };
    let mut dropped = Vec::new();
    leaves(&before["fieldsV1"], &mut Vec::new(), &mut dropped);
    let now = leaves_of(applied);
    dropped.retain(|path| !now.iter().any(|p| p.starts_with(path) || path.starts_with(p)));
    for path in dropped {
        if entries.iter().any(|e| !mine(e) && owns(&e["fieldsV1"], &path)) {
            continue;
        }
        remove_at(doc, &path);
    }
}

/// Removes the field at `path`, then each parent map it leaves empty (below the top).
fn remove_at(doc: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let Some(parent) = parents.iter().try_fold(&mut *doc, |v, k| v.get_mut(k.as_str())) else { return };
    let Some(map) = parent.as_object_mut() else { return };
    map.remove(last);
    if map.is_empty() && parents.len() > 1 {
        remove_at(doc, parents);
    }
}

/// The message and causes of a conflict, as `NewConflictError` words them.
pub fn conflict_error(conflicts: &[(String, String)]) -> (String, Vec<(String, String)>) {
    let causes = conflicts.iter().map(|(who, field)| (field.clone(), format!("conflict with {who}"))).collect();
    let message = match conflicts {
        [(who, field)] => format!("Apply failed with 1 conflict: conflict with {who}: {field}"),
        _ => {
            let mut managers: Vec<&String> = conflicts.iter().map(|(who, _)| who).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for who in managers {
                lines.push(format!("conflicts with {who}:"));
                lines.extend(conflicts.iter().filter(|(w, _)| w == who).map(|(_, field)| format!("- {field}")));
            }
            format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
        }
    };
    (message, causes)
}

/// After a write by `manager` (`operation`, `sub`) turned `before` into `object`: the
/// fields it changed belong to it alone now, and fields that are gone belong to nobody.
/// Entries left empty are dropped.
pub fn transfer(object: &mut Value, before: &Value, manager: &str, operation: &str, sub: Option<&str>) {
    let mut changed = leaves_of(before);
    for path in leaves_of(object) {
        if !changed.contains(&path) {
            changed.push(path);
        }
    }
    changed.retain(|path| value_at(before, path) != value_at(object, path));
    let gone: Vec<Path> = changed.iter().filter(|path| value_at(object, path).is_none()).cloned().collect();
    let Some(list) = object.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) else { return };
    for entry in list.iter_mut() {
        let writer = entry["manager"] == manager
            && entry["operation"] == operation
            && entry.get("subresource").and_then(Value::as_str) == sub;
        let lost = if writer { &gone } else { &changed };
        for path in lost {
            disown(&mut entry["fieldsV1"], path);
        }
    }
    list.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
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

    fn lease(holder: Option<&str>) -> Value {
        let mut o =
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {}});
        if let Some(holder) = holder {
            o["spec"]["holderIdentity"] = json!(holder);
            record(&mut o, holder, "Apply", None, &json!({"spec": {"holderIdentity": holder}}));
        }
        o
    }

    #[test]
    fn an_apply_that_changes_another_managers_field_conflicts() {
        let held = lease(Some("a"));
        let found = conflicts(&held, &json!({"spec": {"holderIdentity": "b"}}), "b");
        assert_eq!(found, [("\"a\"".to_owned(), ".spec.holderIdentity".to_owned())]);
        let (message, causes) = conflict_error(&found);
        assert_eq!(message, "Apply failed with 1 conflict: conflict with \"a\": .spec.holderIdentity");
        assert_eq!(causes, [(".spec.holderIdentity".to_owned(), "conflict with \"a\"".to_owned())]);
        // The same value, an absent field, or the owner itself: no conflict.
        assert!(conflicts(&held, &json!({"spec": {"holderIdentity": "a"}}), "b").is_empty());
        assert!(conflicts(&lease(None), &json!({"spec": {"holderIdentity": "b"}}), "b").is_empty());
        assert!(conflicts(&held, &json!({"spec": {"holderIdentity": "c"}}), "a").is_empty());
    }

    #[test]
    fn a_field_left_out_of_the_next_apply_goes_unless_another_manager_owns_it() {
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"team": "a"}},
            "data": {"a": "1", "b": "2", "shared": "s"}});
        let first = json!({"metadata": {"labels": {"team": "a"}}, "data": {"a": "1", "b": "2", "shared": "s"}});
        record(&mut o, "a", "Apply", None, &first);
        record(&mut o, "b", "Apply", None, &json!({"data": {"shared": "s"}}));
        let next = json!({"data": {"a": "1", "c": "3"}});
        let mut doc = o.clone();
        doc["data"]["c"] = json!("3");
        remove_unapplied(&o, &mut doc, &next, "a");
        assert_eq!(doc["data"], json!({"a": "1", "c": "3", "shared": "s"}), "b went; shared is b's too");
        assert_eq!(
            doc["metadata"],
            json!({"name": "c", "managedFields": o["metadata"]["managedFields"]}),
            "labels went, empty"
        );
        // A manager that never applied removes nothing.
        let mut untouched = o.clone();
        remove_unapplied(&o, &mut untouched, &json!({}), "c");
        assert_eq!(untouched, o);
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_and_removed_fields_are_nobodys() {
        let before = lease(Some("a"));
        let mut after = before.clone();
        after["spec"]["holderIdentity"] = json!("b");
        record(&mut after, "b", "Update", None, &json!({"spec": {"holderIdentity": "b"}}));
        transfer(&mut after, &before, "b", "Update", None);
        let managers: Vec<&str> = after["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["b"], "a owned nothing else, so its entry is gone");
        assert!(!conflicts(&after, &json!({"spec": {"holderIdentity": "c"}}), "c").is_empty());

        let mut released = after.clone();
        released["spec"].as_object_mut().unwrap().remove("holderIdentity");
        record(&mut released, "b", "Update", None, &json!({"spec": {"holderIdentity": null}}));
        transfer(&mut released, &after, "b", "Update", None);
        assert!(released["metadata"].get("managedFields").unwrap().as_array().unwrap().is_empty());
        assert!(conflicts(&released, &json!({"spec": {"holderIdentity": "c"}}), "c").is_empty());
    }
}
