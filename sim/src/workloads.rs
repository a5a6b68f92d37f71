//! Workload simulation: what kube-controller-manager and a kubelet do to make
//! Deployments, ReplicaSets, Pods and EndpointSlices move in the simulated cluster.
//!
//! ```text
//!  store events ─┐                 one pass, in this order, reading the store afresh each step:
//!  pod deadline ─┼─▶ pass ──▶ garbage  (dependents whose controller is gone)
//!  resync 1 s  ──┘        ──▶ kubelet  (IP, Pending; Running and Ready after the delay)
//!                         ──▶ replicasets (delete extra pods, then create missing ones; status)
//!                         ──▶ deployments (new ReplicaSet, rolling/recreate scaling, status)
//!                         ──▶ endpointslices (ready/serving/terminating endpoints per Service)
//! ```
//!
//! Every write goes through [`Cluster`] with [`Ctx::internal`] (no admission), so watches
//! see it. Writes carry the resourceVersion they were computed from: a 409 means the
//! world moved, and the next pass computes again. Decisions are pure functions in the
//! submodules; the `impl Controllers` blocks there are the thin I/O around them.
//!
//! Thousands of objects: a pass skips every Deployment, ReplicaSet and Service whose
//! inputs (its own and its dependents' resourceVersions) are those of a sync that wrote
//! nothing and that time alone cannot change ([`Memo`]: no pod waiting out
//! minReadySeconds, no rollout in progress); every [`FULL_EVERY`] resyncs a pass looks at
//! everything, as a safety net.

mod deployments;
pub use deployments::{equal_ignore_hash, pod_template_hash};
mod endpointslices;
mod pods;
mod progress;
mod replicasets;
mod rollout;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::FutureExt as _;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, Ctx, Patch};
use super::resources::{Resource, Resources, Target};
use super::status::ApiError;
use super::store::ObjectKey;

/// How often the controllers look without an event (at what time alone may change).
pub const RESYNC: Duration = Duration::from_secs(1);
/// One resync in this many forgets the [`Memo`] and syncs everything.
pub const FULL_EVERY: u32 = 30;

/// The label kube-controller-manager adds to ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a Deployment and of each of its ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// A write of one controller that did not go through.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind} {namespace}/{name}: {source}")]
pub struct WriteError {
    verb: &'static str,
    kind: String,
    namespace: String,
    name: String,
    source: ApiError,
}

impl WriteError {
    /// Logs it: conflicts and vanished objects are the normal life of a controller.
    fn log(&self) {
        match self.source {
            ApiError::Conflict { .. } | ApiError::NotFound { .. } | ApiError::AlreadyExists { .. } => {
                tracing::debug!(error = %self, "sim workloads: retrying at the next pass");
            }
            _ => tracing::warn!(error = %self, "sim workloads: write failed"),
        }
    }
}

/// The built-in resources the controllers read and write.
#[derive(Debug, Clone)]
struct Kinds {
    deployment: Resource,
    replica_set: Resource,
    pod: Resource,
    service: Resource,
    endpoint_slice: Resource,
}

impl Kinds {
    fn lookup(resources: &Resources) -> Option<Self> {
        Some(Self {
            deployment: resources.by_kind("apps", "Deployment")?,
            replica_set: resources.by_kind("apps", "ReplicaSet")?,
            pod: resources.by_kind("", "Pod")?,
            service: resources.by_kind("", "Service")?,
            endpoint_slice: resources.by_kind("discovery.k8s.io", "EndpointSlice")?,
        })
    }
}

/// Whether a change can matter to a workload controller.
fn relevant(key: &ObjectKey) -> bool {
    matches!(
        (key.group.as_str(), key.resource.as_str()),
        ("", "pods" | "services" | "namespaces")
            | ("apps", "deployments" | "replicasets")
            | ("discovery.k8s.io", "endpointslices")
    )
}

