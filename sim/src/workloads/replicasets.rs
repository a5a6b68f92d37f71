//! The ReplicaSet controller: as many pods as `spec.replicas` from the template (the
//! least useful ones deleted first), and the counts of its pods in its status.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

/// Pods created for one ReplicaSet in one pass (kube-controller-manager's burst is 500).
const MAX_CREATIONS_PER_PASS: usize = 500;

use super::events::{REPLICASET_CONTROLLER, Record, reference};
use super::pods::{is_active, is_available, is_ready, ready_since};
use super::queue::{Kind, Name};
use super::{Controllers, controller_ref, i32_at, is_deleting, parse_time, str_at};
use crate::defaults;
use crate::selector::labels;

/// What the pods of a ReplicaSet amount to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
    /// Being deleted, not finished: not counted above, but still running.
    pub terminating: i32,
}

impl Counts {
    /// Counts the pods of the ReplicaSet `rs`.
    pub fn of(rs: &Value, pods: &[&Value], now: Timestamp) -> Self {
        let template: BTreeMap<String, String> = labels(rs.pointer("/spec/template").unwrap_or(&Value::Null));
        let min_ready = i32_at(rs, "/spec/minReadySeconds");
        let mut c = Self::default();
        for pod in pods {
            if !is_active(pod) {
                let finished = matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed");
                c.terminating += i32::from(is_deleting(pod) && !finished);
                continue;
            }
            let have = labels(pod);
            c.replicas += 1;
            c.fully_labeled += i32::from(template.iter().all(|(k, v)| have.get(k) == Some(v)));
            c.ready += i32::from(is_ready(pod));
            c.available += i32::from(is_available(pod, min_ready, now));
        }
        c
    }

    /// The `status` of the ReplicaSet, keeping its conditions; `replicas` is never
    /// omitted (it has no `omitempty` in Go), the other zeros are.
    pub fn status(&self, rs: &Value) -> Value {
        let mut status = Map::new();
        status.insert("replicas".into(), json!(self.replicas));
        let generation = rs.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        for (key, n) in [
            ("fullyLabeledReplicas", i64::from(self.fully_labeled)),
            ("readyReplicas", self.ready.into()),
            ("availableReplicas", self.available.into()),
            ("observedGeneration", generation),
        ] {
            if n != 0 {
                status.insert(key.into(), json!(n));
            }
        }
        if let Some(conditions) = rs.pointer("/status/conditions") {
            status.insert("conditions".into(), conditions.clone());
        }
        Value::Object(status)
    }
}

/// What one sync of a ReplicaSet does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub create: Vec<Value>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The new status, when it differs from the stored one.
    pub status: Option<Value>,
}

/// A pod from the ReplicaSet's template, controlled by it.
pub fn new_pod(rs: &Value) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = Map::new();
    let name = str_at(rs, "/metadata/name");
    metadata.insert("name".into(), json!(format!("{name}-{}", defaults::suffix(5))));
    metadata.insert("namespace".into(), json!(str_at(rs, "/metadata/namespace")));
    for key in ["labels", "annotations"] {
        if let Some(v) = template.pointer(&format!("/metadata/{key}")).filter(|v| v.is_object()) {
            metadata.insert(key.into(), v.clone());
        }
    }
    if let Some(finalizers) = template.pointer("/metadata/finalizers") {
        metadata.insert("finalizers".into(), finalizers.clone());
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref(rs)]));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({}))})
}

