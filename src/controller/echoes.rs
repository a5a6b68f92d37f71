//! The watch events our own writes cause, recognized so they cost nothing.
//!
//! A step writes the route and then the Canary status; each write comes back through a
//! watch and triggers one more reconcile of the release, which read the Canary and its
//! five objects again only to decide to wait for the next step: a third of the API
//! requests of a release, and a reconcile slot taken while due steps queue behind it.
//!
//! A reconcile whose writes leave nothing to do before its next step says so here
//! ([`Echoes::settle`]): the Canary's resourceVersion before and after its status write.
//! The next reconcile of that release is skipped ([`Echoes::skip`]) when it can only be
//! that echo: the Canary is at one of those versions, and every change of its other
//! objects seen since the last full reconcile began is one of our own writes. Any other
//! change (a user's edit, the sim's or the kubelet's status of a pod, a due step) runs
//! the reconcile in full.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Per release (`namespace/name`).
#[derive(Debug, Default)]
pub struct Echoes(Mutex<HashMap<String, Release>>);

#[derive(Debug, Default)]
struct Release {
    /// The Canary's resourceVersions before and after the settled reconcile's writes.
    settled: Option<(String, String)>,
    /// Changes of the release's other objects since the last full reconcile began:
    /// uid and resourceVersion.
    seen: Vec<(String, String)>,
    /// Our last write of each of those objects: uid to resourceVersion.
    written: HashMap<String, String>,
}

impl Echoes {
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Release) -> T) -> T {
        let mut releases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(releases.entry(key.to_owned()).or_default())
    }

    /// A watch event of an object of the release (its copies, its route, its Deployment).
    pub fn seen(&self, key: &str, uid: Option<&str>, resource_version: Option<&str>) {
        let change = (uid.unwrap_or_default().to_owned(), resource_version.unwrap_or_default().to_owned());
        self.with(key, |r| {
            // A burst of one object's events needs only its last.
            r.seen.retain(|(uid, _)| *uid != change.0);
            r.seen.push(change);
        });
    }

    /// We wrote one of the release's objects; its watch event will bring this version.
    pub fn wrote(&self, key: &str, uid: Option<&str>, resource_version: Option<&str>) {
        let (Some(uid), Some(rv)) = (uid, resource_version) else { return };
        self.with(key, |r| r.written.insert(uid.to_owned(), rv.to_owned()));
    }

    /// A full reconcile begins: what it reads covers everything seen so far.
    pub fn begin(&self, key: &str) {
        self.with(key, |r| {
            r.settled = None;
            r.seen.clear();
        });
    }

    /// The reconcile's writes left nothing to do before its next step; the Canary was at
    /// `before` when read and at `after` once written.
    pub fn settle(&self, key: &str, before: String, after: String) {
        self.with(key, |r| r.settled = Some((before, after)));
    }

    /// Whether a reconcile of the Canary at `resource_version` can only be the echo of
    /// our own writes since the last settled reconcile.
    pub fn skip(&self, key: &str, resource_version: Option<&str>) -> bool {
        let Some(rv) = resource_version else { return false };
        let releases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(r) = releases.get(key) else { return false };
        let Some((before, after)) = &r.settled else { return false };
        (rv == before || rv == after) && r.seen.iter().all(|(uid, rv)| r.written.get(uid) == Some(rv))
    }

    /// The release is gone.
    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "test/podinfo";

    fn settled() -> Echoes {
        let echoes = Echoes::default();
        echoes.begin(KEY);
        echoes.wrote(KEY, Some("route-uid"), Some("41"));
        echoes.settle(KEY, "40".into(), "42".into());
        echoes
    }

    #[test]
    fn the_echo_of_our_status_and_route_writes_is_skipped() {
        let echoes = settled();
        // The route's event may come first: the cache still holds the Canary as read.
        echoes.seen(KEY, Some("route-uid"), Some("41"));
        assert!(echoes.skip(KEY, Some("40")));
        assert!(echoes.skip(KEY, Some("42")), "and again for the status's own event");
    }

    #[test]
    fn any_other_change_runs_the_reconcile() {
        let echoes = settled();
        assert!(!echoes.skip(KEY, Some("43")), "the Canary changed after our write");
        assert!(!echoes.skip(KEY, None));
        assert!(!echoes.skip("test/other", Some("42")), "nothing settled for that release");

        let echoes = settled();
        echoes.seen(KEY, Some("canary-deployment-uid"), Some("50"));
        assert!(!echoes.skip(KEY, Some("42")), "the canary Deployment's status moved");

        let echoes = settled();
        echoes.seen(KEY, Some("route-uid"), Some("41"));
        echoes.seen(KEY, Some("route-uid"), Some("44"));
        assert!(!echoes.skip(KEY, Some("42")), "someone wrote the route after us");
    }

    #[test]
    fn a_full_reconcile_clears_what_it_read_and_needs_its_own_settling() {
        let echoes = settled();
        echoes.seen(KEY, Some("canary-deployment-uid"), Some("50"));
        echoes.begin(KEY);
        assert!(!echoes.skip(KEY, Some("42")), "not settled by this reconcile yet");
        echoes.settle(KEY, "42".into(), "45".into());
        assert!(echoes.skip(KEY, Some("45")), "the change it read is no reason to read again");
        echoes.forget(KEY);
        assert!(!echoes.skip(KEY, Some("45")));
    }
}
