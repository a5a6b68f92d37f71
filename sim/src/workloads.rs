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
//!                         ──▶ namespaces (a deleted one emptied, then gone)
//!                         ──▶ autoscalers (targets' replicas within bounds and metrics)
//! ```
//!
//! Every write goes through [`Cluster`] with [`Ctx::internal`] (no admission), so watches
//! see it. Writes carry the resourceVersion they were computed from: a 409 means the
//! world moved, and the next pass computes again. Decisions are pure functions in the
//! submodules; the `impl Controllers` blocks there are the thin I/O around them.
//!
//! Event-driven, as kube-controller-manager is: each store event marks dirty the keys it
//! can affect (a pod: itself, its ReplicaSet and that one's Deployment, the Services that
//! select it; see `triggers.rs`), and a pass syncs only those. Work that waits on time
//! alone (the kubelet's ready delay, minReadySeconds, progress deadlines, a failed write)
//! goes to a delayed queue keyed by object (`queue.rs`). A lagged event receiver or a
//! panic in a pass marks everything dirty; so does a slow periodic resync
//! ([`FULL_RESYNC`]), as a safety net.
//!
//! Termination takes time, as in a cluster: a deleted pod is Terminating (out of its
//! Services' ready endpoints at once) until the kubelet has stopped its containers
//! (`terminating.rs`); a deleted namespace until its content is gone (`namespaces.rs`).
//! The controllers and the kubelet record the Events kube's do (`events.rs`), through a
//! queue that never holds up a pass; its writer (`event_writer.rs`) stores them directly,
//! the one exception to writing through [`Cluster`]'s API semantics.

mod deployments;
pub use deployments::{equal_ignore_hash, pod_template_hash};
pub use writes::WriteError;
mod containers;
mod endpointslices;
mod event_writer;
pub mod events;
pub mod hpa;
mod namespaces;
pub(crate) mod pods;
mod progress;
mod queue;
mod replicasets;
mod rollout;
mod terminating;
mod triggers;
mod writes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use self::queue::{Dirty, Index, Kind, Timers};
use super::cluster::{Cluster, DeleteOptions};
use super::resources::{Resource, Resources};
use super::store::Event;

/// When a failed write is tried again, and how soon time-driven work is looked at again
/// when its exact time is unknown.
pub const RESYNC: Duration = Duration::from_secs(1);
/// How often everything is synced, events or not: the safety net. Slow: a full pass
/// over 10,000 Deployments costs seconds of CPU.
pub const FULL_RESYNC: Duration = Duration::from_secs(300);

/// The label kube-controller-manager adds to ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a Deployment and of each of its ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// The built-in resources the controllers read and write.
#[derive(Debug, Clone)]
struct Kinds {
    deployment: Arc<Resource>,
    replica_set: Arc<Resource>,
    pod: Arc<Resource>,
    service: Arc<Resource>,
    endpoint_slice: Arc<Resource>,
    autoscaler: Arc<Resource>,
}

impl Kinds {
    fn lookup(resources: &Resources) -> Option<Self> {
        Some(Self {
            deployment: resources.by_kind("apps", "Deployment")?,
            replica_set: resources.by_kind("apps", "ReplicaSet")?,
            pod: resources.by_kind("", "Pod")?,
            service: resources.by_kind("", "Service")?,
            endpoint_slice: resources.by_kind("discovery.k8s.io", "EndpointSlice")?,
            autoscaler: resources.by_kind(crate::autoscaling::GROUP, crate::autoscaling::KIND)?,
        })
    }
}

/// What woke the driver.
enum Wake {
    Stop,
    Event(Arc<Event>),
    Lagged,
    Full,
    Timer,
}

/// How fast the simulated node's pods move.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From scheduled to Running and Ready.
    pub ready_delay: Duration,
    /// From deleted to gone: the containers' exit on SIGTERM (the pod's grace period,
    /// when shorter, bounds it).
    pub stop_delay: Duration,
}

/// Starts the workload controllers; they stop when `stop` fires.
pub fn spawn(cluster: Arc<Cluster>, timing: Timing, stop: CancellationToken) {
    let Some(kinds) = Kinds::lookup(&cluster.resources) else {
        tracing::error!("sim workloads: the built-in apps and core resources are missing; not starting");
        return;
    };
    let events = cluster.store.subscribe();
    let recorder = events::spawn(cluster.clone(), stop.clone());
    let mut controllers = Controllers {
        cluster,
        kinds,
        kubelet: pods::Kubelet::new(timing),
        recorder,
        terminating: HashSet::new(),
        events,
        lagged: false,
        dirty: Dirty::default(),
        timers: Timers::default(),
        pods_by_label: Index::default(),
        services_by_selector: Index::default(),
        slices_by_service: Index::default(),
        autoscaler_history: Default::default(),
    };
    tokio::spawn(async move {
        let mut full = tokio::time::interval_at(Instant::now() + FULL_RESYNC, FULL_RESYNC);
        full.set_missed_tick_behavior(MissedTickBehavior::Delay);
        controllers.resync_all(true);
        loop {
            if controllers.dirty.is_empty() {
                let timer = controllers.timers.next().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                let wake = tokio::select! {
                    biased;
                    () = stop.cancelled() => Wake::Stop,
                    received = controllers.events.recv() => match received {
                        Ok(event) => Wake::Event(event),
                        Err(RecvError::Lagged(_)) => Wake::Lagged,
                        Err(RecvError::Closed) => Wake::Stop,
                    },
                    _ = full.tick() => Wake::Full,
                    () = tokio::time::sleep_until(timer) => Wake::Timer,
                };
                match wake {
                    Wake::Stop => return,
                    Wake::Event(event) => controllers.absorb(&event),
                    Wake::Lagged => controllers.lagged = true,
                    Wake::Full => controllers.resync_all(false),
                    Wake::Timer => {}
                }
            } else if stop.is_cancelled() {
                return;
            }
            controllers.drain_events();
            if std::mem::take(&mut controllers.lagged) {
                tracing::debug!("sim workloads: events missed; resyncing everything");
                controllers.resync_all(true);
            }
            let dirty = controllers.take_dirty();
            if dirty.is_empty() {
                continue;
            }
            // A bug in one pass must not stop the cluster: log it, resync everything.
            if std::panic::AssertUnwindSafe(controllers.pass(dirty)).catch_unwind().await.is_err() {
                tracing::error!("sim workloads: a controller pass panicked; resyncing everything");
                controllers.resync_all(true);
            }
            // Let the API server's tasks run between passes.
            tokio::task::yield_now().await;
        }
    });
}

