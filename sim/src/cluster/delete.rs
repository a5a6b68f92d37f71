//! DELETE: graceful deletion of pods, namespaces that terminate until their content is
//! gone, finalizers, then the object, its dependents (garbage collection) and the
//! cascades of namespaces and CRDs.
//!
//! ```text
//!  DELETE pod (grace > 0) ─▶ deletionTimestamp = now + grace  ─▶ kubelet stops it ─▶ DELETE grace 0 ─▶ gone
//!  DELETE namespace       ─▶ phase Terminating                ─▶ namespace controller empties it ─▶ gone
//!  DELETE other           ─▶ finalizers? mark : gone (and its dependents, garbage collected)
//! ```

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::{Cluster, Ctx, Written, meta, name_of};
use crate::defaults;
use crate::resources::{Resource, Target};
use crate::status::ApiError;
use crate::store::ObjectKey;

/// Why a namespace being deleted cannot be deleted again (kube-apiserver's words).
const NAMESPACE_PURGE: &str = "The system is ensuring all content is removed from this namespace.  \
    Upon completion, this namespace will automatically be purged by the system.";

/// A pod's `terminationGracePeriodSeconds` when it says none (the API default).
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// What a DELETE asks for besides the object (`DeleteOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `propagationPolicy`: `Background`, `Foreground` or `Orphan`.
    pub propagation: String,
    /// `gracePeriodSeconds`; none: the object's own (a pod's `terminationGracePeriodSeconds`).
    pub grace_period: Option<i64>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        Self { propagation: "Background".into(), grace_period: None }
    }
}

impl DeleteOptions {
    /// `gracePeriodSeconds: 0`: what the kubelet sends once a pod's containers stopped,
    /// and `kubectl delete --grace-period=0 --force`.
    pub fn now() -> Self {
        Self { grace_period: Some(0), ..Self::default() }
    }
}

/// `CheckGracefulDelete` of the pod registry: the seconds a pod gets to stop; 0 deletes
/// it at once (never bound to a node, or already finished: nothing runs to be stopped).
pub fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let own = pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64);
    let mut period = requested.or(own).unwrap_or(DEFAULT_GRACE_SECONDS);
    let unbound = pod.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty);
    let finished = matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
    if unbound || finished {
        period = 0;
    }
    if period < 0 { 1 } else { period }
}

/// What a graceful DELETE does to an object (`rest.BeforeDelete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Graceful {
    /// Delete it now (or mark it for its finalizers).
    Now,
    /// Set `deletionTimestamp` and `deletionGracePeriodSeconds`.
    Mark { deletion_timestamp: String, grace: i64 },
    /// Already terminating within a grace as short: nothing changes.
    Pending,
}

/// The graceful deletion of `object` with `grace` seconds at `now`: only a shorter grace
/// period may replace the one being waited for.
pub fn graceful(object: &Value, grace: i64, now: Timestamp) -> Graceful {
    let stamp = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let marked = object.pointer("/metadata/deletionTimestamp").and_then(Value::as_str);
    let current = object.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    match (marked, current) {
        (Some(_), Some(current)) if grace >= current => Graceful::Pending,
        _ if grace == 0 => Graceful::Now,
        (Some(at), Some(current)) => {
            // The deadline moves earlier by the difference, as kube-apiserver computes it.
            let at = at.parse::<Timestamp>().unwrap_or(now);
            let moved = at.checked_add(SignedDuration::from_secs(grace - current)).unwrap_or(now);
            Graceful::Mark { deletion_timestamp: stamp(moved), grace }
        }
        (Some(_), None) => Graceful::Pending,
        (None, _) => {
            let at = now.checked_add(SignedDuration::from_secs(grace)).unwrap_or(now);
            Graceful::Mark { deletion_timestamp: stamp(at), grace }
        }
    }
}

