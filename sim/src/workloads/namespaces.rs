//! The namespace controller: a deleted namespace (Terminating) has everything in it
//! deleted, pods gracefully, objects with finalizers waited for; meanwhile its status
//! says what remains, in the conditions kube's namespace controller keeps; once
//! nothing is left, the namespace goes. Until then the API refuses new objects in it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::queue::{Kind, Name};
use super::{Controllers, RESYNC, is_deleting, stamp, str_at};

/// What is left in a namespace being deleted: objects by `<resource>.<group>`, and the
/// objects each finalizer still holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Remaining {
    pub resources: BTreeMap<String, usize>,
    pub finalizers: BTreeMap<String, usize>,
}

/// The namespace controller's five conditions (type, True?, reason, message), the
/// healthy ("False") variant unless something remains.
fn wanted(remaining: &Remaining) -> [(&'static str, bool, &'static str, String); 5] {
    let listed = |counts: &BTreeMap<String, usize>, format: &dyn Fn(&str, usize) -> String| {
        // Sorted as formatted, as kube sorts them.
        let mut items: Vec<String> = counts.iter().map(|(k, n)| format(k, *n)).collect();
        items.sort();
        items.join(", ")
    };
    let content = if remaining.resources.is_empty() {
        (false, "ContentRemoved", "All content successfully removed".to_owned())
    } else {
        let items = listed(&remaining.resources, &|r, n| format!("{r} has {n} resource instances"));
        (true, "SomeResourcesRemain", format!("Some resources are remaining: {items}"))
    };
    let finalizers = if remaining.finalizers.is_empty() {
        (false, "ContentHasNoFinalizers", "All content-preserving finalizers finished".to_owned())
    } else {
        let items = listed(&remaining.finalizers, &|f, n| format!("{f} in {n} resource instances"));
        (true, "SomeFinalizersRemain", format!("Some content in the namespace has finalizers remaining: {items}"))
    };
    [
        (
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        (
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        ),
        ("NamespaceContentRemaining", content.0, content.1, content.2),
        ("NamespaceFinalizersRemaining", finalizers.0, finalizers.1, finalizers.2),
    ]
}

/// The namespace's conditions for `remaining`: each kept as it was unless it changed, its
/// transition time moved only when its status did.
pub fn deletion_conditions(old: &[Value], remaining: &Remaining, now: &str) -> Vec<Value> {
    let mut out: Vec<Value> = old.to_vec();
    for (type_, on, reason, message) in wanted(remaining) {
        let status = if on { "True" } else { "False" };
        match out.iter_mut().find(|c| c["type"] == type_) {
            Some(c) => {
                if c["status"] != status {
                    c["lastTransitionTime"] = json!(now);
                }
                c["status"] = json!(status);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            None => out.push(json!({"type": type_, "status": status, "lastTransitionTime": now,
                "reason": reason, "message": message})),
        }
    }
    out
}

impl Controllers {
    /// Syncs the namespaces `names` (keyed ("", name)).
    pub(super) async fn namespaces(&mut self, names: BTreeSet<Name>) {
        for (_, name) in names {
            self.drain_events();
            let Some(ns) = self.cluster.get_raw("", "namespaces", "", &name) else {
                self.terminating.remove(&name);
                continue;
            };
            if !is_deleting(&ns) {
                self.terminating.remove(&name);
                continue;
            }
            self.terminating.insert(name.clone());
            self.delete_content(&name).await;
            if self.cluster.finalize_namespace(&name) {
                self.terminating.remove(&name);
                continue;
            }
            self.report(&ns, &self.remaining(&name)).await;
            // Pods still stopping, finalizers still held: each deletion in it wakes
            // this again (see `absorb`); the timer is the safety net.
            let due = tokio::time::Instant::now() + RESYNC;
            self.timers.after(Kind::Namespace, (String::new(), name), due);
        }
    }

    /// Deletes what is in `namespace` and not already being deleted.
    async fn delete_content(&mut self, namespace: &str) {
        for r in self.cluster.resources.snapshot().into_iter().filter(|r| r.namespaced) {
            let (items, _) = self.cluster.store.list(&r.group, &r.plural, Some(namespace));
            for item in items.iter().filter(|o| !is_deleting(o)) {
                if let Err(e) = self.delete(&r, namespace, str_at(item, "/metadata/name")).await {
                    e.log();
                }
            }
        }
    }

    /// What is still in `namespace`.
    fn remaining(&self, namespace: &str) -> Remaining {
        let mut left = Remaining::default();
        for r in self.cluster.resources.snapshot().into_iter().filter(|r| r.namespaced) {
            let (items, _) = self.cluster.store.list(&r.group, &r.plural, Some(namespace));
            if items.is_empty() {
                continue;
            }
            left.resources.insert(format!("{}.{}", r.plural, r.group), items.len());
            let finalizers = items.iter().flat_map(|o| o.pointer("/metadata/finalizers").and_then(Value::as_array));
            for f in finalizers.flatten().filter_map(Value::as_str) {
                *left.finalizers.entry(f.to_owned()).or_default() += 1;
            }
        }
        left
    }

    /// Writes the namespace's deletion conditions when they changed.
    async fn report(&mut self, ns: &Value, remaining: &Remaining) {
        let Some(r) = self.cluster.resources.by_kind("", "Namespace") else { return };
        let old = ns.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let conditions = deletion_conditions(&old, remaining, &stamp(Timestamp::now()));
        if conditions == old {
            return;
        }
        let mut updated = ns.clone();
        updated["status"]["conditions"] = json!(conditions);
        if let Err(e) = self.replace(&r, Some("status"), updated).await {
            e.log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains_in_kubes_words() {
        let mut remaining = Remaining::default();
        remaining.resources.insert("pods.".into(), 2);
        remaining.resources.insert("configmaps.".into(), 1);
        remaining.finalizers.insert("example.com/hold".into(), 1);
        let first = deletion_conditions(&[], &remaining, "2026-01-01T00:00:00Z");
        assert_eq!(first.len(), 5);
        let by = |cs: &[Value], t: &str| cs.iter().find(|c| c["type"] == t).unwrap().clone();
        let content = by(&first, "NamespaceContentRemaining");
        assert_eq!(
            (&content["status"], &content["reason"], &content["message"]),
            (
                &json!("True"),
                &json!("SomeResourcesRemain"),
                &json!(
                    "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
                )
            )
        );
        assert_eq!(
            by(&first, "NamespaceFinalizersRemaining")["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(by(&first, "NamespaceDeletionDiscoveryFailure")["status"], "False");

        // The pods went: only the message changes, not the transition time.
        remaining.resources.remove("pods.");
        let second = deletion_conditions(&first, &remaining, "2026-01-01T00:00:05Z");
        let content = by(&second, "NamespaceContentRemaining");
        assert_eq!(content["message"], "Some resources are remaining: configmaps. has 1 resource instances");
        assert_eq!(content["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(deletion_conditions(&second, &remaining, "2026-01-01T00:00:09Z"), second, "unchanged");

        let done = deletion_conditions(&second, &Remaining::default(), "2026-01-01T00:00:09Z");
        let content = by(&done, "NamespaceContentRemaining");
        assert_eq!((&content["status"], &content["reason"]), (&json!("False"), &json!("ContentRemoved")));
        assert_eq!(content["lastTransitionTime"], "2026-01-01T00:00:09Z");
    }
}
