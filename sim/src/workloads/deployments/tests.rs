//! Model-level tests of the Deployment controller: `sync` driven step by step over a
//! world of ReplicaSets and pod readiness, with the fences checked at every moment.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::super::progress::complete;
use super::super::replicasets::Counts;
use super::super::rollout::Spec;
use super::super::{REVISION, i32_at, str_at};
use super::{Rs, equal_ignore_hash, pod_template_hash, sync};

fn deployment(replicas: i32, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
        "spec": {"replicas": replicas, "strategy": strategy, "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
    })
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// The readiness of each pod, by ReplicaSet name.
type Pods = BTreeMap<String, Vec<bool>>;

/// What the Deployment controller sees of a cluster: its ReplicaSets and, for each,
/// the readiness of its pods. New pods are ready one step after they appear.
struct Model {
    d: Value,
    rss: Vec<Value>,
    pods: Pods,
    clock: u32,
    /// Checked at every moment.
    fence: Box<dyn Fn(&Pods)>,
}

impl Model {
    fn new(d: Value) -> Self {
        Self { d, rss: Vec::new(), pods: BTreeMap::new(), clock: 0, fence: Box::new(|_| {}) }
    }

    fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.d["spec"]);
        let generation = self.d["metadata"]["generation"].as_i64().unwrap() + 1;
        self.d["metadata"]["generation"] = json!(generation);
    }

    fn set_image(&mut self, image: &str) {
        self.edit(|spec| spec["template"]["spec"]["containers"][0]["image"] = json!(image));
    }

    /// The kubelet readies the pods there are, then each ReplicaSet deletes extra pods
    /// (not ready first) or adds missing ones; the fence is checked after each.
    fn pods_step(&mut self) {
        for pods in self.pods.values_mut() {
            pods.iter_mut().for_each(|ready| *ready = true);
        }
        (self.fence)(&self.pods);
        for rs in &self.rss {
            let want = usize::try_from(i32_at(rs, "/spec/replicas")).unwrap();
            let pods = self.pods.entry(str_at(rs, "/metadata/name").to_owned()).or_default();
            while pods.len() > want {
                let at = pods.iter().position(|r| !r).unwrap_or(0);
                pods.remove(at);
            }
        }
        (self.fence)(&self.pods);
        for rs in &self.rss {
            let want = usize::try_from(i32_at(rs, "/spec/replicas")).unwrap();
            let pods = self.pods.entry(str_at(rs, "/metadata/name").to_owned()).or_default();
            pods.resize(want.max(pods.len()), false);
        }
        (self.fence)(&self.pods);
    }

    fn sync_step(&mut self) {
        let rss: Vec<Rs> = self
            .rss
            .iter()
            .map(|rs| {
                let pods = self.pods.get(str_at(rs, "/metadata/name")).cloned().unwrap_or_default();
                let n = i32::try_from(pods.len()).unwrap();
                let ready = i32::try_from(pods.iter().filter(|r| **r).count()).unwrap();
                Rs::new(rs.clone(), Counts { replicas: n, fully_labeled: n, ready, available: ready, terminating: 0 })
            })
            .collect();
        let outcome = sync(&self.d, rss, Timestamp::now()).unwrap();
        self.d = outcome.deployment;
        self.rss.clear();
        for mut rs in outcome.replica_sets {
            let name = str_at(&rs.object, "/metadata/name").to_owned();
            if rs.delete {
                self.pods.remove(&name);
                continue;
            }
            if rs.create {
                self.clock += 1;
                rs.object["metadata"]["creationTimestamp"] = json!(format!("2026-01-01T00:{:02}:00Z", self.clock));
                rs.object["metadata"]["uid"] = json!(format!("{name}-uid"));
            }
            rs.object["metadata"]["generation"] = json!(1);
            rs.object["status"] = json!({"replicas": rs.counts.replicas, "observedGeneration": 1});
            self.rss.push(rs.object);
        }
    }

    fn done(&self) -> bool {
        complete(&Spec::of(&self.d).unwrap(), &self.d["status"])
    }

    /// Steps until the rollout is complete; the number of steps it took.
    fn settle(&mut self) -> usize {
        for step in 0..200 {
            self.sync_step();
            if self.done() && step > 0 {
                return step;
            }
            self.pods_step();
        }
        panic!("no convergence: {}\n{:#?}", self.d["status"], self.rss);
    }

    fn sizes(&self) -> Vec<(String, i32)> {
        self.rss.iter().map(|rs| (str_at(rs, "/metadata/name").to_owned(), i32_at(rs, "/spec/replicas"))).collect()
    }

    fn revision(&self, rs: usize) -> &str {
        str_at(&self.rss[rs], &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")))
    }
}