/// Whether objects of `r` in `namespace` may be created: not in a namespace being deleted
/// (the `NamespaceLifecycle` admission plugin's 403, named by the object's name or, when
/// the server generates it, its `generateName`).
pub(super) fn creatable_in(r: &Resource, namespace: Option<&Value>, object: &Value) -> Result<(), ApiError> {
    let terminating = namespace.is_some_and(|ns| ns.pointer("/metadata/deletionTimestamp").is_some());
    if !r.namespaced || !terminating {
        return Ok(());
    }
    let ns = namespace.map(name_of).unwrap_or_default();
    let name = match name_of(object) {
        "" => object.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or_default(),
        name => name,
    };
    let resource = if r.group.is_empty() { r.plural.clone() } else { format!("{}.{}", r.plural, r.group) };
    Err(ApiError::Forbidden(format!(
        "{resource} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
    )))
}

/// `ShouldDeleteDuringUpdate`: an update that leaves an object being deleted without
/// finalizers deletes it, unless it still waits out a grace period (a pod stopping) or
/// its namespace controller (a namespace, which has no grace period).
pub(super) fn deleted_by_update(saved: &Value) -> bool {
    let finalizers_empty = saved.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
    let grace = saved.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    saved.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty && grace == Some(0)
}

fn is_pod(r: &Resource) -> bool {
    r.group.is_empty() && r.kind == "Pod"
}

fn is_namespace(r: &Resource) -> bool {
    r.group.is_empty() && r.kind == "Namespace"
}

