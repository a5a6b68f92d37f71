//! `metadata.managedFields`, in the shape kube-apiserver writes it: one entry per
//! manager and operation, with the fields it set (`FieldsV1`). A write takes the fields
//! it changes away from every other manager, and a server-side apply that would change
//! a field another manager owns is refused with a 409, as structured-merge-diff does,
//! unless forced. A field a manager applied before and leaves out of its next applied
//! configuration is removed, unless another manager owns it too. Lists merged by a key
//! (containers by name, ...) are owned item by item (`k:{"name":"app"}`), sets of
//! scalars value by value (`v:"x"`); other lists are atomic.

use serde_json::{Map, Value, json};

use super::strategic::{Strategy, strategy};

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

/// The FieldsV1 key of a list item: `k:{"name":"app"}` for a list merged by a key,
/// `v:"value"` for a set of scalars; `None` for an atomic list.
fn item_key(strategy: Strategy, item: &Value) -> Option<String> {
    match strategy {
        Strategy::Key(key) => {
            let value = item.get(key)?;
            Some(format!("k:{}", json!({ key: value })))
        }
        Strategy::Set => Some(format!("v:{item}")),
        Strategy::Replace => None,
    }
}

/// The set of `v`; `names` is its path in field names (for the lists' merge keys).
fn fields(v: &Value, top: bool, names: &mut Vec<String>) -> Value {
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
                names.push(k.clone());
                let mut set = fields(&Value::Object(meta), true, names);
                names.pop();
                if let Some(m) = set.as_object_mut() {
                    m.remove(".");
                }
                out.insert("f:metadata".into(), set);
            }
            continue;
        }
        names.push(k.clone());
        let entry = match child {
            Value::Object(_) => fields(child, false, names),
            Value::Array(items) => {
                let strategy = strategy(names);
                let keyed: Option<Map<String, Value>> = items
                    .iter()
                    .map(|item| {
                        let key = item_key(strategy, item)?;
                        let set = if item.is_object() { fields(item, false, names) } else { json!({}) };
                        Some((key, set))
                    })
                    .collect();
                keyed.filter(|m| !m.is_empty()).map_or_else(|| json!({}), Value::Object)
            }
            _ => json!({}),
        };
        names.pop();
        out.insert(format!("f:{k}"), entry);
    }
    Value::Object(out)
}

/// The `FieldsV1` set of what a request wrote.
pub fn fields_v1(written: &Value) -> Value {
    fields(written, true, &mut Vec::new())
}

/// Records (or replaces) `manager`'s entry for `operation` on `object`: the fields of
/// `written` (what it applied, or created).
pub fn record(object: &mut Value, manager: &str, operation: &str, sub: Option<&str>, written: &Value) {
    record_set(object, manager, operation, sub, fields_v1(written));
}

/// Records an update by `manager` that turned `before` into `object`: it owns what it
/// owned, and the fields it changed (an update that changes nothing claims nothing).
/// `changed` is [`changed`]'s list for this write.
pub fn record_update(object: &mut Value, before: &Value, changed: &[Path], manager: &str, sub: Option<&str>) {
    let changed: Vec<&Path> = changed.iter().filter(|path| value_at(object, path).is_some()).collect();
    let previous = before.pointer("/metadata/managedFields").and_then(Value::as_array).and_then(|entries| {
        entries.iter().find(|e| {
            e["manager"] == manager && e["operation"] == "Update" && e.get("subresource").and_then(Value::as_str) == sub
        })
    });
    let mut set = json!({});
    for path in changed {
        let mut node = &mut set;
        for element in path {
            node = node.as_object_mut().expect("sets are maps").entry(set_key(element)).or_insert_with(|| json!({}));
        }
    }
    if let Some(previous) = previous {
        union(&mut set, &previous["fieldsV1"]);
    }
    if set.as_object().is_some_and(|m| !m.is_empty()) {
        record_set(object, manager, "Update", sub, set);
    }
}

