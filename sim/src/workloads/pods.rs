//! The kubelet of the one simulated node: binds new pods to it, gives them an IP from
//! the pod CIDR (labels only: nothing ever connects to them) and, after the ready
//! delay, reports them Running and Ready with container statuses; the scheduler's and
//! the kubelet's Events on the way (`Scheduled`, `Pulled`, `Created`, `Started`).
//! Stopping deleted pods is in `terminating.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::events::{Record, SCHEDULER, reference};
use super::queue::{Kind, Name};
use super::{Controllers, Timing, is_deleting, parse_time, stamp, str_at, uid_of};

pub const NODE_NAME: &str = "sim-node";
pub const HOST_IP: &str = "10.0.0.1";
/// Host addresses in 10.244.0.0/16 without the .0 and .255 of each /24.
const POD_IPS: u32 = 256 * 254;

/// Whether the pod's `Ready` condition is True.
pub fn is_ready(pod: &Value) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's `Ready` condition became True ("" when the time is unknown).
pub(super) fn ready_since(pod: &Value) -> Option<&str> {
    let conditions = pod.pointer("/status/conditions")?.as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    Some(str_at(ready, "/lastTransitionTime"))
}

/// `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Value, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => {
            parse_time(since).is_some_and(|t| t.as_second() + i64::from(min_ready_seconds) < now.as_second())
        }
    }
}

/// Counted by controllers: not finished and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") && !is_deleting(pod)
}

/// `docker.io/library/nginx:1.27` for `nginx:1.27`, as containerd reports images.
fn normalized(image: &str) -> String {
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let has_registry = first.contains('.') || first.contains(':') || first == "localhost";
    let named = match (first, has_registry) {
        ("", _) => format!("docker.io/library/{rest}"),
        (_, true) => image.to_owned(),
        (_, false) => format!("docker.io/{image}"),
    };
    let last = named.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') { named } else { format!("{named}:latest") }
}

pub(super) fn hex_digest(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn containers(pod: &Value, list: &str) -> Vec<Value> {
    pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).cloned().unwrap_or_default()
}

/// `BestEffort` without any requests or limits, `Guaranteed` when every container
/// limits cpu and memory with equal requests, `Burstable` otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let all: Vec<Value> = [containers(pod, "containers"), containers(pod, "initContainers")].concat();
    let empty = |c: &Value, k: &str| {
        c.pointer(&format!("/resources/{k}")).and_then(Value::as_object).is_none_or(|m| m.is_empty())
    };
    if all.iter().all(|c| empty(c, "requests") && empty(c, "limits")) {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = c.pointer(&format!("/resources/limits/{r}"));
            let request = c.pointer(&format!("/resources/requests/{r}"));
            limit.is_some() && (request.is_none() || request == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

pub(super) fn pod_condition(type_: &str, ok: bool, since: &str, unready: &[String]) -> Value {
    let mut c = json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
        "lastTransitionTime": since});
    if !ok {
        c["reason"] = json!("ContainersNotReady");
        c["message"] = json!(format!("containers with unready status: [{}]", unready.join(" ")));
    }
    c
}

/// The status of a pod just bound to the node: sandbox up, containers being created.
pub fn pending_status(pod: &Value, ip: &str, now: &str) -> Value {
    let names: Vec<String> = containers(pod, "containers").iter().map(|c| str_at(c, "/name").to_owned()).collect();
    let statuses: Vec<Value> = containers(pod, "containers")
        .iter()
        .map(|c| {
            json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "started": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})
        })
        .collect();
    json!({
        "phase": "Pending",
        "conditions": [
            pod_condition("PodReadyToStartContainers", true, now, &[]),
            pod_condition("Initialized", true, now, &[]),
            pod_condition("Ready", false, now, &names),
            pod_condition("ContainersReady", false, now, &names),
            pod_condition("PodScheduled", true, now, &[]),
        ],
        "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    })
}

/// The status of a pod whose containers all run and are ready since `now`.
pub fn running_status(pod: &Value, now: &str) -> Value {
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    let kept = |type_: &str| {
        status
            .pointer("/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .map_or(now.to_owned(), |c| str_at(c, "/lastTransitionTime").to_owned())
    };
    let conditions = json!([
        pod_condition("PodReadyToStartContainers", true, &kept("PodReadyToStartContainers"), &[]),
        pod_condition("Initialized", true, &kept("Initialized"), &[]),
        pod_condition("Ready", true, now, &[]),
        pod_condition("ContainersReady", true, now, &[]),
        pod_condition("PodScheduled", true, &kept("PodScheduled"), &[]),
    ]);
    let container = |c: &Value, state: Value, ready: bool| {
        let image = normalized(str_at(c, "/image"));
        let repository = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r).to_owned();
        json!({"name": c["name"], "image": image, "imageID": format!("{repository}@sha256:{}", hex_digest(&image)),
            "containerID": format!("containerd://{}", hex_digest(&format!("{}/{}", uid_of(pod), str_at(c, "/name")))),
            "ready": ready, "started": ready, "restartCount": 0, "state": state, "lastState": {}})
    };
    let running: Vec<Value> = containers(pod, "containers")
        .iter()
        .map(|c| container(c, json!({"running": {"startedAt": now}}), true))
        .collect();
    status["phase"] = json!("Running");
    status["conditions"] = conditions;
    status["containerStatuses"] = json!(running);
    let init = containers(pod, "initContainers");
    if !init.is_empty() {
        let done = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}});
        status["initContainerStatuses"] =
            json!(init.iter().map(|c| container(c, done.clone(), true)).collect::<Vec<_>>());
    }
    status
}

