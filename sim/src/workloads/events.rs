//! The Events of the simulated controllers, scheduler and kubelet, recorded as
//! client-go's event recorder does it: core/v1 Events named `<object>.<hex nanoseconds>`,
//! a repeat of the same event (same source, object, type, reason and message) counted
//! on the first one (`count`, `lastTimestamp`), and a spam filter per source and object
//! (a burst of 25, then one per 5 minutes) that drops the rest, as kube-controller-manager
//! drops them.
//!
//! ```text
//!  controllers' pass ──try_send──▶ bounded queue (full: dropped, as the broadcaster's)
//!                                       │
//!                                       ▼
//!                    writer task: correlate ─▶ create, or count on the first ─▶ store
//!                                       └─▶ expire: past the cap, or 1 h after the last write
//! ```
//!
//! The pass never waits on an Event write. The sim's own Events are capped and expire
//! after an hour, as kube-apiserver's event TTL does; writes refused (a namespace being
//! deleted) are dropped. The writer is in `event_writer.rs`.

use std::collections::{HashMap, VecDeque};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::pods::NODE_NAME;
use super::str_at;

pub use super::event_writer::spawn;

/// Who reports an event: `source` of core/v1, `reporting{Component,Instance}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub component: &'static str,
    pub host: &'static str,
}

pub const DEPLOYMENT_CONTROLLER: Source = Source { component: "deployment-controller", host: "" };
pub const REPLICASET_CONTROLLER: Source = Source { component: "replicaset-controller", host: "" };
pub const AUTOSCALER: Source = Source { component: "horizontal-pod-autoscaler", host: "" };
pub const KUBELET: Source = Source { component: "kubelet", host: NODE_NAME };
/// kube-scheduler writes through `events.k8s.io/v1` (see [`Record::action`]).
pub const SCHEDULER: Source = Source { component: "default-scheduler", host: "" };

/// The queue between the passes and the writer (client-go's broadcaster keeps 1000).
pub(super) const QUEUE: usize = 1000;
/// `defaultSpamBurst` and `defaultSpamQPS` of client-go's correlator.
const SPAM_BURST: f64 = 25.0;
const SPAM_QPS: f64 = 1.0 / 300.0;
/// Keys remembered for counting repeats and for the spam filter (client-go's LRU size).
const CACHE: usize = 4096;

/// One event to record about `involved` (an `ObjectReference`, see [`reference`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub source: Source,
    pub involved: Value,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// The `events.k8s.io` action, for a recorder of that API (the scheduler's): its
    /// Events have an `eventTime`, no `source` and no counts; the reporting instance is
    /// `<controller>-<host>`.
    pub action: Option<&'static str>,
}

impl Record {
    pub fn normal(source: Source, involved: Value, reason: &'static str, message: String) -> Self {
        Self { source, involved, warning: false, reason, message, action: None }
    }

    pub fn warning(source: Source, involved: Value, reason: &'static str, message: String) -> Self {
        Self { warning: true, ..Self::normal(source, involved, reason, message) }
    }

    pub(super) fn type_(&self) -> &'static str {
        if self.warning { "Warning" } else { "Normal" }
    }

    /// The spam filter's key: source and object (`getSpamKey`).
    fn spam_key(&self) -> String {
        let o = &self.involved;
        [self.source.component, self.source.host, str_at(o, "/kind"), str_at(o, "/namespace"), str_at(o, "/name")]
            .into_iter()
            .chain([str_at(o, "/uid"), str_at(o, "/apiVersion")])
            .collect::<Vec<_>>()
            .join("\u{0}")
    }

    /// The key of identical events (`getEventKey`): also the container, type, reason, message.
    fn event_key(&self) -> String {
        [self.spam_key().as_str(), str_at(&self.involved, "/fieldPath"), self.type_(), self.reason, &self.message]
            .join("\u{0}")
    }
}

/// An `ObjectReference` to `object`; `field_path` names a container of a pod.
pub fn reference(object: &Value, field_path: Option<String>) -> Value {
    let mut r = json!({
        "kind": object.get("kind"), "namespace": object.pointer("/metadata/namespace"),
        "name": object.pointer("/metadata/name"), "uid": object.pointer("/metadata/uid"),
        "apiVersion": object.get("apiVersion"), "resourceVersion": object.pointer("/metadata/resourceVersion"),
    });
    if let Some(path) = field_path {
        r["fieldPath"] = json!(path);
    }
    r
}