/// Adds the fields of `other` to `set`.
fn union(set: &mut Value, other: &Value) {
    let (Some(set), Some(other)) = (set.as_object_mut(), other.as_object()) else { return };
    for (key, child) in other {
        union(set.entry(key.clone()).or_insert_with(|| json!({})), child);
    }
}

fn record_set(object: &mut Value, manager: &str, operation: &str, sub: Option<&str>, set: Value) {
    let api_version = object.get("apiVersion").cloned().unwrap_or_default();
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

/// A field's path from the object's root: the field names, without FieldsV1's `f:`,
/// and list items as FieldsV1 names them (`k:{"name":"app"}`, `v:"value"`).
pub type Path = Vec<String>;

/// The fields a write that turned `before` into `after` changed, added or removed:
/// computed once per write for [`record_update`] and [`transfer`].
pub fn changed(before: &Value, after: &Value) -> Vec<Path> {
    let all: std::collections::BTreeSet<Path> = leaves_of(before).into_iter().chain(leaves_of(after)).collect();
    all.into_iter().filter(|path| value_at(before, path) != value_at(after, path)).collect()
}

/// Whether a path element is a list item rather than a field.
fn is_item(element: &str) -> bool {
    element.starts_with("k:") || element.starts_with("v:")
}

/// The FieldsV1 key of a path element.
fn set_key(element: &str) -> String {
    if is_item(element) { element.to_owned() } else { format!("f:{element}") }
}

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

/// The item of `list` a path element names.
fn item_index(list: &[Value], element: &str) -> Option<usize> {
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        list.iter().position(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else {
        let value: Value = serde_json::from_str(element.strip_prefix("v:")?).ok()?;
        list.iter().position(|item| *item == value)
    }
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(object, |v, key| match v {
            Value::Array(list) if is_item(key) => list.get(item_index(list, key)?),
            _ => v.get(key.as_str()),
        })
        .filter(|v| !v.is_null())
}

/// Whether `set` owns `path`: the field itself, or an ancestor owned as a whole.
fn owns(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for key in path {
        let has_children = node.as_object().is_some_and(|m| m.keys().any(|k| k != "."));
        match node.get(set_key(key).as_str()) {
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
    let key = set_key(first);
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
    // The manager's identifier has no time (`BuildManagerIdentifier`), so neither has this.
    if entry["operation"] == "Update" {
        name.push_str(&format!(" using {}", entry["apiVersion"].as_str().unwrap_or_default()));
    }
    name
}

/// A path as kube-apiserver writes it in a conflict: `.spec.containers[name="app"].image`.
fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|k| match (k.strip_prefix("k:"), k.strip_prefix("v:")) {
            (Some(key), _) => {
                let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            (_, Some(value)) => format!("[={value}]"),
            _ => format!(".{k}"),
        })
        .collect()
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
    let others_own = |path: &[String]| entries.iter().any(|e| !mine(e) && owns(&e["fieldsV1"], path));
    for path in dropped {
        // A list item no longer applied at all goes whole, unless others own some of it.
        let item = (0..path.len()).find(|&i| is_item(&path[i]) && !now.iter().any(|p| p.starts_with(&path[..=i])));
        let target = match item {
            Some(i) if !others_own(&path[..=i]) => &path[..=i],
            _ => &path[..],
        };
        if others_own(target) || is_item_key(target) {
            continue;
        }
        remove_at(doc, target);
    }
}

/// Whether `path` ends at the key field of a list item (`...[name="app"].name`): an
/// item's identity, never removed alone.
fn is_item_key(path: &[String]) -> bool {
    let [.., item, field] = path else { return false };
    item.strip_prefix("k:")
        .and_then(|key| serde_json::from_str::<Map<String, Value>>(key).ok())
        .is_some_and(|key| key.contains_key(field))
}

/// Removes the field or list item at `path`, then each parent map it leaves empty
/// (below the top).
fn remove_at(doc: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let parent = parents.iter().try_fold(&mut *doc, |v, k| {
        if is_item(k) {
            let list = v.as_array_mut()?;
            let i = item_index(list, k)?;
            list.get_mut(i)
        } else {
            v.get_mut(k.as_str())
        }
    });
    let empty = match parent {
        Some(Value::Array(list)) if is_item(last) => {
            if let Some(i) = item_index(list, last) {
                list.remove(i);
            }
            false
        }
        Some(Value::Object(map)) => {
            map.remove(last);
            map.is_empty()
        }
        _ => return,
    };
    if empty && parents.len() > 1 && !parents.last().is_some_and(|p| is_item(p)) {
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
/// `changed` is [`changed`]'s list for this write.
pub fn transfer(object: &mut Value, changed: &[Path], manager: &str, operation: &str, sub: Option<&str>) {
    let gone: Vec<&Path> = changed.iter().filter(|path| value_at(object, path).is_none()).collect();
    let changed: Vec<&Path> = changed.iter().collect();
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

    fn deployment(image: &str, env: &[&str]) -> Value {
        let env: Vec<Value> = env.iter().map(|name| json!({"name": name, "value": "1"})).collect();
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "finalizers": ["x"]},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": image, "env": env},
            {"name": "sidecar", "image": "envoy"},
        ]}}}})
    }

    #[test]
    fn keyed_lists_are_owned_item_by_item() {
        let set = fields_v1(&deployment("v1", &["A"]));
        let containers = &set["f:spec"]["f:template"]["f:spec"]["f:containers"];
        let app = &containers[r#"k:{"name":"app"}"#];
        assert_eq!(app["f:image"], json!({}), "{set}");
        assert_eq!(app["f:env"][r#"k:{"name":"A"}"#]["f:value"], json!({}), "{set}");
        assert!(containers.get(r#"k:{"name":"sidecar"}"#).is_some(), "{set}");
        assert_eq!(set["f:metadata"]["f:finalizers"], json!({r#"v:"x""#: {}}), "a set, value by value");

        // Another manager changed app's image: applying another one conflicts on that
        // item's field alone, named as kube names it.
        let mut o = deployment("v1", &["A", "B"]);
        record(&mut o, "team", "Apply", None, &deployment("v1", &["A", "B"]));
        let before = o.clone();
        o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
        record(
            &mut o,
            "kubectl-set",
            "Update",
            None,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}}),
        );
        let changes = changed(&before, &o);
        transfer(&mut o, &changes, "kubectl-set", "Update", None);
        let found = conflicts(&o, &deployment("v3", &["A", "B"]), "team");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0.starts_with("\"kubectl-set\" using apps/v1"), "{found:?}");
        assert_eq!(found[0].1, r#".spec.template.spec.containers[name="app"].image"#);
        assert!(conflicts(&o, &deployment("v2", &["A", "B"]), "team").is_empty(), "the same value");

        // The team stops applying env B: that item goes, A and the image stay.
        let next = deployment("v2", &["A"]);
        let mut doc = o.clone();
        remove_unapplied(&o, &mut doc, &next, "team");
        let env = &doc["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env, &json!([{"name": "A", "value": "1"}]));
        assert_eq!(doc["spec"]["template"]["spec"]["containers"][0]["image"], "v2");
        assert_eq!(doc["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
    }

    #[test]
    fn an_update_takes_the_fields_it_changes_and_removed_fields_are_nobodys() {
        let before = lease(Some("a"));
        let mut after = before.clone();
        after["spec"]["holderIdentity"] = json!("b");
        record(&mut after, "b", "Update", None, &json!({"spec": {"holderIdentity": "b"}}));
        let changes = changed(&before, &after);
        transfer(&mut after, &changes, "b", "Update", None);
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
        let changes = changed(&after, &released);
        transfer(&mut released, &changes, "b", "Update", None);
        assert!(released["metadata"].get("managedFields").unwrap().as_array().unwrap().is_empty());
        assert!(conflicts(&released, &json!({"spec": {"holderIdentity": "c"}}), "c").is_empty());
    }
}