#[test]
fn rolling_updates_stay_within_their_fences() {
    for (replicas, surge, unavailable, max_pods, min_ready) in [
        (10, json!("25%"), json!("25%"), 13, 8),
        (3, json!(0), json!(1), 3, 2),
        (3, json!(1), json!(0), 4, 3),
        (5, json!("100%"), json!(0), 10, 5),
        (4, json!("30%"), json!("30%"), 6, 3),
    ] {
        let case = format!("{replicas} {surge} {unavailable}");
        let mut m = Model::new(deployment(replicas, rolling(surge.clone(), unavailable.clone())));
        m.settle();
        let c = case.clone();
        m.fence = Box::new(move |pods| {
            let total: usize = pods.values().map(Vec::len).sum();
            let ready = pods.values().flatten().filter(|r| **r).count();
            assert!(total <= max_pods, "{c}: {total} pods {pods:?}");
            assert!(ready >= min_ready, "{c}: {ready} ready {pods:?}");
        });
        m.set_image("app:2");
        let steps = m.settle();
        assert!(steps > 1, "{case}: rolled in steps");
        let sizes: Vec<i32> = m.sizes().into_iter().map(|(_, s)| s).collect();
        assert_eq!(sizes, [0, replicas], "{case}");
        assert_eq!((m.revision(0), m.revision(1)), ("1", "2"), "{case}");
        assert_eq!(str_at(&m.d, "/metadata/annotations/deployment.kubernetes.io~1revision"), "2");
    }
}

#[test]
fn recreate_never_mixes_old_and_new_pods() {
    let mut m = Model::new(deployment(3, json!({"type": "Recreate"})));
    m.settle();
    m.fence = Box::new(|pods| {
        let populated = pods.values().filter(|p| !p.is_empty()).count();
        assert!(populated <= 1, "old and new pods together: {pods:?}");
    });
    m.set_image("app:2");
    m.settle();
    assert_eq!(m.sizes().into_iter().map(|(_, s)| s).collect::<Vec<_>>(), [0, 3]);
}

#[test]
fn a_paused_deployment_only_resizes_until_resumed() {
    let mut m = Model::new(deployment(2, rolling(json!(1), json!(0))));
    m.settle();
    m.edit(|spec| spec["paused"] = json!(true));
    m.set_image("app:2");
    for _ in 0..10 {
        m.sync_step();
        m.pods_step();
    }
    assert_eq!(m.rss.len(), 1, "no ReplicaSet for the paused template");
    let progressing = m.d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing");
    assert_eq!(progressing.unwrap()["reason"], "DeploymentPaused");
    m.edit(|spec| spec["replicas"] = json!(5));
    for _ in 0..3 {
        m.sync_step();
        m.pods_step();
    }
    assert_eq!(m.sizes()[0].1, 5, "scaled while paused");
    assert_eq!(m.rss.len(), 1);
    m.edit(|spec| spec["paused"] = json!(false));
    m.settle();
    assert_eq!(m.sizes().into_iter().map(|(_, s)| s).collect::<Vec<_>>(), [0, 5]);
}

#[test]
fn a_paused_deployment_mid_rollout_is_resized_proportionally_without_rolling() {
    // What an autoscaler does to a paused Deployment: a new `spec.replicas` (via /scale).
    let mut m = Model::new(deployment(4, rolling(json!(1), json!(0))));
    m.settle();
    m.set_image("app:2");
    m.sync_step();
    m.pods_step();
    m.edit(|spec| spec["paused"] = json!(true));
    m.sync_step();
    let before = m.sizes();
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|(_, s)| *s > 0), "two active ReplicaSets: {before:?}");
    m.edit(|spec| spec["replicas"] = json!(8));
    for _ in 0..5 {
        m.sync_step();
        m.pods_step();
    }
    let after = m.sizes();
    assert_eq!(after.len(), 2, "no ReplicaSet made or removed: {after:?}");
    assert_eq!(after.iter().map(|(_, s)| s).sum::<i32>(), 8 + 1, "replicas + maxSurge: {before:?} -> {after:?}");
    for ((_, b), (_, a)) in before.iter().zip(&after) {
        assert!(a > b, "each grows in proportion: {before:?} -> {after:?}");
    }
    m.edit(|spec| spec["paused"] = json!(false));
    m.settle();
    assert_eq!(m.sizes().into_iter().map(|(_, s)| s).collect::<Vec<_>>(), [0, 8]);
}

