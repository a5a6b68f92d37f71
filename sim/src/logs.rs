//! Container output, as the kubelet keeps it for `kubectl logs`: the lines each pod's
//! container wrote, with the time of each, read whole, from the tail, since a time, or
//! followed as they come (`GET .../pods/NAME/log`).
//!
//! What writes them: the products a test runs in-process, through [`Output`] (the lines
//! go to the running pods of a Deployment, as its replicas' output), and the sim's own
//! load tester, whose pods are those of Flagger's load tester image. An in-process
//! product starts before its Deployment's pod does: what it writes until then is held
//! and given to the first pod that starts, as a container's output from its start.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::httpd::Body;
use super::selector::LabelSelector;
use super::status::ApiError;
use super::store::ObjectKey;

/// Lines kept per pod; older ones are dropped, as a kubelet rotates its log files.
const KEPT: usize = 10_000;

/// How often a follower looks whether its pod still exists when nothing is written.
const FOLLOW_CHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Line {
    at: Timestamp,
    text: String,
}

#[derive(Debug, Default)]
struct PodLog {
    lines: VecDeque<Line>,
    /// The index of `lines[0]` among every line the pod wrote.
    first: u64,
}

/// Every pod's output, keyed by namespace and pod name.
#[derive(Debug)]
pub struct PodLogs {
    pods: Mutex<HashMap<(String, String), PodLog>>,
    /// Bumped on every write, to wake followers.
    written: watch::Sender<u64>,
    /// What an [`Output`] wrote while its Deployment had no running pod, keyed by
    /// namespace and Deployment name. Taken under this lock by whoever hands it to a pod
    /// (the kubelet starting one, or the next write finding one), so no line is given
    /// twice or after a later one.
    held: Mutex<HashMap<(String, String), VecDeque<Line>>>,
}

impl Default for PodLogs {
    fn default() -> Self {
        Self { pods: Mutex::default(), written: watch::channel(0).0, held: Mutex::default() }
    }
}

impl PodLogs {
    /// Appends `text` (one or more lines) to the output of pod `namespace/pod`.
    pub fn write(&self, namespace: &str, pod: &str, text: &str) {
        self.append(namespace, pod, lines(text));
    }

    /// Appends lines written earlier (held), with the time each was written.
    fn append(&self, namespace: &str, pod: &str, lines: impl IntoIterator<Item = Line>) {
        {
            let mut pods = self.pods.lock().expect("pod logs lock");
            let log = pods.entry((namespace.to_owned(), pod.to_owned())).or_default();
            log.lines.extend(lines);
            while log.lines.len() > KEPT {
                log.lines.pop_front();
                log.first += 1;
            }
        }
        self.written.send_modify(|n| *n += 1);
    }

    /// The lines of `namespace/pod` from index `from` on, and the index after them.
    fn read(&self, namespace: &str, pod: &str, from: u64) -> (Vec<Line>, u64) {
        let pods = self.pods.lock().expect("pod logs lock");
        let Some(log) = pods.get(&(namespace.to_owned(), pod.to_owned())) else { return (Vec::new(), from) };
        let skip = from.saturating_sub(log.first) as usize;
        let lines: Vec<Line> = log.lines.iter().skip(skip).cloned().collect();
        (lines, log.first + log.lines.len() as u64)
    }
}

/// The lines of `text`, written now.
fn lines(text: &str) -> impl Iterator<Item = Line> + '_ {
    let at = Timestamp::now();
    text.lines().map(move |line| Line { at, text: line.to_owned() })
}

/// `kubectl logs` options: `?follow`, `?tailLines`, `?sinceSeconds`/`?sinceTime`,
/// `?timestamps`, `?limitBytes`, `?container`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Query {
    pub container: Option<String>,
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
    pub previous: bool,
}

impl Query {
    pub fn parse(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let bad = |field: &str, value: &str, why: &str| {
            ApiError::BadRequest(format!("PodLogOptions is invalid: {field}: Invalid value: {value:?}: {why}"))
        };
        let flag = |name: &str| q.get(name).is_some_and(|v| v == "true" || v == "1");
        let number = |name: &str| -> Result<Option<i64>, ApiError> {
            q.get(name).map(|v| v.parse::<i64>().map_err(|_| bad(name, v, "must be an integer"))).transpose()
        };
        let tail = match number("tailLines")? {
            Some(n) if n < 0 => return Err(bad("tailLines", &n.to_string(), "must be greater than or equal to 0")),
            n => n.map(|n| n as usize),
        };
        let since = match (number("sinceSeconds")?, q.get("sinceTime")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "PodLogOptions is invalid: sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
                ));
            }
            (Some(s), None) if s < 1 => return Err(bad("sinceSeconds", &s.to_string(), "must be greater than 0")),
            (Some(s), None) => Some(Timestamp::now() - SignedDuration::from_secs(s)),
            (None, Some(t)) => Some(t.parse::<Timestamp>().map_err(|_| bad("sinceTime", t, "must be RFC 3339"))?),
            (None, None) => None,
        };
        let limit_bytes = match number("limitBytes")? {
            Some(n) if n < 1 => return Err(bad("limitBytes", &n.to_string(), "must be greater than 0")),
            n => n.map(|n| n as usize),
        };
        Ok(Self {
            container: q.get("container").cloned(),
            follow: flag("follow"),
            tail,
            since,
            timestamps: flag("timestamps"),
            limit_bytes,
            previous: flag("previous"),
        })
    }
}

