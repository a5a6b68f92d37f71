//! The kubelet stopping deleted pods: a pod with a `deletionTimestamp` gets SIGTERM
//! (`Killing` Events for its running containers); its containers exit after the stop
//! delay, or its grace period if shorter; then the kubelet deletes it for good (grace
//! period 0). Meanwhile it is Terminating: out of its Services' ready endpoints and not
//! counted by its ReplicaSet.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::containers::stop_events;
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
        match self.delete_with(&r, ns, name, &DeleteOptions::now()).await {
            Ok(()) => self.kubelet.forget(&uid),
            Err(e) => {
                e.log();
                self.retry(Kind::Pod, (ns, name));
            }
        }
    }
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
}
