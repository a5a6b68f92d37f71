//! From store events to dirty keys: what each change can affect, as the informers'
//! event handlers of kube-controller-manager enqueue it; and the full resync that marks
//! everything dirty (at start, after missed events or a panic, and slowly, periodically).
//! Indexes are set from the store's current state, never from the event's: replaying a
//! stale event is harmless.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast::error::TryRecvError;

use super::queue::{Kind, Name, label_pairs, selector_pair, slice_service};
use super::{Controllers, controller_of, str_at};
use crate::selector::labels;
use crate::store::{Event, EventType, ObjectKey};

/// Whether a change can matter to a workload controller.
pub(super) fn relevant(key: &ObjectKey) -> bool {
    matches!(
        (key.group.as_str(), key.resource.as_str()),
        ("", "pods" | "services" | "namespaces")
            | ("apps", "deployments" | "replicasets")
            | ("discovery.k8s.io", "endpointslices")
            | ("autoscaling", "horizontalpodautoscalers")
    )
}

/// Whether a change of an autoscaler is more than its status: its spec, or its
/// annotations (where the stand-in utilization is).
fn autoscaler_changed(old: &Value, new: &Value) -> bool {
    old.get("spec") != new.get("spec") || old.pointer("/metadata/annotations") != new.pointer("/metadata/annotations")
}

/// The name of the controller of `object` when it is of `kind`.
fn controller_named<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    let reference = controller_of(object)?;
    (reference["kind"] == kind).then(|| reference["name"].as_str()).flatten()
}

impl Controllers {
    /// Takes every event already received, without waiting; remembers a lag.
    pub(super) fn drain_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(event) => self.absorb(&event),
                Err(TryRecvError::Lagged(_)) => self.lagged = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Marks dirty what one change can affect, and keeps the indexes in step.
    pub(super) fn absorb(&mut self, event: &Event) {
        let key = &event.key;
        if event.type_ == EventType::Deleted && self.terminating.contains(&key.namespace) {
            // Maybe the last of a namespace being deleted.
            self.dirty.namespaces.insert((String::new(), key.namespace.clone()));
        }
        if !relevant(key) {
            return;
        }
        let name: Name = (key.namespace.clone(), key.name.clone());
        let current = self.cluster.store.get(key);
        // Every state the event knows of: relations it had before count as well as new ones.
        let states: Vec<&Value> =
            [Some(&event.object), event.old.as_ref(), current.as_ref()].into_iter().flatten().map(|v| &**v).collect();
        match (key.group.as_str(), key.resource.as_str()) {
            ("", "pods") => {
                self.dirty.garbage.insert(key.clone());
                self.pods_by_label.set(&name, current.as_deref().map(label_pairs).unwrap_or_default());
                for state in &states {
                    if let Some(rs) = controller_named(state, "ReplicaSet") {
                        self.replica_set_changed(&key.namespace, rs);
                    }
                    self.services_selecting(&key.namespace, state);
                }
                if event.type_ == EventType::Deleted {
                    self.kubelet.forget(str_at(&event.object, "/metadata/uid"));
                }
                self.dirty.pods.insert(name);
            }
            ("apps", "replicasets") => {
                self.dirty.garbage.insert(key.clone());
                for state in &states {
                    if let Some(d) = controller_named(state, "Deployment") {
                        self.dirty.deployments.insert((key.namespace.clone(), d.to_owned()));
                    }
                }
                if event.type_ == EventType::Added {
                    self.autoscalers_targeting(&key.namespace, "ReplicaSet", &key.name);
                }
                self.dirty.replica_sets.insert(name);
            }
            ("apps", "deployments") => {
                if event.type_ == EventType::Added {
                    self.autoscalers_targeting(&key.namespace, "Deployment", &key.name);
                }
                self.dirty.deployments.insert(name);
            }
            ("autoscaling", "horizontalpodautoscalers") => match event.type_ {
                EventType::Deleted => _ = self.autoscaler_history.remove(&name),
                // The controller's own status writes wait for the next period.
                _ if event.old.as_deref().is_some_and(|old| !autoscaler_changed(old, &event.object)) => {}
                _ => _ = self.dirty.autoscalers.insert(name),
            },
            ("", "namespaces") => {
                self.dirty.namespaces.insert(name);
            }
            ("", "services") => {
                let pairs = current.as_deref().map(selector_pair).unwrap_or_default();
                self.services_by_selector.set(&name, pairs);
                self.dirty.services.insert(name);
            }
            ("discovery.k8s.io", "endpointslices") => {
                self.dirty.garbage.insert(key.clone());
                let service = current.as_deref().and_then(slice_service);
                let pairs = service.map(|s| vec![(String::new(), s.to_owned())]).unwrap_or_default();
                self.slices_by_service.set(&name, pairs);
                for state in &states {
                    if let Some(service) = slice_service(state) {
                        self.dirty.services.insert((key.namespace.clone(), service.to_owned()));
                    }
                }
            }
            _ => {}
        }
        if event.type_ == EventType::Deleted {
            // Dependents created after their owner was collected.
            let uid = str_at(&event.object, "/metadata/uid");
            self.dirty.garbage.extend(self.cluster.store.dependents(uid));
        }
    }

