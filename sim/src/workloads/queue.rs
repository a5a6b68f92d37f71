//! The controllers' work queues, as kube-controller-manager keeps them: the keys a store
//! event can affect (dirty until the next pass syncs them), keys due again at a time
//! (the kubelet's ready delay, minReadySeconds, progress deadlines, failed writes), and
//! the label indexes that map a pod to its Services and a Service to its pods and slices.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use tokio::time::Instant;

use super::endpointslices::{CONTROLLER, MANAGED_BY, SERVICE_NAME};

/// A namespaced object of a known kind: (namespace, name).
pub type Name = (String, String);

/// The kinds with a sync of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    ReplicaSet,
    Deployment,
    Service,
    /// A namespace being deleted: keyed ("", name).
    Namespace,
    /// A HorizontalPodAutoscaler.
    Autoscaler,
}

/// What the next pass syncs.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Dependents whose controller may be gone (ReplicaSets, Pods, EndpointSlices).
    pub garbage: BTreeSet<crate::store::ObjectKey>,
    pub pods: BTreeSet<Name>,
    pub replica_sets: BTreeSet<Name>,
    pub deployments: BTreeSet<Name>,
    pub services: BTreeSet<Name>,
    pub namespaces: BTreeSet<Name>,
    pub autoscalers: BTreeSet<Name>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.garbage.is_empty()
            && self.pods.is_empty()
            && self.replica_sets.is_empty()
            && self.deployments.is_empty()
            && self.services.is_empty()
            && self.namespaces.is_empty()
            && self.autoscalers.is_empty()
    }

    pub fn insert(&mut self, kind: Kind, name: Name) {
        match kind {
            Kind::Pod => self.pods.insert(name),
            Kind::ReplicaSet => self.replica_sets.insert(name),
            Kind::Deployment => self.deployments.insert(name),
            Kind::Service => self.services.insert(name),
            Kind::Namespace => self.namespaces.insert(name),
            Kind::Autoscaler => self.autoscalers.insert(name),
        };
    }
}

/// Keys due again at a time: the delayed queue. One time per key, the earliest asked.
#[derive(Debug, Default)]
pub struct Timers {
    due: BTreeSet<(Instant, Kind, Name)>,
    at: HashMap<(Kind, Name), Instant>,
}

impl Timers {
    /// Syncs `name` again at `when` (or earlier, if it is already due earlier).
    pub fn after(&mut self, kind: Kind, name: Name, when: Instant) {
        let slot = (kind, name);
        match self.at.get(&slot) {
            Some(&earlier) if earlier <= when => return,
            Some(&later) => {
                self.due.remove(&(later, slot.0, slot.1.clone()));
            }
            None => {}
        }
        self.due.insert((when, slot.0, slot.1.clone()));
        self.at.insert(slot, when);
    }

    /// When the first key is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.first().map(|(when, _, _)| *when)
    }

    /// Moves the keys due by `now` to `dirty`.
    pub fn pop_due(&mut self, now: Instant, dirty: &mut Dirty) {
        while let Some((when, _, _)) = self.due.first() {
            if *when > now {
                break;
            }
            let Some((_, kind, name)) = self.due.pop_first() else { break };
            self.at.remove(&(kind, name.clone()));
            dirty.insert(kind, name);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.due.len()
    }
}

/// Names of one namespace by (namespace, key, value) pairs they carry.
#[derive(Debug, Default)]
pub struct Index {
    by: HashMap<(String, String, String), BTreeSet<String>>,
    of: HashMap<Name, Vec<(String, String)>>,
}

impl Index {
    /// Indexes `name` under `pairs` (none: forgets it).
    pub fn set(&mut self, name: &Name, pairs: Vec<(String, String)>) {
        if self.of.get(name) == Some(&pairs) {
            return;
        }
        for (k, v) in self.of.remove(name).unwrap_or_default() {
            let entry = (name.0.clone(), k, v);
            if let Some(set) = self.by.get_mut(&entry) {
                set.remove(&name.1);
                if set.is_empty() {
                    self.by.remove(&entry);
                }
            }
        }
        if pairs.is_empty() {
            return;
        }
        for (k, v) in &pairs {
            self.by.entry((name.0.clone(), k.clone(), v.clone())).or_default().insert(name.1.clone());
        }
        self.of.insert(name.clone(), pairs);
    }

    /// The names in `namespace` indexed under `key=value`.
    pub fn get(&self, namespace: &str, key: &str, value: &str) -> Vec<String> {
        // The tuple key needs owned strings; lookups are per event, not per object.
        let entry = (namespace.to_owned(), key.to_owned(), value.to_owned());
        self.by.get(&entry).map(|set| set.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn clear(&mut self) {
        self.by.clear();
        self.of.clear();
    }
}

/// The label pairs of an object.
pub fn label_pairs(object: &Value) -> Vec<(String, String)> {
    let labels = object.pointer("/metadata/labels").and_then(Value::as_object);
    labels.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
}

/// The pair a Service is indexed under: the first of its selector (every pod it selects
/// carries it).
pub fn selector_pair(service: &Value) -> Vec<(String, String)> {
    let selector = service.pointer("/spec/selector").and_then(Value::as_object);
    let first = selector.and_then(|s| s.iter().next());
    first.and_then(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).into_iter().collect()
}

/// The Service an EndpointSlice of the EndpointSlice controller belongs to.
pub fn slice_service(slice: &Value) -> Option<&str> {
    let labels = slice.pointer("/metadata/labels")?;
    (labels[MANAGED_BY] == CONTROLLER).then(|| labels[SERVICE_NAME].as_str()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn name(n: &str) -> Name {
        ("default".into(), n.into())
    }

    #[test]
    fn timers_keep_the_earliest_time_per_key() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.after(Kind::Pod, name("a"), now + Duration::from_secs(5));
        t.after(Kind::Pod, name("a"), now + Duration::from_secs(1));
        t.after(Kind::Pod, name("a"), now + Duration::from_secs(9));
        t.after(Kind::Service, name("a"), now + Duration::from_secs(3));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(now + Duration::from_secs(1)));
        let mut dirty = Dirty::default();
        t.pop_due(now + Duration::from_secs(2), &mut dirty);
        assert_eq!(dirty.pods, BTreeSet::from([name("a")]));
        assert!(dirty.services.is_empty());
        assert_eq!(t.next(), Some(now + Duration::from_secs(3)));
    }

    #[test]
    fn indexes_follow_changes() {
        let mut i = Index::default();
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        i.set(&name("p1"), vec![pair("app", "web"), pair("tier", "a")]);
        i.set(&name("p2"), vec![pair("app", "web")]);
        assert_eq!(i.get("default", "app", "web"), ["p1", "p2"]);
        i.set(&name("p1"), vec![pair("app", "db")]);
        assert_eq!(i.get("default", "app", "web"), ["p2"]);
        assert!(i.get("default", "tier", "a").is_empty());
        i.set(&name("p2"), vec![]);
        assert!(i.get("default", "app", "web").is_empty());
        assert_eq!(i.get("default", "app", "db"), ["p1"]);
        assert!(i.get("other", "app", "db").is_empty());
    }
}
