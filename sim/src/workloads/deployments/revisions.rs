//! The ReplicaSet of a Deployment's current template: found by its hash or created
//! (`<name>-<hash>`, sized by the surge), its revision and the Deployment's kept in
//! step, and old empty ReplicaSets beyond `revisionHistoryLimit` cleaned up.

use serde_json::{Value, json};

use super::super::progress::{self, FOUND_NEW_RS, NEW_RS_CREATED, PROGRESSING};
use super::super::replicasets::Counts;
use super::super::rollout::{DESIRED_REPLICAS, MAX_REPLICAS};
use super::super::{POD_TEMPLATE_HASH, REVISION, controller_ref, is_deleting, str_at};
use super::{Rs, Syncing};

/// Annotation: the earlier revisions a ReplicaSet was rolled back from.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Deployment annotations that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// kube-controller-manager's `ComputeHash`: FNV-32a of the template, rendered in
/// `SafeEncodeString`'s alphabet (e.g. `5d9c8b7f6d`-like strings of that alphabet).
pub fn pod_template_hash(template: &Value) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let text = serde_json::to_string(&t).unwrap_or_default();
    let hash = text.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

/// kube-controller-manager's `EqualIgnoreHash`: two pod templates are the same when
/// they are equal once the `pod-template-hash` label is removed from both. Equality is
/// `Semantic.DeepEqual`'s over the JSON form: an absent field, `null` and an empty list
/// are alike (nil and empty slices are), and so are absent and empty label maps.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
                labels.remove(POD_TEMPLATE_HASH);
            }
            if meta.get("labels").and_then(Value::as_object).is_some_and(serde_json::Map::is_empty) {
                meta.remove("labels");
            }
        }
        t
    };
    semantic_eq(&strip(a), &strip(b))
}

/// JSON equality where absent, `null` and `[]` are the same value.
fn semantic_eq(a: &Value, b: &Value) -> bool {
    let vacuous = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys());
            keys.into_iter().all(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => semantic_eq(x, y),
                (Some(v), None) | (None, Some(v)) => vacuous(v),
                (None, None) => true,
            })
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| semantic_eq(x, y)),
        _ => a == b || (vacuous(a) && vacuous(b)),
    }
}

/// Sets an annotation, making the map when there is none.
pub(super) fn annotate(object: &mut Value, key: &str, value: &str) {
    if !object.pointer("/metadata/annotations").is_some_and(Value::is_object) {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"][key] = json!(value);
}

impl Syncing {
    /// `getNewReplicaSet`: the ReplicaSet of the current template, its revision and the
    /// Deployment's kept in step; created (sized by the surge) when `create`.
    pub(super) fn new_replica_set(&mut self, create: bool) -> Option<usize> {
        // The oldest, should there be several (kubernetes/kubernetes#40415).
        let found = self.by_age().into_iter().find(|&i| {
            let template = self.rss[i].object.pointer("/spec/template").unwrap_or(&Value::Null);
            equal_ignore_hash(template, &self.template)
        });
        let revision = self.olds(found).iter().map(|&i| self.rss[i].revision()).max().unwrap_or(0) + 1;
        if let Some(i) = found {
            self.annotate_new(i, revision, true);
            let min_ready = self.d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0));
            let rs = &mut self.rss[i].object;
            if rs.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)) != min_ready {
                rs["spec"]["minReadySeconds"] = min_ready;
            }
            let rs_revision = self.rss[i].annotation(REVISION).unwrap_or_default().to_owned();
            annotate(&mut self.d, REVISION, &rs_revision);
            if self.spec.progress_deadline.is_some()
                && progress::get_condition(&self.d["status"], PROGRESSING).is_none()
            {
                let message = format!("Found new replica set \"{}\"", self.rss[i].name());
                let c = progress::condition(PROGRESSING, "True", FOUND_NEW_RS, &message, self.now);
                progress::set_condition(&mut self.d["status"], c);
            }
            return Some(i);
        }
        if !create {
            return None;
        }
        let mut template = self.d.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
        template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(self.hash);
        let mut selector = self.d.pointer("/spec/selector").cloned().unwrap_or_else(|| json!({}));
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(self.hash);
        let name = format!("{}-{}", str_at(&self.d, "/metadata/name"), self.hash);
        let mut spec = json!({"replicas": 0, "selector": selector, "template": template});
        if let Some(min_ready) = self.d.pointer("/spec/minReadySeconds").filter(|m| m.as_i64() != Some(0)) {
            spec["minReadySeconds"] = min_ready.clone();
        }
        let object = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": str_at(&self.d, "/metadata/namespace"),
                "labels": template["metadata"]["labels"], "ownerReferences": [controller_ref(&self.d)]},
            "spec": spec,
        });
        self.rss.push(Rs { create: true, ..Rs::new(object, Counts::default()) });
        let i = self.rss.len() - 1;
        let all = self.all(Some(i));
        let replicas = self.spec.new_rs_replicas(self.sum_spec(&all), 0);
        self.rss[i].object["spec"]["replicas"] = json!(replicas);
        self.annotate_new(i, revision, false);
        annotate(&mut self.d, REVISION, &revision.to_string());
        if self.spec.progress_deadline.is_some() {
            let message = format!("Created new replica set \"{name}\"");
            let c = progress::condition(PROGRESSING, "True", NEW_RS_CREATED, &message, self.now);
            progress::set_condition(&mut self.d["status"], c);
        }
        Some(i)
    }

    /// `SetNewReplicaSetAnnotations`: the Deployment's annotations, the revision (with
    /// the history of a rolled-back-to ReplicaSet) and, on creation, the sizes.
    fn annotate_new(&mut self, i: usize, revision: i64, exists: bool) {
        let copied: Vec<(String, String)> = self
            .d
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let (desired, max) = (self.spec.replicas, self.spec.replicas + self.spec.max_surge);
        let rs = &mut self.rss[i];
        for (k, v) in copied {
            annotate(&mut rs.object, &k, &v);
        }
        let old = rs.annotation(REVISION).map(str::to_owned);
        let old_number = old.as_deref().and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
        if old_number < revision {
            annotate(&mut rs.object, REVISION, &revision.to_string());
            if let Some(old) = old {
                let history = match rs.annotation(REVISION_HISTORY) {
                    Some(h) if !h.is_empty() => format!("{h},{old}"),
                    _ => old,
                };
                annotate(&mut rs.object, REVISION_HISTORY, &history);
            }
        }
        if !exists {
            annotate(&mut rs.object, DESIRED_REPLICAS, &desired.to_string());
            annotate(&mut rs.object, MAX_REPLICAS, &max.to_string());
        }
    }

    /// `cleanupDeployment`: old, empty ReplicaSets beyond revisionHistoryLimit go.
    pub(super) fn clean_up(&mut self, olds: &[usize]) {
        let Some(limit) = self.spec.revision_history_limit else { return };
        let mut cleanable: Vec<usize> = olds.iter().copied().filter(|&i| !is_deleting(&self.rss[i].object)).collect();
        let excess = cleanable.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        cleanable.sort_by_key(|&i| (self.rss[i].revision(), self.rss[i].age()));
        for &i in cleanable.iter().take(excess) {
            let rs = &self.rss[i];
            let generation = rs.object.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let observed = rs.object.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
            if rs.counts.replicas == 0 && rs.spec() == 0 && generation <= observed && !rs.create {
                self.rss[i].delete = true;
            }
        }
    }
}