/// The deletion order of `ActivePods`: unscheduled, then pending, then not ready,
/// then the newest, go first.
fn deletion_rank(pod: &Value) -> (bool, u8, bool, Reverse<String>, Reverse<String>) {
    let phase = match str_at(pod, "/status/phase") {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    (
        !str_at(pod, "/spec/nodeName").is_empty(),
        phase,
        is_ready(pod),
        Reverse(str_at(pod, "/metadata/creationTimestamp").to_owned()),
        Reverse(str_at(pod, "/metadata/name").to_owned()),
    )
}

/// One sync of `rs` over the pods it controls.
pub fn sync(rs: &Value, pods: &[&Value], now: Timestamp) -> Plan {
    let active: Vec<&Value> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let mut plan = Plan::default();
    if !is_deleting(rs) {
        let want = usize::try_from(i32_at(rs, "/spec/replicas").max(0)).unwrap_or(0);
        if active.len() < want {
            // At most a burst per pass, as kube-controller-manager's slow start does.
            let missing = (want - active.len()).min(MAX_CREATIONS_PER_PASS);
            plan.create = (0..missing).map(|_| new_pod(rs)).collect();
        } else if active.len() > want {
            let mut doomed = active.clone();
            doomed.sort_by_key(|p| deletion_rank(p));
            plan.delete =
                doomed[..active.len() - want].iter().map(|p| str_at(p, "/metadata/name").to_owned()).collect();
        }
    }
    let status = Counts::of(rs, pods, now).status(rs);
    if rs.get("status") != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

impl Controllers {
    /// Syncs the ReplicaSets `names`: all deletions first, then creations, so a rollout
    /// never has more pods at once than its ReplicaSets ask for together.
    pub(super) async fn replica_sets(&mut self, names: BTreeSet<Name>) {
        let (rs_kind, pod_kind) = (self.kinds.replica_set.clone(), self.kinds.pod.clone());
        let now = Timestamp::now();
        let mut plans: Vec<(Arc<Value>, Plan)> = Vec::new();
        for (ns, name) in names {
            // Events keep coming while a long pass runs: take them before they overflow.
            self.drain_events();
            let Some(rs) = self.cluster.get_raw(&rs_kind.group, &rs_kind.plural, &ns, &name) else { continue };
            self.adopt_orphans(&rs, &pod_kind).await;
            let owned = self.owned(&rs, &pod_kind);
            let pods: Vec<&Value> = owned.iter().map(|p| &**p).collect();
            if let Some(at) = available_at(&rs, &pods) {
                self.wake_at(Kind::ReplicaSet, (&ns, &name), at);
            }
            let plan = sync(&rs, &pods, now);
            plans.push((rs, plan));
        }
        for (rs, plan) in &plans {
            let (ns, name) = (str_at(rs, "/metadata/namespace"), str_at(rs, "/metadata/name"));
            for pod in &plan.delete {
                match self.delete(&pod_kind, ns, pod).await {
                    Ok(()) => self.record(rs, "SuccessfulDelete", format!("Deleted pod: {pod}")),
                    Err(e) => {
                        e.log();
                        if !e.is_not_found() {
                            self.record_warning(rs, "FailedDelete", format!("Error deleting: {}", e.source));
                        }
                        self.retry(Kind::ReplicaSet, (ns, name));
                    }
                }
            }
        }
        for (rs, plan) in &plans {
            for pod in &plan.create {
                match self.create(&pod_kind, pod.clone()).await {
                    Ok(created) => {
                        let message = format!("Created pod: {}", str_at(&created, "/metadata/name"));
                        self.record(rs, "SuccessfulCreate", message);
                    }
                    Err(e) => {
                        e.log();
                        // kube's ReplicaSet controller is silent when the namespace is going.
                        if !e.is_namespace_terminating() {
                            self.record_warning(rs, "FailedCreate", format!("Error creating: {}", e.source));
                        }
                        self.retry(Kind::ReplicaSet, (str_at(rs, "/metadata/namespace"), str_at(rs, "/metadata/name")));
                    }
                }
            }
        }
        for (rs, plan) in plans {
            if let Some(status) = plan.status {
                let mut updated = (*rs).clone();
                updated["status"] = status;
                if let Err(e) = self.replace(&rs_kind, Some("status"), updated).await {
                    e.log();
                    self.retry(Kind::ReplicaSet, (str_at(&rs, "/metadata/namespace"), str_at(&rs, "/metadata/name")));
                }
            }
        }
    }
}

impl Controllers {
    fn record(&self, rs: &Value, reason: &'static str, message: String) {
        self.recorder.record(Record::normal(REPLICASET_CONTROLLER, reference(rs, None), reason, message));
    }

    fn record_warning(&self, rs: &Value, reason: &'static str, message: String) {
        self.recorder.record(Record::warning(REPLICASET_CONTROLLER, reference(rs, None), reason, message));
    }
}

/// When the first pod of `rs` that is ready but not yet available (minReadySeconds)
/// becomes available: only time changes that.
pub(super) fn available_at(rs: &Value, pods: &[&Value]) -> Option<Timestamp> {
    let min_ready = i32_at(rs, "/spec/minReadySeconds");
    if min_ready <= 0 {
        return None;
    }
    let now = Timestamp::now();
    pods.iter()
        .filter(|p| is_ready(p) && !is_available(p, min_ready, now))
        .map(|p| {
            // `is_available` wants `since + minReadySeconds < now`, to the second.
            let since = ready_since(p).and_then(parse_time).map_or(now.as_second(), |t| t.as_second());
            Timestamp::from_second(since + i64::from(min_ready) + 1).unwrap_or(now)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                "spec": {"containers": [{"name": "app", "image": "x:1"}]}}}})
    }

    fn pod(name: &str, created: &str, phase: &str, ready: bool) -> Value {
        let mut p = json!({"metadata": {"name": name, "creationTimestamp": created,
            "labels": {"app": "web", "pod-template-hash": "abc"}},
            "spec": {"nodeName": "sim-node"}, "status": {"phase": phase}});
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        p
    }

    #[test]
    fn creates_missing_pods_from_the_template() {
        let plan = sync(&rs(2), &[], Timestamp::now());
        assert_eq!(plan.create.len(), 2);
        let p = &plan.create[0];
        assert!(str_at(p, "/metadata/name").starts_with("web-abc-") && str_at(p, "/metadata/name").len() == 13);
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], "abc");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(plan.status, Some(json!({"replicas": 0, "observedGeneration": 2})));
    }

    #[test]
    fn deletes_not_ready_then_newest_first() {
        let pods = [
            pod("old-ready", "2026-01-01T00:00:00Z", "Running", true),
            pod("new-ready", "2026-01-01T00:00:09Z", "Running", true),
            pod("not-ready", "2026-01-01T00:00:01Z", "Running", false),
            pod("pending", "2026-01-01T00:00:02Z", "Pending", false),
            pod("done", "2026-01-01T00:00:03Z", "Succeeded", false),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let plan = sync(&rs(1), &refs, Timestamp::now());
        assert_eq!(plan.delete, ["pending", "not-ready", "new-ready"]);
        assert!(plan.create.is_empty());
        let status = plan.status.unwrap();
        assert_eq!(
            status,
            json!({"replicas": 4, "fullyLabeledReplicas": 4, "readyReplicas": 2, "availableReplicas": 2,
                "observedGeneration": 2})
        );
        // An unchanged status is not written again.
        let mut settled = rs(4);
        settled["status"] = status;
        assert_eq!(sync(&settled, &refs, Timestamp::now()), Plan::default());
    }

    #[test]
    fn a_replica_set_being_deleted_only_reports() {
        let mut deleting = rs(3);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let plan = sync(&deleting, &[], Timestamp::now());
        assert!(plan.create.is_empty() && plan.delete.is_empty());
    }
}