/// The controllers' shared state: the cluster, the kubelet's memory, the queues.
struct Controllers {
    cluster: Arc<Cluster>,
    kinds: Kinds,
    kubelet: pods::Kubelet,
    /// Where the controllers' and the kubelet's Events go.
    recorder: events::Recorder,
    /// Namespaces being deleted: a deletion in one may be the last of its content.
    terminating: HashSet<String>,
    events: broadcast::Receiver<Arc<Event>>,
    /// Events were missed: the indexes and the dirty keys may be wrong.
    lagged: bool,
    dirty: Dirty,
    timers: Timers,
    /// Pods by (namespace, label, value).
    pods_by_label: Index,
    /// Services by (namespace, first selector label, value).
    services_by_selector: Index,
    /// EndpointSlices of the EndpointSlice controller by (namespace, "", Service name).
    slices_by_service: Index,
    /// What the autoscaler controller remembers of each autoscaler between syncs.
    autoscaler_history: std::collections::HashMap<queue::Name, hpa::History>,
}

impl Controllers {
    /// The dirty keys, and those of the delayed queue that are due.
    fn take_dirty(&mut self) -> Dirty {
        self.timers.pop_due(Instant::now(), &mut self.dirty);
        std::mem::take(&mut self.dirty)
    }

    /// One round of every controller over the dirty keys, in the order of a full pass.
    async fn pass(&mut self, dirty: Dirty) {
        self.collect_garbage(dirty.garbage).await;
        self.kubelet(dirty.pods).await;
        self.replica_sets(dirty.replica_sets).await;
        self.deployments(dirty.deployments).await;
        self.endpoint_slices(dirty.services).await;
        self.namespaces(dirty.namespaces).await;
        self.autoscalers(dirty.autoscalers).await;
    }

    /// Syncs `name` again in [`RESYNC`] (a write failed).
    fn retry(&mut self, kind: Kind, name: (&str, &str)) {
        self.timers.after(kind, (name.0.to_owned(), name.1.to_owned()), Instant::now() + RESYNC);
    }

    /// Syncs `name` again at `at` (wall clock), a little after so that it has passed;
    /// in [`RESYNC`] when that is already past.
    fn wake_at(&mut self, kind: Kind, name: (&str, &str), at: Timestamp) {
        let wait = at.as_millisecond() - Timestamp::now().as_millisecond();
        let wait = u64::try_from(wait).ok().filter(|w| *w > 0).map_or(RESYNC, |w| Duration::from_millis(w + 50));
        self.timers.after(kind, (name.0.to_owned(), name.1.to_owned()), Instant::now() + wait);
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

impl Controllers {
    /// `ControllerRefManager`'s adoption: objects of `r` in `owner`'s namespace that its
    /// selector matches and that have no controller (orphaned by a `--cascade=orphan`
    /// delete, or made by hand) get `owner` as their controller.
    async fn adopt_orphans(&mut self, owner: &Value, r: &Resource) {
        let selector = crate::selector::LabelSelector::from_object(&owner["spec"]["selector"]);
        if is_deleting(owner) || selector.is_empty() {
            return;
        }
        let namespace = str_at(owner, "/metadata/namespace");
        let (items, _) = self.cluster.store.list(&r.group, &r.plural, Some(namespace));
        let orphans =
            items.iter().filter(|o| controller_of(o).is_none() && !is_deleting(o) && selector.matches_object(o));
        for orphan in orphans.cloned().collect::<Vec<_>>() {
            let mut refs =
                orphan.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
            refs.push(controller_ref(owner));
            // The uid is a precondition: a namesake made meanwhile is not adopted.
            let patch = json!({"metadata": {"ownerReferences": refs, "uid": uid_of(&orphan)}});
            if let Err(e) = self.merge_patch(r, namespace, str_at(&orphan, "/metadata/name"), patch).await {
                e.log();
            }
        }
    }

    /// The objects of `r` that `owner` controls, by the store's index of owners.
    fn owned(&self, owner: &Value, r: &Resource) -> Vec<Arc<Value>> {
        let uid = uid_of(owner);
        let keys = self.cluster.store.dependents(uid);
        keys.iter()
            .filter(|k| k.is_in(&r.group, &r.plural, None))
            .filter_map(|k| self.cluster.store.get(k))
            .filter(|o| controller_uid(o) == Some(uid))
            .collect()
    }
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
        use crate::store::ObjectKey;
        use triggers::relevant;
        assert!(relevant(&ObjectKey::new("", "pods", "default", "p")));
        assert!(relevant(&ObjectKey::new("apps", "replicasets", "default", "r")));
        assert!(!relevant(&ObjectKey::new("coordination.k8s.io", "leases", "default", "l")));
        assert!(!relevant(&ObjectKey::new("", "configmaps", "default", "c")));
    }
}