    /// The autoscalers of `namespace` whose target is the `kind` `name` just created: a
    /// target that comes after its autoscaler is scaled at once, not a period later.
    fn autoscalers_targeting(&mut self, namespace: &str, kind: &str, name: &str) {
        let r = self.kinds.autoscaler.clone();
        let (autoscalers, _) = self.cluster.store.list(&r.group, &r.plural, Some(namespace));
        for hpa in autoscalers {
            if str_at(&hpa, "/spec/scaleTargetRef/kind") == kind && str_at(&hpa, "/spec/scaleTargetRef/name") == name {
                self.dirty.autoscalers.insert((namespace.to_owned(), str_at(&hpa, "/metadata/name").to_owned()));
            }
        }
    }

    /// A ReplicaSet whose pods changed, and its Deployment (which counts those pods).
    fn replica_set_changed(&mut self, namespace: &str, rs: &str) {
        let name = (namespace.to_owned(), rs.to_owned());
        let object = self.cluster.get_raw("apps", "replicasets", namespace, rs);
        if let Some(d) = object.as_deref().and_then(|o| controller_named(o, "Deployment")) {
            self.dirty.deployments.insert((namespace.to_owned(), d.to_owned()));
        }
        self.dirty.replica_sets.insert(name);
    }

    /// The Services whose selector matches the labels of `pod`.
    fn services_selecting(&mut self, namespace: &str, pod: &Value) {
        let have = labels(pod);
        for (k, v) in &have {
            for service in self.services_by_selector.get(namespace, k, v) {
                let Some(object) = self.cluster.get_raw("", "services", namespace, &service) else { continue };
                let selector = object.pointer("/spec/selector").and_then(Value::as_object);
                let selects =
                    selector.into_iter().flatten().all(|(k, v)| have.get(k).map(String::as_str) == v.as_str());
                if selects {
                    self.dirty.services.insert((namespace.to_owned(), service));
                }
            }
        }
    }

    /// Everything dirty. With `reindex`, the indexes are rebuilt from the store first
    /// (events were missed, or a pass panicked).
    pub(super) fn resync_all(&mut self, reindex: bool) {
        let list = |r: &crate::resources::Resource| self.cluster.store.list(&r.group, &r.plural, None).0;
        let (pods, replica_sets, deployments) =
            (list(&self.kinds.pod), list(&self.kinds.replica_set), list(&self.kinds.deployment));
        let (services, slices) = (list(&self.kinds.service), list(&self.kinds.endpoint_slice));
        let autoscalers = list(&self.kinds.autoscaler);
        let name =
            |o: &Arc<Value>| (str_at(o, "/metadata/namespace").to_owned(), str_at(o, "/metadata/name").to_owned());
        if reindex {
            self.pods_by_label.clear();
            self.services_by_selector.clear();
            self.slices_by_service.clear();
            for pod in &pods {
                self.pods_by_label.set(&name(pod), label_pairs(pod));
            }
            for service in &services {
                self.services_by_selector.set(&name(service), selector_pair(service));
            }
            for slice in &slices {
                let pairs = slice_service(slice).map(|s| vec![(String::new(), s.to_owned())]).unwrap_or_default();
                self.slices_by_service.set(&name(slice), pairs);
            }
            self.kubelet.retain(pods.iter().map(|p| str_at(p, "/metadata/uid")));
        }
        let key = |r: &crate::resources::Resource, o: &Arc<Value>| {
            ObjectKey::new(&r.group, &r.plural, str_at(o, "/metadata/namespace"), str_at(o, "/metadata/name"))
        };
        let kinds = self.kinds.clone();
        for (r, objects) in [(&kinds.pod, &pods), (&kinds.replica_set, &replica_sets), (&kinds.endpoint_slice, &slices)]
        {
            self.dirty.garbage.extend(objects.iter().map(|o| key(r, o)));
        }
        let (namespaces, _) = self.cluster.store.list("", "namespaces", None);
        for (kind, objects) in [
            (Kind::Namespace, &namespaces),
            (Kind::Pod, &pods),
            (Kind::ReplicaSet, &replica_sets),
            (Kind::Deployment, &deployments),
            (Kind::Service, &services),
            (Kind::Autoscaler, &autoscalers),
        ] {
            for o in objects {
                self.dirty.insert(kind, name(o));
            }
        }
    }

    /// Deletes ReplicaSets, Pods and EndpointSlices whose controller is gone: a
    /// controller may create one just after its owner was deleted and collected.
    pub(super) async fn collect_garbage(&mut self, keys: impl IntoIterator<Item = ObjectKey>) {
        let kinds = self.kinds.clone();
        for key in keys {
            let (dependent, owner) = match (key.group.as_str(), key.resource.as_str()) {
                ("apps", "replicasets") => (&kinds.replica_set, &kinds.deployment),
                ("", "pods") => (&kinds.pod, &kinds.replica_set),
                ("discovery.k8s.io", "endpointslices") => (&kinds.endpoint_slice, &kinds.service),
                _ => continue,
            };
            let Some(object) = self.cluster.store.get(&key) else { continue };
            let Some(reference) = controller_of(&object) else { continue };
            if reference["kind"] != owner.kind.as_str() || reference["apiVersion"] != owner.api_version("v1") {
                continue;
            }
            let owner_name = reference["name"].as_str().unwrap_or_default();
            let alive = self
                .cluster
                .get_raw(&owner.group, &owner.plural, &key.namespace, owner_name)
                .is_some_and(|o| o.pointer("/metadata/uid") == reference.get("uid"));
            if !alive && let Err(e) = self.delete(dependent, &key.namespace, &key.name).await {
                e.log();
            }
        }
    }
}
