//! Which Canaries name which Deployment as their target. A Canary's own copies find it
//! by owner reference; its target does not (a user's object, or one no longer opted in),
//! so a change to it is mapped back through this index, which every reconcile refreshes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use super::Cached;
use crate::api::canary::v1beta1::Canary;

/// A Deployment: its namespace and name.
type Key = (String, String);

#[derive(Debug, Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Deployment -> the Canaries (names, in its namespace) that target it.
    readers: HashMap<Key, BTreeSet<String>>,
    /// Canary (`namespace/name`) -> the Deployment it targeted at its last reconcile.
    named: HashMap<(String, String), String>,
}

impl Index {
    /// The Canary `name` in `namespace` targets `deployment` now.
    pub fn set(&self, namespace: &str, name: &str, deployment: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let canary = (namespace.to_owned(), name.to_owned());
        if inner.named.get(&canary).is_some_and(|d| d == deployment) {
            return;
        }
        Self::drop_reader(&mut inner, &canary);
        inner.readers.entry((namespace.to_owned(), deployment.to_owned())).or_default().insert(name.to_owned());
        inner.named.insert(canary, deployment.to_owned());
    }

    /// The Canary is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::drop_reader(&mut inner, &(namespace.to_owned(), name.to_owned()));
    }

    fn drop_reader(inner: &mut Inner, canary: &(String, String)) {
        let Some(deployment) = inner.named.remove(canary) else { return };
        let key = (canary.0.clone(), deployment);
        if let Some(names) = inner.readers.get_mut(&key) {
            names.remove(&canary.1);
            if names.is_empty() {
                inner.readers.remove(&key);
            }
        }
    }

    /// The Canaries that target this Deployment.
    pub fn readers(&self, namespace: Option<&str>, name: &str) -> Vec<ObjectRef<Cached<Canary>>> {
        let Some(ns) = namespace else { return Vec::new() };
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (ns.to_owned(), name.to_owned());
        inner.readers.get(&key).into_iter().flatten().map(|c| ObjectRef::new(c).within(ns)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(refs: Vec<ObjectRef<Cached<Canary>>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn a_change_finds_the_canaries_that_target_it_until_they_stop() {
        let index = Index::default();
        index.set("test", "web", "podinfo");
        index.set("test", "other", "podinfo");
        assert_eq!(names(index.readers(Some("test"), "podinfo")), ["other", "web"]);
        assert!(index.readers(Some("prod"), "podinfo").is_empty(), "namespaced");
        // `web` now targets another Deployment; then it is deleted.
        index.set("test", "web", "shop");
        assert_eq!(names(index.readers(Some("test"), "podinfo")), ["other"]);
        assert_eq!(names(index.readers(Some("test"), "shop")), ["web"]);
        index.forget("test", "web");
        assert!(index.readers(Some("test"), "shop").is_empty());
    }
}
