//! The controller's watches, as few and as narrow as the loops allow: one watch of the
//! cluster's Deployments and one of its Canaries, each shared by both loops (kube's
//! shared reflector stores), and label-selected watches of the Services and ApisixRoutes
//! we generate. All ask for metadata only (`PartialObjectMeta`), and what is kept drops
//! the fields no loop reads: a reconcile reads what it decides on from the API.
//!
//! ```text
//!  Deployments (all) ──▶ shared store ──┬─▶ opt-in loop (annotation mode)
//!                                       └─▶ release loop (opted in, owned copies, targets named)
//!  Canaries (all) ────▶ shared store ──┬─▶ release loop
//!                                       └─▶ opt-in loop (a deleted annotation-mode Canary)
//!  Services, ApisixRoutes (managed-by=apisix-canary) ─▶ release loop (owners)
//! ```

use std::future::Future;

use futures_util::StreamExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::backoff::WatchBackoff;
use crate::api::annotations::LAST_APPLIED;
use crate::release::copies::{MANAGED_BY, MANAGED_BY_LABEL};

/// What the caches keep of a `K`: its metadata.
pub type Cached<K> = PartialObjectMeta<K>;

/// Events a shared store holds for a subscriber that lags; the writer waits past that.
const SHARED_BUFFER: usize = 1024;

/// Drops what no loop reads from a cached object: its managed fields (a JSON tree per
/// field manager) and kubectl's last-applied copy, most of an object's metadata and,
/// kept, most of `serve`'s memory at scale (274 MiB at 5,000 opted-in Deployments).
pub fn strip<K>(object: &mut Cached<K>) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = &mut object.metadata.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// Only the objects we generate.
pub fn generated() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
}

/// One shared watch: the store its loops read, their subscriptions, and the watch itself,
/// to drive (it ends only with the process; its errors are retried after [`WatchBackoff`]).
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static, W> {
    pub store: Store<Cached<K>>,
    pub feeds: Vec<Nudged<ReflectHandle<Cached<K>>>>,
    pub watch: W,
}

/// How soon a subscription that answered "nothing yet" is looked at again.
const NUDGE: std::time::Duration = std::time::Duration::from_millis(500);

/// A shared store's subscription, looked at again [`NUDGE`] after it answered "nothing
/// yet". kube-runtime 5's `ReflectHandle` takes an event from its channel and, when the
/// object it names has left the store meanwhile (deleted between the event and the
/// loop's turn, which a loaded process makes likely), answers `Pending` without asking
/// to be woken: the channel holds the next events, but nothing polls it again, and the
/// loop stops hearing of that kind. Seen as a Canary created after another was deleted
/// that no reconcile ever picked up. The nudge bounds that stall to half a second.
pub struct Nudged<S> {
    inner: std::pin::Pin<Box<S>>,
    nudge: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<S> Nudged<S> {
    pub fn new(inner: S) -> Self {
        Self { inner: Box::pin(inner), nudge: Box::pin(tokio::time::sleep(NUDGE)) }
    }
}

impl<S: futures_util::Stream> futures_util::Stream for Nudged<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        use std::future::Future as _;
        let polled = self.inner.as_mut().poll_next(cx);
        if polled.is_pending() && self.nudge.as_mut().poll(cx).is_ready() {
            // The inner stream was just looked at again; the next nudge registers its waker.
            let next = tokio::time::Instant::now() + NUDGE;
            self.nudge.as_mut().reset(next);
            let _ = self.nudge.as_mut().poll(cx);
        }
        polled
    }
}

/// One metadata watch (an `Api` of `PartialObjectMeta` asks for metadata only) of every
/// `K` of `api`, kept in a store that `subscribers` loops share.
pub fn shared<K>(api: Api<Cached<K>>, subscribers: usize) -> Shared<K, impl Future<Output = ()> + Send + use<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared::<Cached<K>>(SHARED_BUFFER);
    let feeds = (0..subscribers).filter_map(|_| writer.subscribe()).map(Nudged::new).collect();
    let kind = K::kind(&()).into_owned();
    let watch = watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(strip)
        .reflect_shared(writer)
        .for_each(move |event| {
            if let Err(e) = event {
                tracing::debug!(kind = %kind, error = %e, "watch error; retrying");
            }
            std::future::ready(())
        });
    Shared { store, feeds, watch }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::ResourceExt;

    use super::*;

    /// kube-runtime 5's `ReflectHandle` after it took the event of an object that left
    /// the store: `Pending` once, with no waker asked for, though the next item is there.
    struct Forgetful {
        dropped: bool,
    }

    impl futures_util::Stream for Forgetful {
        type Item = u8;

        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<u8>> {
            if self.dropped {
                std::task::Poll::Ready(Some(7))
            } else {
                self.dropped = true;
                std::task::Poll::Pending
            }
        }
    }

    /// The first item of `stream`, or `None` if nothing polled it again within `wait` (the
    /// timer is looked at first, so it never polls the stream itself).
    async fn first<S: futures_util::Stream<Item = u8> + Unpin>(mut stream: S) -> Option<u8> {
        use futures_util::StreamExt;
        tokio::select! {
            biased;
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => None,
            item = stream.next() => item,
        }
    }

    #[tokio::test]
    async fn a_subscription_that_forgot_to_ask_for_a_wake_is_looked_at_again() {
        assert_eq!(first(Forgetful { dropped: false }).await, None, "the bare stream is never polled again");
        assert_eq!(first(Nudged::new(Forgetful { dropped: false })).await, Some(7), "looked at again within the nudge");
    }

    /// The Deployment of a real set-image review, as a watch would bring it.
    fn deployment() -> serde_json::Value {
        let review: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/admission/set-image.json")).unwrap();
        let mut object = review["request"]["object"].clone();
        object["metadata"]["annotations"][LAST_APPLIED] = serde_json::json!("{\"apiVersion\":\"apps/v1\"}");
        object
    }

    #[test]
    fn keeps_what_the_loops_read_and_drops_managed_fields_and_the_last_applied_copy() {
        let object = deployment();
        assert!(object["metadata"]["managedFields"].as_array().is_some_and(|f| !f.is_empty()));
        let full: Deployment = serde_json::from_value(object.clone()).unwrap();
        // A metadata-only answer and a whole object read the same.
        let partial = serde_json::json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"],
        });
        let mut meta: Cached<Deployment> = serde_json::from_value(partial).unwrap();
        let whole: Cached<Deployment> = serde_json::from_value(object).unwrap();
        assert_eq!(meta.metadata, whole.metadata);
        strip(&mut meta);
        assert_eq!((meta.name_any(), meta.namespace(), meta.uid()), (full.name_any(), full.namespace(), full.uid()));
        assert_eq!((meta.labels(), meta.owner_references()), (full.labels(), full.owner_references()));
        assert!(meta.metadata.managed_fields.is_none());
        let mut kept = full.annotations().clone();
        kept.remove(LAST_APPLIED);
        assert_eq!(meta.annotations(), &kept);
        assert!(kept.keys().any(|k| k.starts_with(crate::api::annotations::PREFIX)), "the fixture is opted in");
        // Much smaller than the object it stands for.
        let (kept, whole) = (serde_json::to_vec(&meta.metadata).unwrap(), serde_json::to_vec(&full).unwrap());
        assert!(kept.len() * 3 < whole.len(), "{} bytes kept of {}", kept.len(), whole.len());
        // An owner reference to it names the Deployment, so the Canary it owns is found.
        let owner = meta.controller_owner_ref(&()).unwrap();
        assert_eq!((owner.kind.as_str(), owner.api_version.as_str()), ("Deployment", "apps/v1"));
    }
}