/// Starts the workload controllers; they stop when `stop` fires.
pub fn spawn(cluster: Arc<Cluster>, pod_ready_delay: Duration, stop: CancellationToken) {
    let Some(kinds) = Kinds::lookup(&cluster.resources) else {
        tracing::error!("sim workloads: the built-in apps and core resources are missing; not starting");
        return;
    };
    let mut events = cluster.store.subscribe();
    let mut controllers =
        Controllers { cluster, kinds, kubelet: pods::Kubelet::new(pod_ready_delay), memo: Memo::default() };
    tokio::spawn(async move {
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut deadline: Option<Instant> = None;
        let mut resyncs: u32 = 0;
        loop {
            let pod_ready = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let full = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                received = events.recv() => match received {
                    Ok(event) if !relevant(&event.key) => continue,
                    Err(RecvError::Closed) => return,
                    // Lagged or relevant: one pass covers everything pending.
                    _ => {
                        while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
                        false
                    }
                },
                _ = resync.tick() => {
                    resyncs = resyncs.wrapping_add(1);
                    resyncs.is_multiple_of(FULL_EVERY)
                }
                () = tokio::time::sleep_until(pod_ready) => false,
            };
            if full {
                controllers.memo.clear();
            }
            // A bug in one pass must not stop the cluster: log it, go on at the next one.
            match std::panic::AssertUnwindSafe(controllers.pass()).catch_unwind().await {
                Ok(next) => deadline = next,
                Err(_) => {
                    tracing::error!("sim workloads: a controller pass panicked; retrying at the next resync");
                    deadline = None;
                }
            }
        }
    });
}

/// The controllers' shared state: the cluster, the kubelet's memory and what was synced.
struct Controllers {
    cluster: Arc<Cluster>,
    kinds: Kinds,
    kubelet: pods::Kubelet,
    memo: Memo,
}

/// For each synced object (by uid), the resourceVersions of the inputs of its last sync
/// that wrote nothing: the same inputs again would write nothing again.
#[derive(Debug, Default)]
struct Memo(HashMap<String, u64>);

