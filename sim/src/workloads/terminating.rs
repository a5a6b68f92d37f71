//! The kubelet stopping deleted pods: a pod with a `deletionTimestamp` gets SIGTERM
//! (`Killing` Events for its running containers); its containers exit after the stop
//! delay, or its grace period if shorter; then the kubelet deletes it for good (grace
//! period 0). Meanwhile it is Terminating: out of its Services' ready endpoints and not
//! counted by its ReplicaSet.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::containers::stop_events;
use super::pods::pod_condition;
use super::queue::Kind;
use super::{Controllers, DeleteOptions, int_at, str_at, uid_of};

/// How long the kubelet waits for a deleted pod's containers: they exit after `delay`,
/// unless the grace period (seconds) ends first.
pub fn stop_after(delay: Duration, grace_seconds: i64) -> Duration {
    delay.min(Duration::from_secs(u64::try_from(grace_seconds).unwrap_or(0)))
}

impl Controllers {
    /// One step of stopping the deleted `pod`: SIGTERM when first seen, the final
    /// deletion once its containers exited.
    pub(super) async fn stop(&mut self, pod: &Value) {
        let (ns, name) = (str_at(pod, "/metadata/namespace"), str_at(pod, "/metadata/name"));
        // Grace 0: deleted for good already, held only by its finalizers.
        let Some(grace) = int_at(pod, "/metadata/deletionGracePeriodSeconds").filter(|g| *g > 0) else { return };
        let uid = uid_of(pod).to_owned();
        let since = match self.kubelet.stopping.get(&uid) {
            Some(since) => *since,
            None => {
                for record in stop_events(pod) {
                    self.recorder.record(record);
                }
                self.kubelet.stopping.insert(uid.clone(), Instant::now());
                Instant::now()
            }
        };
        // A shorter grace asked since (a second delete) moves the end earlier.
        let due = since + stop_after(self.kubelet.stop_delay, grace);
        if due > Instant::now() {
            self.timers.after(Kind::Pod, (ns.to_owned(), name.to_owned()), due);
            return;
        }
        let r = self.kinds.pod.clone();
        // Its containers exited: the kubelet reports them terminated (`0/1 Terminating`
        // in a watch), then deletes the pod. A failed report only loses that picture.
        let mut stopped = pod.clone();
        stopped["status"] = stopped_status(pod, &crate::defaults::now());
        if let Err(e) = self.replace(&r, Some("status"), stopped).await {
            e.log();
        }
        match self.delete_with(&r, ns, name, &DeleteOptions::now()).await {
            Ok(()) => self.kubelet.forget(&uid),
            Err(e) => {
                e.log();
                self.retry(Kind::Pod, (ns, name));
            }
        }
    }
}

/// The status of a deleted pod whose containers exited on SIGTERM, as the kubelet
/// reports it before the pod goes: each container terminated (exit 0, `Completed`),
/// not ready, and the pod in its terminal phase.
pub fn stopped_status(pod: &Value, now: &str) -> Value {
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut names = Vec::new();
    for c in status.get_mut("containerStatuses").and_then(Value::as_array_mut).into_iter().flatten() {
        names.push(str_at(c, "/name").to_owned());
        let started = c.pointer("/state/running/startedAt").cloned().unwrap_or_else(|| json!(now));
        c["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
            "finishedAt": now, "containerID": c.get("containerID")}});
        c["ready"] = json!(false);
        c["started"] = json!(false);
    }
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conditions.iter_mut().filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady") {
            let type_ = str_at(c, "/type").to_owned();
            *c = pod_condition(&type_, false, now, &names);
            c["reason"] = json!("PodCompleted");
            c.as_object_mut().map(|m| m.remove("message"));
        }
    }
    status["phase"] = json!("Succeeded");
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_delay_within_the_grace_period() {
        let second = Duration::from_secs(1);
        assert_eq!(stop_after(second, 30), second);
        assert_eq!(stop_after(Duration::from_secs(5), 2), Duration::from_secs(2));
        assert_eq!(stop_after(second, 0), Duration::ZERO);
    }

    #[test]
    fn stopped_pods_report_their_containers_terminated() {
        let pod = json!({"metadata": {"name": "web-1", "uid": "u1"}, "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "t0"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}],
            "containerStatuses": [{"name": "app", "ready": true, "started": true, "containerID": "containerd://c",
                "state": {"running": {"startedAt": "t0"}}}]}});
        let status = stopped_status(&pod, "t1");
        assert_eq!(status["phase"], "Succeeded");
        let app = &status["containerStatuses"][0];
        assert_eq!((app["ready"].clone(), app["state"]["terminated"]["exitCode"].clone()), (json!(false), json!(0)));
        assert_eq!(app["state"]["terminated"]["startedAt"], "t0");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "PodCompleted");
        assert_eq!(status["conditions"][1]["status"], "True", "scheduled stays");
    }
}