/// The `ScalingReplicaSet` message of the Deployment controller; none when the size stays.
pub fn scaling_message(replica_set: &str, from: i32, to: i32) -> Option<String> {
    let direction = match to.cmp(&from) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => return None,
    };
    Some(format!("Scaled {direction} replica set {replica_set} from {from} to {to}"))
}

impl super::Controllers {
    /// The Deployment controller's `ScalingReplicaSet` about `d`, if the size changed.
    pub(super) fn record_scaling(&self, d: &Value, replica_set: &str, from: i32, to: i32) {
        if let Some(message) = scaling_message(replica_set, from, to) {
            let event = Record::normal(DEPLOYMENT_CONTROLLER, reference(d, None), "ScalingReplicaSet", message);
            self.recorder.record(event);
        }
    }
}

/// Sends events to the writer without ever waiting.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub(super) tx: mpsc::Sender<Record>,
}

impl Recorder {
    pub fn record(&self, record: Record) {
        if let Err(e) = self.tx.try_send(record) {
            tracing::debug!(error = %e, "sim events: queue full or closed; event dropped");
        }
    }
}

/// A token bucket of the spam filter.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What was written for an event key: the Event's name and count so far.
#[derive(Debug, Clone)]
struct Seen {
    namespace: String,
    name: String,
    count: i64,
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A new Event, for the event key `key`.
    Create { key: String, event: Value },
    /// A repeat: the Event `namespace/name` counts it (`count`, `lastTimestamp`).
    Count { key: String, namespace: String, name: String, count: i64, last: String },
    /// Over the spam filter's budget.
    Drop,
}

/// client-go's `EventCorrelator`: repeats counted, spam dropped; bounded memory.
#[derive(Debug, Default)]
pub struct Correlator {
    seen: HashMap<String, Seen>,
    seen_order: VecDeque<String>,
    buckets: HashMap<String, Bucket>,
    bucket_order: VecDeque<String>,
    last_nanos: i128,
}