impl Memo {
    /// The fingerprint of `object` and its dependents `inputs`.
    fn fingerprint<'a>(object: &Value, inputs: impl IntoIterator<Item = &'a Value>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut versions: Vec<(&str, &str)> =
            inputs.into_iter().map(|o| (uid_of(o), str_at(o, "/metadata/resourceVersion"))).collect();
        versions.sort_unstable();
        (uid_of(object), str_at(object, "/metadata/resourceVersion"), versions).hash(&mut h);
        h.finish()
    }

    /// Whether `object` was synced with these inputs, writing nothing.
    fn settled(&self, object: &Value, fingerprint: u64) -> bool {
        self.0.get(uid_of(object)) == Some(&fingerprint)
    }

    /// After a sync: remembered when it wrote nothing, forgotten otherwise.
    fn record(&mut self, object: &Value, fingerprint: u64, wrote: bool) {
        if wrote {
            self.0.remove(uid_of(object));
        } else {
            self.0.insert(uid_of(object).to_owned(), fingerprint);
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl Controllers {
    /// One round of every controller; returns when the kubelet next has a pod to make ready.
    async fn pass(&mut self) -> Option<Instant> {
        self.collect_garbage().await;
        let deadline = self.kubelet().await;
        self.replica_sets().await;
        self.deployments().await;
        self.endpoint_slices().await;
        deadline
    }

    fn list(&self, r: &Resource) -> Vec<Arc<Value>> {
        self.cluster.store.list(&r.group, &r.plural, None).0
    }

    async fn create(&self, r: &Resource, object: Value) -> Result<Value, WriteError> {
        let namespace = str_at(&object, "/metadata/namespace").to_owned();
        let t = Target { resource: r, version: &r.storage_version, namespace: &namespace };
        self.cluster.create(&Ctx::internal(), &t, object.clone()).await.map(|w| w.object).map_err(|source| {
            let name = match str_at(&object, "/metadata/name") {
                "" => format!("{}*", str_at(&object, "/metadata/generateName")),
                name => name.to_owned(),
            };
            WriteError { verb: "creating", kind: r.kind.clone(), namespace, name, source }
        })
    }

    /// PUT with the object's resourceVersion: fails with a conflict if it moved since.
    async fn replace(&self, r: &Resource, sub: Option<&str>, object: Value) -> Result<Value, WriteError> {
        let (namespace, name) = (str_at(&object, "/metadata/namespace"), str_at(&object, "/metadata/name"));
        let t = Target { resource: r, version: &r.storage_version, namespace };
        let verb = if sub == Some("status") { "updating the status of" } else { "updating" };
        self.cluster.replace(&Ctx::internal(), &t, name, sub, object.clone()).await.map(|w| w.object).map_err(
            |source| WriteError {
                verb,
                kind: r.kind.clone(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            },
        )
    }

    async fn merge_patch(&self, r: &Resource, namespace: &str, name: &str, patch: Value) -> Result<Value, WriteError> {
        let t = Target { resource: r, version: &r.storage_version, namespace };
        self.cluster.patch(&Ctx::internal(), &t, name, None, &Patch::Merge(patch)).await.map(|w| w.object).map_err(
            |source| WriteError {
                verb: "patching",
                kind: r.kind.clone(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            },
        )
    }

    async fn delete(&self, r: &Resource, namespace: &str, name: &str) -> Result<(), WriteError> {
        let t = Target { resource: r, version: &r.storage_version, namespace };
        self.cluster.delete(&Ctx::internal(), &t, name, "Background").await.map(|_| ()).map_err(|source| WriteError {
            verb: "deleting",
            kind: r.kind.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
    }

    /// Deletes ReplicaSets, Pods and EndpointSlices whose controller is gone: a
    /// controller may create one just after its owner was deleted and collected.
    async fn collect_garbage(&self) {
        let kinds = self.kinds.clone();
        let checks = [
            (&kinds.replica_set, &kinds.deployment),
            (&kinds.pod, &kinds.replica_set),
            (&kinds.endpoint_slice, &kinds.service),
        ];
        for (dependent, owner) in checks {
            for object in self.list(dependent) {
                let Some(reference) = controller_of(&object) else { continue };
                if reference["kind"] != owner.kind.as_str() || reference["apiVersion"] != owner.api_version("v1") {
                    continue;
                }
                let namespace = str_at(&object, "/metadata/namespace");
                let owner_name = reference["name"].as_str().unwrap_or_default();
                let alive = self
                    .cluster
                    .get_raw(&owner.group, &owner.plural, namespace, owner_name)
                    .is_some_and(|o| o.pointer("/metadata/uid") == reference.get("uid"));
                if !alive && let Err(e) = self.delete(dependent, namespace, str_at(&object, "/metadata/name")).await {
                    e.log();
                }
            }
        }
    }
}

/// The string at a JSON pointer, or "".
fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The integer at a JSON pointer.
fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// An int32 field as Go reads it: missing or out of range is 0.
fn i32_at(v: &Value, pointer: &str) -> i32 {
    int_at(v, pointer).and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
}

fn uid_of(v: &Value) -> &str {
    str_at(v, "/metadata/uid")
}

/// The ownerReference marked `controller: true`, if any.
fn controller_of(v: &Value) -> Option<&Value> {
    v.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|r| r["controller"] == true)
}

/// The uid of the controller of an object.
fn controller_uid(v: &Value) -> Option<&str> {
    controller_of(v)?.get("uid")?.as_str()
}

/// A controller reference to `owner`, as `metav1.NewControllerRef` makes one.
fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner.pointer("/metadata/name"),
        "uid": owner.pointer("/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// RFC 3339 to the second, as Kubernetes writes timestamps.
fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// Objects of one list by uid of their controller.
fn by_controller(objects: &[Arc<Value>]) -> HashMap<&str, Vec<&Value>> {
    let mut out: HashMap<&str, Vec<&Value>> = HashMap::new();
    for object in objects {
        if let Some(uid) = controller_uid(object) {
            out.entry(uid).or_default().push(object);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_references() {
        let owner = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "uid": "u1"}});
        let reference = controller_ref(&owner);
        assert_eq!(reference["controller"], true);
        assert_eq!(reference["blockOwnerDeletion"], true);
        let child = json!({"metadata": {"ownerReferences": [
            {"kind": "Other", "uid": "u0"}, reference]}});
        assert_eq!(controller_uid(&child), Some("u1"));
        assert_eq!(controller_uid(&json!({"metadata": {"ownerReferences": [{"uid": "u0"}]}})), None);
    }

    #[test]
    fn only_workload_kinds_wake_the_controllers() {
        assert!(relevant(&ObjectKey::new("", "pods", "default", "p")));
        assert!(relevant(&ObjectKey::new("apps", "replicasets", "default", "r")));
        assert!(!relevant(&ObjectKey::new("coordination.k8s.io", "leases", "default", "l")));
        assert!(!relevant(&ObjectKey::new("", "configmaps", "default", "c")));
    }
}
