//! Which Canaries read which objects by name: their target Deployment, their route and
//! their Service. A Canary's owned objects find it by owner reference; these do not
//! (the user's objects, or a Deployment no longer opted in), so a change to one of them
//! is mapped back through this index, which every reconcile refreshes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use super::cached::Meta;
use crate::api::canary::v1beta1::Canary;

/// The kinds a Canary names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Named {
    Deployment,
    Service,
    Route,
}

/// A named object: its kind, namespace and name.
type Key = (Named, String, String);

#[derive(Debug, Default)]
pub struct Index {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Object -> the Canaries (names, in its namespace) that name it.
    readers: HashMap<Key, BTreeSet<String>>,
    /// Canary (`namespace/name`) -> what it named at its last reconcile.
    named: HashMap<(String, String), Vec<Key>>,
}

impl Index {
    /// What the Canary `name` in `namespace` names now, replacing what it named before.
    pub fn set(&self, namespace: &str, name: &str, objects: &[(Named, &str)]) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let canary = (namespace.to_owned(), name.to_owned());
        let keys: Vec<Key> = objects
            .iter()
            .filter(|(_, n)| !n.is_empty())
            .map(|(k, n)| (*k, namespace.to_owned(), (*n).to_owned()))
            .collect();
        if inner.named.get(&canary) == Some(&keys) {
            return;
        }
        Self::drop_reader(&mut inner, &canary);
        for key in &keys {
            inner.readers.entry(key.clone()).or_default().insert(name.to_owned());
        }
        inner.named.insert(canary, keys);
    }

    /// The Canary is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::drop_reader(&mut inner, &(namespace.to_owned(), name.to_owned()));
    }

    fn drop_reader(inner: &mut Inner, canary: &(String, String)) {
        for key in inner.named.remove(canary).unwrap_or_default() {
            if let Some(names) = inner.readers.get_mut(&key) {
                names.remove(&canary.1);
                if names.is_empty() {
                    inner.readers.remove(&key);
                }
            }
        }
    }

    /// The Canaries that name this object.
    pub fn readers(&self, kind: Named, namespace: Option<&str>, name: &str) -> Vec<ObjectRef<Meta<Canary>>> {
        let Some(ns) = namespace else { return Vec::new() };
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (kind, ns.to_owned(), name.to_owned());
        inner.readers.get(&key).into_iter().flatten().map(|c| ObjectRef::new(c).within(ns)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(refs: Vec<ObjectRef<Meta<Canary>>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn a_change_finds_the_canaries_that_name_it_until_they_stop() {
        let index = Index::default();
        index.set(
            "test",
            "web",
            &[(Named::Deployment, "podinfo"), (Named::Service, "podinfo"), (Named::Route, "shop")],
        );
        index.set("test", "other", &[(Named::Deployment, "podinfo")]);
        assert_eq!(names(index.readers(Named::Deployment, Some("test"), "podinfo")), ["other", "web"]);
        assert_eq!(names(index.readers(Named::Route, Some("test"), "shop")), ["web"]);
        assert!(index.readers(Named::Route, Some("prod"), "shop").is_empty(), "namespaced");
        assert!(index.readers(Named::Service, Some("test"), "shop").is_empty(), "by kind");
        // `web` now names another route; then it is deleted.
        index.set("test", "web", &[(Named::Deployment, "podinfo"), (Named::Route, "shop-v2")]);
        assert!(index.readers(Named::Route, Some("test"), "shop").is_empty());
        index.forget("test", "web");
        assert_eq!(names(index.readers(Named::Deployment, Some("test"), "podinfo")), ["other"]);
        assert!(index.readers(Named::Route, Some("test"), "shop-v2").is_empty());
    }
}