/// What the kubelet remembers: the next IP, when each pod got one, when each deleted
/// pod was told to stop, and the images on the node.
#[derive(Debug)]
pub struct Kubelet {
    pub(super) delay: Duration,
    pub(super) stop_delay: Duration,
    next_ip: u32,
    pending: HashMap<String, Instant>,
    pub(super) stopping: HashMap<String, Instant>,
    pub(super) images: HashSet<String>,
}

impl Kubelet {
    pub fn new(timing: Timing) -> Self {
        Self {
            delay: timing.ready_delay,
            stop_delay: timing.stop_delay,
            next_ip: 0,
            pending: HashMap::new(),
            stopping: HashMap::new(),
            images: HashSet::new(),
        }
    }

    /// The next unused address of 10.244.0.0/16; none when the range is used up.
    fn allocate_ip(&mut self) -> Option<String> {
        if self.next_ip >= POD_IPS {
            return None;
        }
        let n = self.next_ip;
        self.next_ip += 1;
        Some(format!("10.244.{}.{}", n / 254, n % 254 + 1))
    }

    /// A pod is gone.
    pub fn forget(&mut self, uid: &str) {
        self.pending.remove(uid);
        self.stopping.remove(uid);
    }

    /// Only these pods are left.
    pub fn retain<'a>(&mut self, alive: impl IntoIterator<Item = &'a str>) {
        let alive: HashSet<&str> = alive.into_iter().collect();
        self.pending.retain(|uid, _| alive.contains(uid.as_str()));
        self.stopping.retain(|uid, _| alive.contains(uid.as_str()));
    }
}