impl Cluster {
    /// DELETE: a pod terminates gracefully, a namespace terminates until it is empty,
    /// finalizers hold an object; otherwise the object goes with its dependents.
    pub async fn delete(
        &self,
        ctx: &Ctx,
        t: &Target<'_>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        let r = t.resource;
        let stored = self.store.get(&t.key(name)).ok_or_else(|| t.not_found(name))?;
        let current = self.to_version(r, (*stored).clone(), t.version).await?;
        let mut scratch = current.clone();
        let call = ctx.call("DELETE", t, None, name, Some(&current));
        let warnings = self.admit(ctx, &call, &mut scratch).await?;
        if ctx.dry_run {
            return Ok(Written { object: current, warnings, created: false });
        }
        let deleting = stored.pointer("/metadata/deletionTimestamp").is_some();
        let mark = |changes: &[(&str, Value)], status_phase: Option<&str>| {
            let mut marked = (*stored).clone();
            let m = meta(&mut marked);
            for (k, v) in changes {
                m.insert((*k).into(), v.clone());
            }
            if let Some(phase) = status_phase {
                marked["status"]["phase"] = json!(phase);
            }
            self.store.update(t.key(name), marked, None).map_err(|e| ApiError::Internal(e.to_string()))
        };
        let grace = if is_pod(r) { pod_grace_period(&stored, options.grace_period) } else { 0 };
        match graceful(&stored, grace, Timestamp::now()) {
            Graceful::Pending => return Ok(Written { object: current, warnings, created: false }),
            Graceful::Mark { deletion_timestamp, grace } => {
                let saved = mark(
                    &[("deletionTimestamp", json!(deletion_timestamp)), ("deletionGracePeriodSeconds", json!(grace))],
                    None,
                )?;
                let object = self.to_version(r, (*saved).clone(), t.version).await?;
                return Ok(Written { object, warnings, created: false });
            }
            Graceful::Now => {}
        }
        if is_namespace(r) {
            // The namespace controller deletes its content, then the namespace itself;
            // until then, another DELETE is refused as kube-apiserver refuses it.
            if deleting {
                return Err(ApiError::Conflict {
                    resource: t.qualified(),
                    name: name.into(),
                    message: NAMESPACE_PURGE.into(),
                });
            }
            let saved = mark(&[("deletionTimestamp", json!(defaults::now()))], Some("Terminating"))?;
            let object = self.to_version(r, (*saved).clone(), t.version).await?;
            return Ok(Written { object, warnings, created: false });
        }
        let has_finalizers =
            stored.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let waited = stored.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            if !deleting || waited.is_some_and(|g| g != 0) {
                // Marked, or a graceful wait cut short: its finalizers still hold it.
                let stamp =
                    if deleting { stored["metadata"]["deletionTimestamp"].clone() } else { json!(defaults::now()) };
                let saved = mark(&[("deletionTimestamp", stamp), ("deletionGracePeriodSeconds", json!(0))], None)?;
                let object = self.to_version(r, (*saved).clone(), t.version).await?;
                return Ok(Written { object, warnings, created: false });
            }
            return Ok(Written { object: current, warnings, created: false });
        }
        let waited = stored.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
        if let (Some(waited), Some(at)) = (waited.filter(|g| *g > 0), stored.pointer("/metadata/deletionTimestamp")) {
            // A graceful deletion cut to 0 (the kubelet's last DELETE): kube-apiserver
            // writes the shortened grace before it deletes, and watches see both.
            let at = at.as_str().and_then(|a| a.parse::<Timestamp>().ok()).unwrap_or_else(Timestamp::now);
            let moved = at.checked_add(SignedDuration::from_secs(-waited)).unwrap_or(at);
            let stamp = moved.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            mark(&[("deletionTimestamp", json!(stamp)), ("deletionGracePeriodSeconds", json!(0))], None)?;
        }
        let gone = self.store.delete(&t.key(name)).map_err(|_| t.not_found(name))?;
        self.on_deleted(r, &gone, &options.propagation);
        let object = self.to_version(r, (*gone).clone(), t.version).await?;
        Ok(Written { object, warnings, created: false })
    }

    /// The namespace controller's last step: a terminating namespace with nothing left in
    /// it goes (once its own finalizers, if any, are removed too). Whether it went.
    pub fn finalize_namespace(&self, name: &str) -> bool {
        let key = ObjectKey::new("", "namespaces", "", name);
        let Some(ns) = self.store.get(&key) else { return true };
        let held = ns.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if ns.pointer("/metadata/deletionTimestamp").is_none() || held || self.namespace_content(name) > 0 {
            return false;
        }
        let Some(r) = self.resources.by_kind("", "Namespace") else { return false };
        match self.store.delete(&key) {
            Ok(gone) => {
                self.on_deleted(&r, &gone, "Background");
                true
            }
            Err(_) => true,
        }
    }

    /// How many objects are left in `namespace`.
    pub fn namespace_content(&self, namespace: &str) -> usize {
        let resources = self.resources.snapshot().into_iter().filter(|r| r.namespaced);
        resources.map(|r| self.store.list(&r.group, &r.plural, Some(namespace)).0.len()).sum()
    }

    /// Garbage collection and the cascades of namespaces and CRDs. Dependent pods are
    /// deleted gracefully, as the garbage collector's DELETE of them is: they terminate.
    pub(super) fn on_deleted(&self, r: &Resource, object: &Value, propagation: &str) {
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut work = vec![uid];
        let now = Timestamp::now();
        while let Some(owner) = work.pop() {
            for key in self.store.dependents(&owner) {
                let Some(item) = self.store.get(&key) else { continue };
                if propagation == "Orphan" {
                    let mut orphan = (*item).clone();
                    if let Some(refs) = orphan.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                        refs.retain(|o| o["uid"] != owner.as_str());
                    }
                    let _ = self.store.update(key, orphan, None);
                    continue;
                }
                if key.is_in("", "pods", None) {
                    let grace = pod_grace_period(&item, None);
                    match graceful(&item, grace, now) {
                        Graceful::Pending => continue,
                        Graceful::Mark { deletion_timestamp, grace } => {
                            let mut marked = (*item).clone();
                            let m = meta(&mut marked);
                            m.insert("deletionTimestamp".into(), json!(deletion_timestamp));
                            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                            let _ = self.store.update(key, marked, None);
                            continue;
                        }
                        Graceful::Now => {}
                    }
                }
                if self.store.delete(&key).is_ok() {
                    work.push(item.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned());
                }
            }
        }
        match (r.group.as_str(), r.kind.as_str()) {
            ("", "Namespace") => {
                // The namespace controller emptied it; whatever raced in after goes too.
                let ns = name_of(object);
                for resource in self.resources.snapshot().into_iter().filter(|r| r.namespaced) {
                    let (items, _) = self.store.list(&resource.group, &resource.plural, Some(ns));
                    for item in items {
                        let _ =
                            self.store.delete(&ObjectKey::new(&resource.group, &resource.plural, ns, name_of(&item)));
                    }
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let group = object.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
                let plural = object.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
                let (items, _) = self.store.list(group, plural, None);
                for item in items {
                    let ns = item.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
                    let _ = self.store.delete(&ObjectKey::new(group, plural, ns, name_of(&item)));
                }
                self.resources.remove_crd(group, plural);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, phase: &str, grace: Option<i64>) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"nodeName": node}, "status": {"phase": phase}});
        if let Some(g) = grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        p
    }

    #[test]
    fn grace_periods_of_pods() {
        assert_eq!(pod_grace_period(&pod("sim-node", "Running", None), None), 30);
        assert_eq!(pod_grace_period(&pod("sim-node", "Running", Some(5)), None), 5);
        assert_eq!(pod_grace_period(&pod("sim-node", "Running", Some(5)), Some(0)), 0, "--grace-period=0 --force");
        assert_eq!(pod_grace_period(&pod("sim-node", "Running", None), Some(-1)), 1);
        assert_eq!(pod_grace_period(&pod("", "Pending", None), None), 0, "never scheduled");
        assert_eq!(pod_grace_period(&pod("sim-node", "Succeeded", None), None), 0, "finished");
    }

    #[test]
    fn only_a_shorter_grace_replaces_the_pending_one() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let fresh = pod("sim-node", "Running", None);
        assert_eq!(
            graceful(&fresh, 30, now),
            Graceful::Mark { deletion_timestamp: "2026-01-01T00:00:30Z".into(), grace: 30 }
        );
        assert_eq!(graceful(&fresh, 0, now), Graceful::Now);
        let mut marked = fresh.clone();
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert_eq!(graceful(&marked, 30, now), Graceful::Pending);
        assert_eq!(graceful(&marked, 60, now), Graceful::Pending);
        assert_eq!(
            graceful(&marked, 10, now),
            Graceful::Mark { deletion_timestamp: "2026-01-01T00:00:10Z".into(), grace: 10 }
        );
        assert_eq!(graceful(&marked, 0, now), Graceful::Now, "the kubelet's final delete");
    }

    #[test]
    fn updates_delete_only_what_finalizers_alone_held() {
        let released = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0, "finalizers": []}});
        assert!(deleted_by_update(&released));
        let mut held = released.clone();
        held["metadata"]["finalizers"] = json!(["x"]);
        assert!(!deleted_by_update(&held));
        let mut stopping = released.clone();
        stopping["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert!(!deleted_by_update(&stopping), "a pod in its grace period");
        let namespace = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(!deleted_by_update(&namespace), "the namespace controller removes it");
        assert!(!deleted_by_update(&json!({"metadata": {}})));
    }

    #[test]
    fn nothing_new_in_a_terminating_namespace() {
        let pods = crate::resources::Resources::default().by_kind("", "Pod").unwrap();
        let active = json!({"metadata": {"name": "test"}, "status": {"phase": "Active"}});
        let going = json!({"metadata": {"name": "test", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        let object = json!({"metadata": {"generateName": "web-abc-"}});
        assert!(creatable_in(&pods, Some(&active), &object).is_ok());
        let refused = creatable_in(&pods, Some(&going), &object).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "pods \"web-abc-\" is forbidden: unable to create new content in namespace test because it is being terminated"
        );
    }
}
