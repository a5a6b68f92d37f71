//! The watch events our own writes cause, recognized so they cost nothing.
//!
//! A step writes the route and then the Canary status; each write comes back through a
//! watch and triggers one more reconcile of the release, which read the Canary and its
//! five objects again only to decide to wait for the next step: a third of the API
//! requests of a release, and a reconcile slot taken while due steps queue behind it.
//!
//! A reconcile whose writes leave nothing to do before its next step says so here
//! ([`Echoes::settle`]): the Canary's resourceVersion before its writes, and the Canary
//! as its last write returned it. The next reconcile of that release is skipped
//! ([`Echoes::skip`]) when it can only be that echo: the Canary is at one of those
//! versions, and every change of its other objects seen since the last full reconcile
//! began is one of our own writes. Any other change (a user's edit, the sim's or the
//! kubelet's status of a pod) runs the reconcile in full; so does the next step when it
//! falls due, which starts from the Canary as we wrote it ([`Echoes::canary`]) instead of
//! reading it again, as long as nobody else changed it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::api::canary::v1beta1::Canary;

/// Per release (`namespace/name`).
#[derive(Debug, Default)]
pub struct Echoes(Mutex<HashMap<String, Release>>);

#[derive(Debug, Default)]
struct Release {
    /// The Canary's resourceVersion before the settled reconcile's writes, and the Canary
    /// after them.
    settled: Option<(String, Canary)>,
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
    /// `before` when read and is `after` once written.
    pub fn settle(&self, key: &str, before: String, mut after: Canary) {
        // Nothing decides on it, and it is most of a Canary's size.
        after.metadata.managed_fields = None;
        self.with(key, |r| r.settled = Some((before, after)));
    }

    /// The settled reconcile's Canary, if the cache's Canary at `resource_version` is
    /// that one or the one it read (the cache has not caught up with our write yet).
    fn settled<'a>(r: &'a Release, resource_version: Option<&str>) -> Option<&'a Canary> {
        let (before, after) = r.settled.as_ref()?;
        let rv = resource_version?;
        (rv == before || Some(rv) == after.metadata.resource_version.as_deref()).then_some(after)
    }

    /// Whether a reconcile of the Canary at `resource_version` can only be the echo of
    /// our own writes since the last settled reconcile.
    pub fn skip(&self, key: &str, resource_version: Option<&str>) -> bool {
        let releases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(r) = releases.get(key) else { return false };
        Self::settled(r, resource_version).is_some() && r.seen.iter().all(|(uid, rv)| r.written.get(uid) == Some(rv))
    }

    /// The Canary as our settled reconcile wrote it, when the cache's Canary at
    /// `resource_version` says nobody changed it since: what reading it would return.
    pub fn canary(&self, key: &str, resource_version: Option<&str>) -> Option<Canary> {
        let releases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        releases.get(key).and_then(|r| Self::settled(r, resource_version)).cloned()
    }

    /// The release is gone.
    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;

    use super::*;

    const KEY: &str = "test/podinfo";

    fn canary(rv: &str) -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.metadata.namespace = Some("test".into());
        c.metadata.resource_version = Some(rv.into());
        c.metadata.managed_fields = Some(vec![Default::default()]);
        c
    }

    fn settled() -> Echoes {
        let echoes = Echoes::default();
        echoes.begin(KEY);
        echoes.wrote(KEY, Some("route-uid"), Some("41"));
        echoes.settle(KEY, "40".into(), canary("42"));
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
    fn the_next_step_starts_from_the_canary_as_written_unless_someone_changed_it() {
        let echoes = settled();
        // The canary Deployment's pods moved: the step reads its objects, not the Canary.
        echoes.seen(KEY, Some("canary-deployment-uid"), Some("50"));
        for cached in ["40", "42"] {
            let written = echoes.canary(KEY, Some(cached)).unwrap();
            assert_eq!(written.resource_version().as_deref(), Some("42"));
            assert!(written.metadata.managed_fields.is_none());
        }
        assert!(echoes.canary(KEY, Some("43")).is_none(), "a user's edit after ours");
        echoes.begin(KEY);
        assert!(echoes.canary(KEY, Some("42")).is_none(), "a reconcile that did not settle");
    }

    #[test]
    fn a_full_reconcile_clears_what_it_read_and_needs_its_own_settling() {
        let echoes = settled();
        echoes.seen(KEY, Some("canary-deployment-uid"), Some("50"));
        echoes.begin(KEY);
        assert!(!echoes.skip(KEY, Some("42")), "not settled by this reconcile yet");
        echoes.settle(KEY, "42".into(), canary("45"));
        assert!(echoes.skip(KEY, Some("45")), "the change it read is no reason to read again");
        echoes.forget(KEY);
        assert!(!echoes.skip(KEY, Some("45")));
    }
}