/// The first of `lines` to show: those since the `since` time, then the last `tail`.
fn shown(lines: &[Line], q: &Query) -> usize {
    let since = q.since.map_or(0, |t| lines.iter().position(|l| l.at >= t).unwrap_or(lines.len()));
    match q.tail {
        Some(n) => since.max(lines.len().saturating_sub(n)),
        None => since,
    }
}

/// The longest start of `s` of at most `max` bytes that ends on a character.
fn cut_at(s: &str, max: usize) -> &str {
    let end = (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    &s[..end]
}

fn format(line: &Line, timestamps: bool) -> String {
    if timestamps {
        format!("{} {}\n", line.at.strftime("%Y-%m-%dT%H:%M:%S%.9fZ"), line.text)
    } else {
        format!("{}\n", line.text)
    }
}

/// The container of `pod` a `log` or `exec` request addresses: the one it names, or
/// the pod's only one.
pub fn container(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match asked {
        Some(c) if containers.contains(&c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].to_owned()),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// Answers `GET .../pods/NAME/log` for `pod` (as stored): the lines asked for, then, with
/// `follow`, each new one until the pod is deleted or the client goes.
pub fn respond(
    cluster: Arc<Cluster>,
    pod: &Value,
    q: Query,
    stop: CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_owned();
    let container = container(pod, q.container.as_deref())?;
    if q.previous {
        return Err(ApiError::BadRequest(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Pending") {
        return Err(ApiError::BadRequest(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let (lines, next) = cluster.logs.read(&namespace, &name, 0);
    let mut budget = q.limit_bytes.unwrap_or(usize::MAX);
    let mut text = String::new();
    for line in &lines[shown(&lines, &q)..] {
        let line = format(line, q.timestamps);
        if line.len() > budget {
            text.push_str(cut_at(&line, budget));
            budget = 0;
            break;
        }
        budget -= line.len();
        text.push_str(&line);
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let _ = tx.try_send(Ok(Frame::data(Bytes::from(text))));
    if q.follow && budget > 0 {
        tokio::spawn(follow(cluster, namespace, name, next, q, budget, tx, stop));
    }
    let mut response = Response::new(StreamBody::new(super::watch::tokio_stream_from(rx)).boxed());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    cluster: Arc<Cluster>,
    namespace: String,
    pod: String,
    mut next: u64,
    q: Query,
    mut budget: usize,
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    stop: CancellationToken,
) {
    let mut written = cluster.logs.written.subscribe();
    let key = ObjectKey::new("", "pods", &namespace, &pod);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            _ = written.changed() => {}
            _ = tokio::time::sleep(FOLLOW_CHECK) => {}
        }
        let (lines, after) = cluster.logs.read(&namespace, &pod, next);
        next = after;
        for line in lines {
            let line = format(&line, q.timestamps);
            let cut = line.len() > budget;
            let line = if cut { cut_at(&line, budget).to_owned() } else { line };
            budget -= line.len();
            if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() || cut || budget == 0 {
                return;
            }
        }
        // The container stops with its pod: the stream ends.
        if cluster.store.get(&key).is_none() {
            return;
        }
    }
}

/// Lines written to the running pods of one Deployment, as its replicas' output: what a
/// product run in-process by a test logs, for `kubectl logs deploy/NAME`. Buffers up to
/// each newline.
#[derive(Debug, Clone)]
pub struct Output {
    cluster: Arc<Cluster>,
    namespace: String,
    deployment: String,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl Output {
    pub fn new(cluster: Arc<Cluster>, namespace: &str, deployment: &str) -> Self {
        Self { cluster, namespace: namespace.to_owned(), deployment: deployment.to_owned(), pending: Arc::default() }
    }

    /// Writes `text` to the Deployment's running pods, after what was held for them;
    /// with none running (or no Deployment yet), holds it for the first one to start.
    fn emit(&self, text: &str) {
        let logs = &self.cluster.logs;
        let mut held = logs.held.lock().expect("held output lock");
        let key = (self.namespace.clone(), self.deployment.clone());
        let pods = deployment_selector(&self.cluster, &self.namespace, &self.deployment)
            .map(|selector| running_pods(&self.cluster, &self.namespace, |p| selector.matches_object(p)))
            .unwrap_or_default();
        if pods.is_empty() {
            let lines = held.entry(key).or_default();
            lines.extend(self::lines(text));
            while lines.len() > KEPT {
                lines.pop_front();
            }
            return;
        }
        let earlier = held.remove(&key).unwrap_or_default();
        for (namespace, pod) in pods {
            logs.append(&namespace, &pod, earlier.iter().cloned().chain(self::lines(text)));
        }
    }
}

/// The label selector of Deployment `namespace/name`, if it exists.
fn deployment_selector(cluster: &Cluster, namespace: &str, name: &str) -> Option<LabelSelector> {
    let deployment = cluster.store.get(&ObjectKey::new("apps", "deployments", namespace, name))?;
    Some(LabelSelector::from_object(&deployment["spec"]["selector"]))
}

/// The kubelet has started `pod`'s containers: the output held for a Deployment that
/// selects it is the start of its log.
pub fn started(cluster: &Cluster, pod: &Value) {
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut held = cluster.logs.held.lock().expect("held output lock");
    let selecting: Vec<(String, String)> = held
        .keys()
        .filter(|(ns, deployment)| {
            ns == namespace && deployment_selector(cluster, ns, deployment).is_some_and(|s| s.matches_object(pod))
        })
        .cloned()
        .collect();
    for key in selecting {
        if let Some(lines) = held.remove(&key) {
            cluster.logs.append(namespace, name, lines);
        }
    }
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let complete = {
            let mut pending = self.pending.lock().expect("output lock");
            pending.extend_from_slice(buf);
            let end = pending.iter().rposition(|b| *b == b'\n');
            end.map(|end| pending.drain(..=end).collect::<Vec<u8>>())
        };
        if let Some(lines) = complete {
            self.emit(&String::from_utf8_lossy(&lines));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The Running pods of `namespace` (every namespace when empty) that `matches`, as
/// (namespace, name).
pub fn running_pods(cluster: &Cluster, namespace: &str, matches: impl Fn(&Value) -> bool) -> Vec<(String, String)> {
    let ns = (!namespace.is_empty()).then_some(namespace);
    let (pods, _) = cluster.store.list("", "pods", ns);
    pods.iter()
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| matches(p))
        .filter_map(|p| {
            let text = |path: &str| p.pointer(path).and_then(Value::as_str).map(str::to_owned);
            Some((text("/metadata/namespace")?, text("/metadata/name")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<Query, ApiError> {
        Query::parse(&pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn options_are_checked_as_kube_apiserver_checks_them() {
        let q = query(&[("follow", "true"), ("tailLines", "5"), ("timestamps", "true"), ("container", "app")]).unwrap();
        assert_eq!((q.follow, q.tail, q.timestamps, q.container.as_deref()), (true, Some(5), true, Some("app")));
        for (pairs, why) in [
            (vec![("tailLines", "-1")], "tailLines: Invalid value: \"-1\": must be greater than or equal to 0"),
            (vec![("tailLines", "x")], "tailLines: Invalid value: \"x\": must be an integer"),
            (vec![("sinceSeconds", "0")], "sinceSeconds: Invalid value: \"0\": must be greater than 0"),
            (vec![("sinceSeconds", "5"), ("sinceTime", "2026-01-01T00:00:00Z")], "at most one of"),
            (vec![("sinceTime", "yesterday")], "sinceTime: Invalid value: \"yesterday\": must be RFC 3339"),
            (vec![("limitBytes", "0")], "limitBytes: Invalid value: \"0\": must be greater than 0"),
        ] {
            let err = query(&pairs).unwrap_err().to_string();
            assert!(err.contains(why), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn tail_and_since_pick_the_last_lines() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let lines: Vec<Line> = (0..5).map(|i| Line { at: at(i), text: format!("line {i}") }).collect();
        let from = |tail: Option<usize>, since: Option<i64>| {
            shown(&lines, &Query { tail, since: since.map(at), ..Query::default() })
        };
        assert_eq!(from(None, None), 0);
        assert_eq!(from(Some(2), None), 3);
        assert_eq!(from(Some(0), None), 5);
        assert_eq!(from(Some(10), None), 0);
        assert_eq!(from(None, Some(3)), 3);
        assert_eq!(from(Some(4), Some(3)), 3, "both: the later start");
        assert_eq!(from(None, Some(9)), 5);
    }

    #[test]
    fn a_pod_keeps_its_last_lines_and_readers_resume_by_index() {
        let logs = PodLogs::default();
        for i in 0..KEPT + 5 {
            logs.write("test", "p", &format!("line {i}"));
        }
        let (lines, next) = logs.read("test", "p", 0);
        assert_eq!(lines.len(), KEPT);
        assert_eq!(lines[0].text, "line 5");
        assert_eq!(next, (KEPT + 5) as u64);
        logs.write("test", "p", "a\nb");
        let (lines, _) = logs.read("test", "p", next);
        assert_eq!(lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(cut_at("héllo", 2), "h", "never inside a character");
    }
}