#[test]
fn a_rollback_reuses_the_old_replica_set_with_a_new_revision() {
    let mut m = Model::new(deployment(2, rolling(json!(1), json!(0))));
    m.settle();
    m.set_image("app:2");
    m.settle();
    m.set_image("app:1");
    m.settle();
    assert_eq!(m.rss.len(), 2, "the first ReplicaSet is the new one again");
    assert_eq!((m.revision(0), m.revision(1)), ("3", "2"));
    let history = str_at(&m.rss[0], "/metadata/annotations/deployment.kubernetes.io~1revision-history");
    assert_eq!(history, "1");
    assert_eq!(m.sizes()[0].1, 2);
}

#[test]
fn resizing_mid_rollout_is_proportional() {
    let mut m = Model::new(deployment(10, rolling(json!(3), json!(2))));
    m.settle();
    m.set_image("app:2");
    m.sync_step();
    m.pods_step();
    m.sync_step();
    let before = m.sizes();
    assert!(before.iter().all(|(_, s)| *s > 0), "two active ReplicaSets: {before:?}");
    m.edit(|spec| spec["replicas"] = json!(20));
    m.sync_step();
    let after = m.sizes();
    assert_eq!(after.iter().map(|(_, s)| s).sum::<i32>(), 20 + 3, "{before:?} -> {after:?}");
    for ((_, b), (_, a)) in before.iter().zip(&after) {
        assert!(a > b, "each grows: {before:?} -> {after:?}");
    }
    m.settle();
    assert_eq!(m.sizes().into_iter().map(|(_, s)| s).collect::<Vec<_>>(), [0, 20]);
}

#[test]
fn old_replica_sets_beyond_the_history_limit_go() {
    let mut d = deployment(1, rolling(json!(1), json!(0)));
    d["spec"]["revisionHistoryLimit"] = json!(1);
    let mut m = Model::new(d);
    m.settle();
    for image in ["app:2", "app:3", "app:4"] {
        m.set_image(image);
        m.settle();
        m.sync_step();
    }
    let names: Vec<String> =
        m.rss.iter().map(|rs| str_at(&rs["spec"]["template"], "/spec/containers/0/image").into()).collect();
    assert_eq!(names, ["app:3", "app:4"]);
}

#[test]
fn recreate_waits_for_terminating_pods() {
    let mut m = Model::new(deployment(2, json!({"type": "Recreate"})));
    m.settle();
    m.set_image("app:2");
    m.sync_step();
    assert_eq!(m.sizes()[0].1, 0, "the old ReplicaSet goes to zero first");
    // Its pods are gone from the counts but one is still terminating (a finalizer).
    m.pods.clear();
    let held = Counts { terminating: 1, ..Counts::default() };
    let outcome = sync(&m.d, vec![Rs::new(m.rss[0].clone(), held)], Timestamp::now()).unwrap();
    assert_eq!(outcome.replica_sets.len(), 1, "no new ReplicaSet while an old pod terminates");
    let outcome = sync(&m.d, vec![Rs::new(m.rss[0].clone(), Counts::default())], Timestamp::now()).unwrap();
    assert_eq!(outcome.replica_sets.len(), 2);
    assert_eq!(outcome.replica_sets[1].spec(), 2, "then the new one at full size");
}

#[test]
fn the_new_replica_set_is_found_by_template_ignoring_the_hash_label() {
    let d = deployment(2, json!({}));
    let template = &d["spec"]["template"];
    let mut rs_template = template.clone();
    rs_template["metadata"]["labels"]["pod-template-hash"] = json!(pod_template_hash(template));
    assert!(equal_ignore_hash(&rs_template, template));
    // Absent, null and empty lists are alike, as nil and empty slices are to Semantic.DeepEqual.
    let mut with_empty = rs_template.clone();
    with_empty["spec"]["containers"][0]["env"] = json!([]);
    with_empty["spec"]["volumes"] = Value::Null;
    assert!(equal_ignore_hash(&with_empty, template));
    // Any other difference is a different template, labels and annotations included.
    for (pointer, value) in [
        ("/spec/containers/0/image", json!("app:2")),
        ("/metadata/labels/app", json!("other")),
        ("/metadata/annotations", json!({"a": "b"})),
        ("/spec/containers/0/env", json!([{"name": "X", "value": "1"}])),
    ] {
        let mut changed = rs_template.clone();
        *changed
            .pointer_mut(pointer.rsplit_once('/').unwrap().0)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .entry(pointer.rsplit_once('/').unwrap().1)
            .or_insert(Value::Null) = value;
        assert!(!equal_ignore_hash(&changed, template), "{pointer}");
    }
    // The label kube-controller-manager computes: FNV-32a in SafeEncodeString's alphabet,
    // the same for a template with or without its own hash label.
    let hash = pod_template_hash(template);
    assert!(!hash.is_empty() && hash.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)), "{hash}");
    assert_eq!(pod_template_hash(&rs_template), hash);
}
