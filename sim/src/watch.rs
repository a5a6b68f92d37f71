//! Watch streams: newline-delimited `WatchEvent`s from a resourceVersion on, bookmarks,
//! `410 Gone` for versions older than the history, and cuts on demand.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::httpd::Body;
use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector, labels};
use super::status::ApiError;
use super::store::{Event, EventType, StoreError};

/// How often an idle watch with bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Options {
    pub resource: std::sync::Arc<Resource>,
    pub version: String,
    pub namespace: Option<String>,
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub resource_version: String,
    pub bookmarks: bool,
    pub timeout: Option<u64>,
    pub send_initial_events: bool,
    /// Each object as a one-row Table (`kubectl get --watch`).
    pub shape: super::table::Shape,
}

impl Options {
    fn matches(&self, object: &Value) -> bool {
        self.label.matches(&labels(object)) && self.field.matches(object)
    }

    /// What this watch sees of an event: nothing, or the event type to send. A MODIFIED
    /// that moves an object into or out of the selection is an ADDED or a DELETED, as
    /// kube-apiserver's watch cache sends it.
    fn sees(&self, event: &Event) -> Option<EventType> {
        let (group, plural) = super::events::storage(&self.resource.group, &self.resource.plural);
        if !event.key.is_in(&group, &plural, self.namespace.as_deref()) {
            return None;
        }
        let now = self.matches(&event.object);
        match event.type_ {
            EventType::Modified => {
                let before = event.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
            other => now.then_some(other),
        }
    }
}

/// The event's object in the shape the client asked for: itself, a one-row Table, or
/// its metadata.
fn shown(o: &Options, object: &Value) -> Value {
    use super::table::{Shape, partial, table};
    match o.shape {
        Shape::Object => object.clone(),
        Shape::Table(include) => {
            let rv = object.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
            table(&o.resource, &o.version, std::slice::from_ref(object), rv, include)
        }
        Shape::Metadata => partial(object),
    }
}

fn line(type_: &str, object: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn bookmark(o: &Options, rv: u64, initial_done: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_done {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": o.resource.kind, "apiVersion": o.resource.api_version(&o.version), "metadata": meta}),
    )
}

/// How long a watch from a future resourceVersion waits for the store to reach it.
const FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts a watch: the response streams until timeout, cut, stop or a lagging client.
pub async fn stream(
    cluster: Arc<Cluster>,
    o: Options,
    cut: CancellationToken,
    stop: CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let requested: Option<u64> = match o.resource_version.as_str() {
        "" | "0" => None,
        rv => Some(rv.parse().map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?),
    };
    // A version from the future: kube-apiserver's watch cache waits up to 3 s for it,
    // then answers 504 "Too large resource version" (clients relist).
    if let Some(rv) = requested {
        let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
        while cluster.store.current_rv() < rv {
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::TooLargeResourceVersion { requested: rv, current: cluster.store.current_rv() });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Without a version (or with sendInitialEvents) the current state comes first as ADDED.
    let (initial, from) = match requested {
        Some(rv) if !o.send_initial_events => (Vec::new(), rv),
        _ => {
            let (group, plural) = super::events::storage(&o.resource.group, &o.resource.plural);
            let (items, rv) = cluster.store.list(&group, &plural, o.namespace.as_deref());
            let items: Vec<Arc<Value>> =
                items.into_iter().filter(|i| o.label.matches(&labels(i)) && o.field.matches(i)).collect();
            (items, rv)
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    match cluster.store.watch_from(from) {
        Err(StoreError::Gone { requested, oldest }) => {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {requested} ({oldest})"), "reason": "Expired", "code": 410});
            let _ = tx.try_send(Ok(Frame::data(line("ERROR", &status))));
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
        Ok((past, live)) => {
            tokio::spawn(pump(cluster, o, initial, from, past, live, tx, cut, stop));
        }
    }
    let body = StreamBody::new(tokio_stream_from(rx)).boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// An mpsc receiver as a `Stream` of frames.
pub(crate) fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    cluster: Arc<Cluster>,
    o: Options,
    initial: Vec<Arc<Value>>,
    mut rv: u64,
    past: Vec<Arc<Event>>,
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    cut: CancellationToken,
    stop: CancellationToken,
) {
    let send = |bytes: Bytes| {
        let tx = tx.clone();
        async move { tx.send(Ok(Frame::data(bytes))).await.is_ok() }
    };
    for item in initial {
        let Ok(object) = cluster.to_version(&o.resource, (*item).clone(), &o.version).await else { return };
        if !send(line("ADDED", &shown(&o, &object))).await {
            return;
        }
    }
    if o.send_initial_events && o.bookmarks && !send(bookmark(&o, rv, true)).await {
        return;
    }
    for event in past {
        if let Some(type_) = o.sees(&event).filter(|_| event.rv > rv) {
            let Ok(object) = cluster.to_version(&o.resource, (*event.object).clone(), &o.version).await else { return };
            if !send(line(type_.as_str(), &shown(&o, &object))).await {
                return;
            }
        }
        rv = rv.max(event.rv);
    }
    let deadline = tokio::time::sleep(Duration::from_secs(o.timeout.unwrap_or(1800)));
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(BOOKMARK_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    if event.rv <= rv {
                        continue;
                    }
                    rv = event.rv;
                    let Some(type_) = o.sees(&event) else { continue };
                    let Ok(object) = cluster.to_version(&o.resource, (*event.object).clone(), &o.version).await else { return };
                    if !send(line(type_.as_str(), &shown(&o, &object))).await {
                        return;
                    }
                }
                // A client too slow for the broadcast: end the stream, it resumes from rv.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticks.tick(), if o.bookmarks => {
                if !send(bookmark(&o, rv, false)).await {
                    return;
                }
            }
            () = tx.closed() => return,
            () = &mut deadline => return,
            () = cut.cancelled() => return,
            () = stop.cancelled() => return,
        }
    }
}
