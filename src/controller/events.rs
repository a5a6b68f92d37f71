//! Kubernetes Events on the Canary, in Flagger's shape: reason `Synced`, the message
//! saying what happened. A repeat of the same message is counted on the Event it
//! repeats (`x3 over 2m` in `kubectl describe`), as client-go's correlator does.
//!
//! kube-runtime's `Recorder` keys its series by reason and action, not by note, so it
//! would fold "Advance ... weight 20" into "Advance ... weight 10": every distinct
//! message here gets its own Event.
//!
//! Events are reports, best effort in Kubernetes (dropped, rate-limited, expired after
//! an hour): a reconcile never waits on one. [`Reporter::report`] queues it; one task
//! records them in order ([`Events::run`]), each bounded by [`PUBLISH_TIMEOUT`] (the
//! client retries a 429 for a long while), and only while the term of leadership it was
//! decided under lasts.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSeries, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::sync::Mutex;

/// The reason of every release Event, as in Flagger.
pub const REASON: &str = "Synced";
/// A repeat older than this starts a new Event.
const SERIES_WINDOW: Duration = Duration::from_secs(600);
/// How long recording one Event may take before it is given up.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting to be recorded; past that, new ones are dropped (and logged).
const QUEUE: usize = 4096;

/// One Event to record, and the term it was decided under.
struct Report {
    object: ObjectReference,
    warning: bool,
    message: String,
    fence: crate::lease::Fence,
}

/// Queues Events for [`Events::run`]: cheap to call, never waits.
#[derive(Clone)]
pub struct Reporter {
    tx: tokio::sync::mpsc::Sender<Report>,
}

impl Reporter {
    /// Queues `message` on `object`, to be recorded while `fence` holds.
    pub fn report(&self, object: ObjectReference, warning: bool, message: &str, fence: &crate::lease::Fence) {
        let report = Report { object, warning, message: message.to_owned(), fence: fence.clone() };
        if let Err(e) = self.tx.try_send(report) {
            tracing::warn!(error = %e, msg = message, "event dropped: the queue of events to record is full");
        }
    }
}

/// (object uid, warning, message): what makes two Events the same.
type Key = (String, bool, String);
/// The Event a key was recorded as: its name, count, and when it was last seen.
type Series = (String, i32, Timestamp);

/// The receiving end of the queue of a [`Reporter`].
pub struct Queue(tokio::sync::mpsc::Receiver<Report>);

pub struct Events {
    client: Client,
    component: String,
    instance: String,
    /// (object uid, warning, message) -> (event name, count, last seen).
    seen: Mutex<HashMap<Key, Series>>,
}

impl Events {
    /// The recorder, and the queue that feeds [`Events::run`].
    pub fn new(client: Client, component: &str, instance: &str) -> (Self, Reporter, Queue) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let events =
            Self { client, component: component.to_owned(), instance: instance.to_owned(), seen: Mutex::default() };
        (events, Reporter { tx }, Queue(rx))
    }

    /// Records the queued Events in order until the queue closes; one that cannot be
    /// recorded in time is logged and skipped.
    pub async fn run(self, Queue(mut rx): Queue) {
        while let Some(r) = rx.recv().await {
            if !r.fence.holds() {
                continue;
            }
            match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish(&r.object, r.warning, &r.message)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, msg = r.message.as_str(), "could not record the event"),
                Err(_) => tracing::debug!(msg = r.message.as_str(), "recording the event timed out"),
            }
        }
    }

    /// Records `message` on `object`; a repeat within the window bumps the count.
    /// Events are reports: nothing the controller decides depends on them.
    pub async fn publish(&self, object: &ObjectReference, warning: bool, message: &str) -> Result<(), kube::Error> {
        let ns = object.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Timestamp::now();
        let key = (object.uid.clone().unwrap_or_default(), warning, message.to_owned());
        // The lock is never held across a request: every release's Events would queue
        // behind one another. Two publishes of one key at once cannot happen, since a
        // Canary has one reconcile at a time; at worst they would make two Events.
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.retain(|_, (_, _, last)| now.duration_since(*last).unsigned_abs() < SERIES_WINDOW);
            seen.get(&key).map(|(name, count, _)| (name.clone(), *count + 1))
        };
        if let Some((name, count)) = repeat {
            // `series` says when, to the microsecond, as the events API does: the second
            // of `lastTimestamp` cannot order a repeat among the Events of its second.
            let series = EventSeries { count: Some(count), last_observed_time: Some(MicroTime(now)) };
            let patch = serde_json::json!({"count": count, "lastTimestamp": Time(now), "series": series});
            if api.patch(&name, &self.patch_params(), &Patch::Merge(&patch)).await.is_ok() {
                self.remember(key, (name, count, now));
                return Ok(());
            }
        }
        let name = format!("{}.{:x}", object.name.as_deref().unwrap_or("canary"), now.as_nanosecond());
        let event = self.event(object, &name, warning, message, now);
        let params = PostParams { field_manager: Some(self.component.clone()), ..PostParams::default() };
        api.create(&params, &event).await?;
        self.remember(key, (name, 1, now));
        Ok(())
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams { field_manager: Some(self.component.clone()), ..PatchParams::default() }
    }

    fn remember(&self, key: Key, series: Series) {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, series);
    }

    fn event(&self, object: &ObjectReference, name: &str, warning: bool, message: &str, now: Timestamp) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: object.namespace.clone(),
                ..ObjectMeta::default()
            },
            involved_object: object.clone(),
            reason: Some(REASON.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            action: Some("Reconcile".to_owned()),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

#[cfg(all(test, feature = "testbed"))]
mod tests {
    use super::*;

    /// The Canary's Events as `kubectl describe` lists them: (message, count), oldest first.
    async fn listed(client: &Client) -> Vec<(String, i32)> {
        let api: Api<Event> = Api::namespaced(client.clone(), "test");
        let mut events = api.list(&Default::default()).await.unwrap().items;
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events.into_iter().map(|e| (e.message.unwrap_or_default(), e.count.unwrap_or(0))).collect()
    }

    #[tokio::test]
    async fn each_measurement_is_its_own_event_and_only_a_repeat_is_counted() {
        let sim = sim::Sim::start().await.unwrap();
        sim.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}}))
            .await
            .unwrap();
        let client = sim.client().unwrap();
        let (events, _reporter, _queue) = Events::new(client.clone(), "apisix-canary", "serve-0");
        let canary = ObjectReference {
            api_version: Some("apisix-canary.dev/v1beta1".into()),
            kind: Some("Canary".into()),
            name: Some("podinfo".into()),
            namespace: Some("test".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let halt = |v: &str| format!("Halt podinfo.test advancement success rate {v}% < 99%");
        for v in ["44.44", "28.57", "34.78", "28.57"] {
            events.publish(&canary, true, &halt(v)).await.unwrap();
        }
        assert_eq!(listed(&client).await, [(halt("44.44"), 1), (halt("28.57"), 2), (halt("34.78"), 1)]);
        let api: Api<Event> = Api::namespaced(client.clone(), "test");
        let repeated = api.list(&Default::default()).await.unwrap().items.into_iter().find(|e| e.count == Some(2));
        let series = repeated.and_then(|e| e.series).expect("a repeat says when it last happened");
        assert_eq!(series.count, Some(2));
        assert!(series.last_observed_time.is_some());
    }
}