/// Inserts into a map bounded to [`CACHE`] keys, the oldest forgotten first.
fn bounded_insert<V>(map: &mut HashMap<String, V>, order: &mut VecDeque<String>, key: String, value: V) {
    if map.insert(key.clone(), value).is_none() {
        order.push_back(key);
        while order.len() > CACHE {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

impl Correlator {
    /// The write for `record` at `now` (wall clock) and `tick` (monotonic, for the filter).
    pub fn correlate(&mut self, record: &Record, now: Timestamp, tick: Instant) -> Write {
        let spam = record.spam_key();
        let mut bucket = self.buckets.get(&spam).copied().unwrap_or(Bucket { tokens: SPAM_BURST, at: tick });
        bucket.tokens = (bucket.tokens + tick.duration_since(bucket.at).as_secs_f64() * SPAM_QPS).min(SPAM_BURST);
        bucket.at = tick;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        bounded_insert(&mut self.buckets, &mut self.bucket_order, spam, bucket);
        if !allowed {
            return Write::Drop;
        }
        let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let key = record.event_key();
        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count += 1;
            let (namespace, name, count) = (seen.namespace.clone(), seen.name.clone(), seen.count);
            return Write::Count { key, namespace, name, count, last: stamp };
        }
        let nanos = now.as_nanosecond().max(self.last_nanos + 1);
        self.last_nanos = nanos;
        let involved = &record.involved;
        let namespace = match str_at(involved, "/namespace") {
            "" => "default".to_owned(),
            ns => ns.to_owned(),
        };
        let name = format!("{}.{:x}", str_at(involved, "/name"), nanos);
        let mut event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved, "reason": record.reason, "message": record.message, "type": record.type_(),
        });
        match record.action {
            Some(action) => {
                event["eventTime"] = json!(now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
                event["action"] = json!(action);
                event["reportingComponent"] = json!(record.source.component);
                event["reportingInstance"] = json!(format!("{}-{NODE_NAME}", record.source.component));
            }
            None => {
                let mut source = json!({"component": record.source.component});
                if !record.source.host.is_empty() {
                    source["host"] = json!(record.source.host);
                }
                event["source"] = source;
                event["firstTimestamp"] = json!(stamp);
                event["lastTimestamp"] = json!(stamp);
                event["count"] = json!(1);
                event["reportingComponent"] = json!(record.source.component);
                event["reportingInstance"] = json!(record.source.host);
            }
        }
        let seen = Seen { namespace, name, count: 1 };
        bounded_insert(&mut self.seen, &mut self.seen_order, key.clone(), seen);
        Write::Create { key, event }
    }

    /// The Event `name` written for `key` is gone (expired, refused): a repeat creates
    /// a new one.
    pub fn forget(&mut self, key: &str, name: &str) {
        if self.seen.get(key).is_some_and(|s| s.name == name) {
            self.seen.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pod_ref() -> Value {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "test", "uid": "u1", "resourceVersion": "7"}});
        reference(&pod, Some("spec.containers{app}".into()))
    }

    #[test]
    fn scaling_messages() {
        assert_eq!(scaling_message("web-abc", 0, 2).unwrap(), "Scaled up replica set web-abc from 0 to 2");
        assert_eq!(scaling_message("web-abc", 2, 1).unwrap(), "Scaled down replica set web-abc from 2 to 1");
        assert_eq!(scaling_message("web-abc", 2, 2), None);
    }

    #[test]
    fn events_are_named_and_sourced_as_clients_record_them() {
        let mut c = Correlator::default();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let record = Record::normal(KUBELET, pod_ref(), "Started", "Started container app".into());
        let Write::Create { event: e, .. } = c.correlate(&record, now, Instant::now()) else { panic!("not created") };
        assert_eq!(e["metadata"]["namespace"], "test");
        assert_eq!(str_at(&e, "/metadata/name"), format!("web-1.{:x}", now.as_nanosecond()));
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{app}");
        assert_eq!(e["source"], json!({"component": "kubelet", "host": "sim-node"}));
        assert_eq!((e["count"].as_i64(), &e["lastTimestamp"]), (Some(1), &json!("2026-01-01T00:00:00Z")));
        assert_eq!((&e["reportingComponent"], &e["reportingInstance"]), (&json!("kubelet"), &json!("sim-node")));
        // Two events in the same nanosecond still get two names.
        let other = Record::normal(KUBELET, pod_ref(), "Killing", "Stopping container app".into());
        let Write::Create { event: e2, .. } = c.correlate(&other, now, Instant::now()) else { panic!("not created") };
        assert_ne!(e2["metadata"]["name"], e["metadata"]["name"]);

        let mut scheduled = Record::normal(SCHEDULER, pod_ref(), "Scheduled", "Successfully assigned".into());
        scheduled.action = Some("Binding");
        let Write::Create { event: s, .. } = c.correlate(&scheduled, now, Instant::now()) else {
            panic!("not created")
        };
        assert_eq!(s["eventTime"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(s["reportingInstance"], "default-scheduler-sim-node");
        assert!(s.get("source").is_none() && s.get("count").is_none());
    }

    #[test]
    fn repeats_are_counted_and_spam_dropped() {
        let mut c = Correlator::default();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let start = Instant::now();
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-abc", "namespace": "test"}});
        let record =
            |m: &str| Record::normal(REPLICASET_CONTROLLER, reference(&rs, None), "SuccessfulCreate", m.into());
        let Write::Create { key, event: first } = c.correlate(&record("Created pod: a"), now, start) else { panic!() };
        let name = str_at(&first, "/metadata/name").to_owned();
        let later: Timestamp = "2026-01-01T00:00:09Z".parse().unwrap();
        let count = |count| Write::Count {
            key: key.clone(),
            namespace: "test".into(),
            name: name.clone(),
            count,
            last: "2026-01-01T00:00:09Z".into(),
        };
        assert_eq!(c.correlate(&record("Created pod: a"), later, start), count(2));
        assert_eq!(c.correlate(&record("Created pod: a"), later, start), count(3));
        // Gone (expired): the next repeat is a new Event.
        c.forget(&key, &name);
        assert!(matches!(c.correlate(&record("Created pod: a"), later, start), Write::Create { .. }));
        // 25 events per source and object, then one per 5 minutes.
        let allowed =
            (0..40).filter(|i| c.correlate(&record(&format!("Created pod: p{i}")), now, start) != Write::Drop);
        assert_eq!(allowed.count(), 21);
        assert_eq!(c.correlate(&record("Created pod: x"), now, start + Duration::from_secs(299)), Write::Drop);
        assert_ne!(c.correlate(&record("Created pod: y"), now, start + Duration::from_secs(301)), Write::Drop);
        // Another object has its own budget.
        let other = json!({"kind": "ReplicaSet", "metadata": {"name": "other", "namespace": "test"}});
        let fresh = Record::normal(REPLICASET_CONTROLLER, reference(&other, None), "SuccessfulCreate", "x".into());
        assert!(matches!(c.correlate(&fresh, now, start), Write::Create { .. }));
    }
}