impl Controllers {
    /// Binds, addresses and readies the pods `names`; one still starting is due again
    /// when its ready delay is over.
    pub(super) async fn kubelet(&mut self, names: BTreeSet<Name>) {
        let r = self.kinds.pod.clone();
        for (ns, name) in names {
            // Events keep coming while a long pass runs: take them before they overflow.
            self.drain_events();
            let Some(pod) = self.cluster.get_raw(&r.group, &r.plural, &ns, &name) else { continue };
            if is_deleting(&pod) {
                self.stop(&pod).await;
                continue;
            }
            if !is_active(&pod) {
                continue;
            }
            let now = stamp(Timestamp::now());
            if str_at(&pod, "/status/podIP").is_empty() {
                let Some(ip) = self.kubelet.allocate_ip() else {
                    tracing::warn!(pod = name, "sim kubelet: the pod CIDR is used up");
                    continue;
                };
                let mut bound = (*pod).clone();
                if str_at(&pod, "/spec/nodeName").is_empty() {
                    match self.merge_patch(&r, &ns, &name, json!({"spec": {"nodeName": NODE_NAME}})).await {
                        Ok(written) => {
                            let message = format!("Successfully assigned {ns}/{name} to {NODE_NAME}");
                            let scheduled = Record {
                                action: Some("Binding"),
                                ..Record::normal(SCHEDULER, reference(&written, None), "Scheduled", message)
                            };
                            self.recorder.record(scheduled);
                            bound = written;
                        }
                        Err(e) => {
                            e.log();
                            self.retry(Kind::Pod, (&ns, &name));
                            continue;
                        }
                    }
                }
                bound["status"] = pending_status(&bound, &ip, &now);
                match self.replace(&r, Some("status"), bound).await {
                    Ok(_) => {
                        self.kubelet.pending.insert(uid_of(&pod).to_owned(), Instant::now());
                        let due = Instant::now() + self.kubelet.delay;
                        self.timers.after(Kind::Pod, (ns, name), due);
                    }
                    Err(e) => {
                        e.log();
                        self.retry(Kind::Pod, (&ns, &name));
                    }
                }
            } else if str_at(&pod, "/status/phase") == "Pending" && !is_ready(&pod) {
                let since = *self.kubelet.pending.entry(uid_of(&pod).to_owned()).or_insert_with(Instant::now);
                let due = since + self.kubelet.delay;
                if due > Instant::now() {
                    self.timers.after(Kind::Pod, (ns, name), due);
                    continue;
                }
                let mut running = (*pod).clone();
                running["status"] = running_status(&pod, &now);
                match self.replace(&r, Some("status"), running).await {
                    Ok(_) => {
                        self.kubelet.forget(uid_of(&pod));
                        crate::logs::started(&self.cluster, &pod);
                        let (images, took) = (&mut self.kubelet.images, self.kubelet.delay);
                        for record in super::containers::start_events(&pod, images, took) {
                            self.recorder.record(record);
                        }
                    }
                    Err(e) => {
                        e.log();
                        self.retry(Kind::Pod, (&ns, &name));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A pod of two containers, for the kubelet's tests.
    pub(in crate::workloads) fn pod() -> Value {
        json!({"metadata": {"name": "web-1", "uid": "u1"}, "spec": {"containers": [
            {"name": "app", "image": "stefanprodan/podinfo:6.0.0"}, {"name": "side", "image": "envoy"}]}})
    }

    #[test]
    fn ips_are_unique_and_in_the_pod_cidr() {
        let mut k = Kubelet::new(Timing { ready_delay: Duration::ZERO, stop_delay: Duration::ZERO });
        let ips: Vec<String> = (0..600).map_while(|_| k.allocate_ip()).collect();
        assert_eq!(ips[0], "10.244.0.1");
        assert_eq!(ips[253], "10.244.0.254");
        assert_eq!(ips[254], "10.244.1.1");
        assert_eq!(ips.iter().collect::<HashSet<_>>().len(), ips.len());
        k.next_ip = POD_IPS - 1;
        assert_eq!(k.allocate_ip().as_deref(), Some("10.244.255.254"));
        assert_eq!(k.allocate_ip(), None, "never reused");
    }

    #[test]
    fn pending_then_running_and_ready() {
        let mut p = pod();
        p["status"] = pending_status(&p, "10.244.0.7", "2026-01-01T00:00:00Z");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["podIPs"], json!([{"ip": "10.244.0.7"}]));
        assert!(!is_ready(&p));
        assert_eq!(
            p["status"]["conditions"][2]["message"], "containers with unready status: [app side]",
            "{}",
            p["status"]
        );
        let status = running_status(&p, "2026-01-01T00:00:05Z");
        assert_eq!(status["podIP"], "10.244.0.7");
        assert_eq!(status["qosClass"], "BestEffort");
        p["status"] = status;
        assert!(is_ready(&p));
        let conditions = p["status"]["conditions"].as_array().unwrap();
        assert!(conditions.iter().all(|c| c["status"] == "True"));
        let scheduled = conditions.iter().find(|c| c["type"] == "PodScheduled").unwrap();
        assert_eq!(scheduled["lastTransitionTime"], "2026-01-01T00:00:00Z", "kept from scheduling");
        let c = &p["status"]["containerStatuses"][0];
        assert_eq!(c["image"], "docker.io/stefanprodan/podinfo:6.0.0");
        assert!(c["imageID"].as_str().unwrap().starts_with("docker.io/stefanprodan/podinfo@sha256:"));
        assert_eq!(
            (c["ready"].as_bool(), c["started"].as_bool(), c["restartCount"].as_i64()),
            (Some(true), Some(true), Some(0))
        );
        assert_eq!(c["state"]["running"]["startedAt"], "2026-01-01T00:00:05Z");
        assert_eq!(p["status"]["containerStatuses"][1]["image"], "docker.io/library/envoy:latest");
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let mut p = pod();
        p["status"] = running_status(&p, "2026-01-01T00:00:00Z");
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(is_available(&p, 0, at("2026-01-01T00:00:00Z")));
        assert!(!is_available(&p, 5, at("2026-01-01T00:00:05Z")));
        assert!(is_available(&p, 5, at("2026-01-01T00:00:06Z")));
    }

    #[test]
    fn images_and_qos() {
        assert_eq!(normalized("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized("ghcr.io/stefanprodan/podinfo:6.5.0"), "ghcr.io/stefanprodan/podinfo:6.5.0");
        assert_eq!(normalized("localhost:5000/app"), "localhost:5000/app:latest");
        let limited = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&limited), "Guaranteed");
        let requested = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&requested), "Burstable");
    }
}
