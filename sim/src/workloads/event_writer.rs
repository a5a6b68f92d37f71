//! The task that writes the recorded Events into the store, off the controllers' passes.
//! Events are stored as the API server stores them (core/v1 in `events`, with a uid,
//! creationTimestamp and resourceVersion; watches see them), but written straight to the
//! store: they need no decoding, defaults or admission, and a cluster of thousands of
//! pods records tens of thousands of them. What the API would refuse is not written: an
//! Event in a namespace that is missing or being deleted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Correlator, QUEUE, Record, Recorder, Write};
use super::str_at;
use crate::cluster::Cluster;
use crate::defaults;
use crate::store::ObjectKey;

/// The sim's own Events kept at most; the oldest go first.
const MAX_EVENTS: usize = 10_000;
/// kube-apiserver's `--event-ttl`: an Event not written for an hour goes.
const TTL: Duration = Duration::from_secs(3600);

/// Starts the writer; it stops when `stop` fires.
pub fn spawn(cluster: Arc<Cluster>, stop: CancellationToken) -> Recorder {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let mut writer = Writer { cluster, correlator: Correlator::default(), written: VecDeque::new() };
    tokio::spawn(async move {
        let mut expiry = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                record = rx.recv() => match record {
                    Some(record) => writer.write(&record),
                    None => return,
                },
                _ = expiry.tick() => writer.expire(),
            }
        }
    });
    Recorder { tx }
}

/// An Event the writer created: when it was last written, where, for which event key.
struct Written {
    at: Instant,
    namespace: String,
    name: String,
    key: String,
}

struct Writer {
    cluster: Arc<Cluster>,
    correlator: Correlator,
    /// The Events written, oldest first.
    written: VecDeque<Written>,
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new("", "events", namespace, name)
}

impl Writer {
    fn write(&mut self, record: &Record) {
        match self.correlator.correlate(record, Timestamp::now(), Instant::now()) {
            Write::Drop => tracing::debug!(reason = record.reason, "sim events: spam filter; event dropped"),
            Write::Create { key, event } => {
                let (namespace, name) =
                    (str_at(&event, "/metadata/namespace").to_owned(), str_at(&event, "/metadata/name").to_owned());
                match self.create(event) {
                    Ok(()) => self.written.push_back(Written { at: Instant::now(), namespace, name, key }),
                    Err(why) => {
                        tracing::debug!(namespace, reason = record.reason, why, "sim events: not recorded");
                        self.correlator.forget(&key, &name);
                    }
                }
                self.expire();
            }
            Write::Count { key, namespace, name, count, last } => {
                if self.count(&namespace, &name, count, &last, &record.message) {
                    // Counted: it lives on from now (written entries are few per key).
                    if let Some(w) = self.written.iter_mut().rev().find(|w| w.key == key && w.name == name) {
                        w.at = Instant::now();
                    }
                } else {
                    // Deleted meanwhile (expired, its namespace gone): a repeat starts anew.
                    self.correlator.forget(&key, &name);
                }
            }
        }
    }

    /// Stores a new Event, unless its namespace is missing or being deleted.
    fn create(&self, mut event: Value) -> Result<(), String> {
        let namespace = str_at(&event, "/metadata/namespace").to_owned();
        match self.cluster.get_raw("", "namespaces", "", &namespace) {
            None => return Err("no such namespace".into()),
            Some(ns) if ns.pointer("/metadata/deletionTimestamp").is_some() => {
                return Err("the namespace is being terminated".into());
            }
            Some(_) => {}
        }
        event["metadata"]["uid"] = json!(defaults::uid());
        event["metadata"]["creationTimestamp"] = json!(defaults::now());
        let name = str_at(&event, "/metadata/name").to_owned();
        self.cluster.store.create(key(&namespace, &name), event).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Counts a repeat on the stored Event (as the recorder's PATCH does); false when it is gone.
    fn count(&self, namespace: &str, name: &str, count: i64, last: &str, message: &str) -> bool {
        let Some(stored) = self.cluster.store.get(&key(namespace, name)) else { return false };
        let mut event = (*stored).clone();
        event["count"] = json!(count);
        event["lastTimestamp"] = json!(last);
        event["message"] = json!(message);
        self.cluster.store.update(key(namespace, name), event, None).is_ok()
    }

    /// Deletes the oldest of the sim's Events past the cap, and those not written for [`TTL`].
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(oldest) = self.written.front() {
            if self.written.len() <= MAX_EVENTS && now.duration_since(oldest.at) < TTL {
                return;
            }
            let Some(w) = self.written.pop_front() else { return };
            self.correlator.forget(&w.key, &w.name);
            // Gone already when its namespace was deleted.
            let _ = self.cluster.store.delete(&key(&w.namespace, &w.name));
        }
    }
}
