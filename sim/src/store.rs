//! The simulated cluster's etcd: objects as JSON by key, one global resourceVersion,
//! a bounded event history for watches and a broadcast of every change.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for watches that resume from an older resourceVersion.
const HISTORY: usize = 20_000;

/// Where an object lives: its API group, resource (plural), namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub resource: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self { group: group.into(), resource: resource.into(), namespace: namespace.into(), name: name.into() }
    }

    /// Whether this key is of `group/resource`, in `namespace` when one is given.
    pub fn is_in(&self, group: &str, resource: &str, namespace: Option<&str>) -> bool {
        self.group == group && self.resource == resource && namespace.is_none_or(|ns| self.namespace == ns)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub type_: EventType,
    pub key: ObjectKey,
    pub object: Arc<Value>,
    /// The state before a MODIFIED, so filtered watches see objects enter and leave.
    pub old: Option<Arc<Value>>,
}

/// The events a watch missed, and the receiver of the ones to come.
pub type Resumption = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("the object has been modified; please apply your changes to the latest version and try again")]
    Conflict,
    /// The requested resourceVersion is older than the history kept.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
}

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    /// Owner uid -> the objects whose ownerReferences name it (garbage collection).
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
    history: VecDeque<Arc<Event>>,
    /// Events older than this were dropped from `history`.
    compacted: u64,
    /// (group, resource) -> the rv of its last change, for caches of one kind.
    changed: HashMap<(String, String), u64>,
}

#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        Self { inner: Mutex::new(Inner::default()), events: broadcast::channel(4096).0 }
    }
}

fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

fn owners(object: &Value) -> impl Iterator<Item = &str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o["uid"].as_str())
}

impl Inner {
    fn index(&mut self, key: &ObjectKey, old: Option<&Value>, new: Option<&Value>) {
        for uid in old.into_iter().flat_map(owners) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in new.into_iter().flat_map(owners) {
            self.dependents.entry(uid.to_owned()).or_default().insert(key.clone());
        }
    }
}

/// The resourceVersion written in an object, if it is one of ours.
pub fn rv_of(object: &Value) -> Option<u64> {
    object.pointer("/metadata/resourceVersion")?.as_str()?.parse().ok()
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data: every write is one insert.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// The rv of the last change to any object of `group/resource` (0: none yet). A cache
    /// of one resource stays valid while this stays the same.
    pub fn resource_rv(&self, group: &str, resource: &str) -> u64 {
        let inner = self.lock();
        inner.changed.get(&(group.to_owned(), resource.to_owned())).copied().unwrap_or(0)
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// Every object of a resource (in one namespace or all), and the rv they are at.
    pub fn list(&self, group: &str, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        // Keys sort by group, resource, namespace then name: the ones asked for are one range.
        let from = ObjectKey::new(group, resource, namespace.unwrap_or_default(), "");
        let items = inner
            .objects
            .range(from..)
            .take_while(|(k, _)| k.is_in(group, resource, namespace))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Stores a new object, stamping its resourceVersion.
    pub fn create(&self, key: ObjectKey, mut object: Value) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut object, rv);
        let object = Arc::new(object);
        inner.objects.insert(key.clone(), object.clone());
        inner.index(&key, None, Some(&object));
        self.record(&mut inner, EventType::Added, key, object.clone(), None);
        Ok(object)
    }

    /// Replaces an object. With `expected`, fails with Conflict unless the stored
    /// resourceVersion is that one (optimistic concurrency).
    pub fn update(&self, key: ObjectKey, mut object: Value, expected: Option<u64>) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let current = inner.objects.get(&key).ok_or(StoreError::NotFound)?;
        if expected.is_some_and(|rv| Some(rv) != rv_of(current)) {
            return Err(StoreError::Conflict);
        }
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut object, rv);
        let object = Arc::new(object);
        let old = inner.objects.insert(key.clone(), object.clone());
        inner.index(&key, old.as_deref(), Some(&object));
        self.record(&mut inner, EventType::Modified, key, object.clone(), old);
        Ok(object)
    }

    /// Removes an object; the DELETED event carries its last state at a new rv.
    pub fn delete(&self, key: &ObjectKey) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let removed = inner.objects.remove(key).ok_or(StoreError::NotFound)?;
        inner.index(key, Some(&removed), None);
        inner.rv += 1;
        let rv = inner.rv;
        let mut last = (*removed).clone();
        set_rv(&mut last, rv);
        let last = Arc::new(last);
        self.record(&mut inner, EventType::Deleted, key.clone(), last.clone(), None);
        Ok(last)
    }

    fn record(&self, inner: &mut Inner, type_: EventType, key: ObjectKey, object: Arc<Value>, old: Option<Arc<Value>>) {
        let rv = inner.rv;
        inner.changed.insert((key.group.clone(), key.resource.clone()), rv);
        let event = Arc::new(Event { rv: inner.rv, type_, key, object, old });
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// The objects that name `owner_uid` in their ownerReferences.
    pub fn dependents(&self, owner_uid: &str) -> Vec<ObjectKey> {
        self.lock().dependents.get(owner_uid).map(|set| set.iter().cloned().collect()).unwrap_or_default()
    }

    /// Receives every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The events after `rv` still in history, and a receiver for those after them,
    /// taken under one lock so nothing falls in between.
    pub fn watch_from(&self, rv: u64) -> Result<Resumption, StoreError> {
        let inner = self.lock();
        if rv < inner.compacted {
            return Err(StoreError::Gone { requested: rv, oldest: inner.compacted });
        }
        let past = inner.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((past, self.events.subscribe()))
    }

    /// Forgets the history up to now: watches from an older rv get 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("apps", "deployments", "test", name)
    }

    #[test]
    fn versions_conflicts_and_history() {
        let store = Store::default();
        let a = store.create(key("a"), json!({"metadata": {"name": "a"}})).unwrap();
        assert_eq!(rv_of(&a), Some(1));
        assert_eq!(store.create(key("a"), json!({"metadata": {}})), Err(StoreError::AlreadyExists));
        let a2 = store.update(key("a"), json!({"metadata": {"name": "a"}, "x": 1}), Some(1)).unwrap();
        assert_eq!(rv_of(&a2), Some(2));
        assert_eq!(store.update(key("a"), json!({"metadata": {}}), Some(1)), Err(StoreError::Conflict));
        let (past, _rx) = store.watch_from(1).unwrap();
        assert_eq!(past.iter().map(|e| (e.rv, e.type_)).collect::<Vec<_>>(), [(2, EventType::Modified)]);
        let gone = store.delete(&key("a")).unwrap();
        assert_eq!(rv_of(&gone), Some(3));
        store.compact();
        assert_eq!(store.watch_from(2).unwrap_err(), StoreError::Gone { requested: 2, oldest: 3 });
        assert!(store.watch_from(3).unwrap().0.is_empty());
    }

    #[test]
    fn each_resource_knows_its_last_change() {
        let store = Store::default();
        assert_eq!(store.resource_rv("apps", "deployments"), 0);
        store.create(key("a"), json!({"metadata": {"name": "a"}})).unwrap();
        store.create(ObjectKey::new("", "pods", "test", "p"), json!({"metadata": {"name": "p"}})).unwrap();
        assert_eq!((store.resource_rv("apps", "deployments"), store.resource_rv("", "pods")), (1, 2));
        store.delete(&key("a")).unwrap();
        assert_eq!((store.resource_rv("apps", "deployments"), store.resource_rv("", "pods")), (3, 2));
    }
}
