//! The election task: drives kube-lease-manager (whose `changed()` is also what renews)
//! and reads the Lease back on its own timer, so the published [`Standing`] ends at our
//! cut-off even when the manager cannot tell that its renewals fail.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::LeaseManager;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{LEASE_NAME, RELEASE_TIMEOUT, RETRY_MAX, RETRY_MIN, Standing, Timing, sleep_until};

/// Until when a holder whose last renewal was `renewed` may act: `grace` before the
/// Lease can expire for the others (`lease_seconds` as written on it, if shorter).
fn valid_until(renewed: SystemTime, lease_seconds: Option<i32>, timing: &Timing) -> SystemTime {
    let written = lease_seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(timing.duration);
    renewed + Duration::from_secs(written.min(timing.duration).saturating_sub(timing.grace))
}

/// What one read of the Lease says of us: `Some(until)` while we hold it.
fn read_back(lease: &Lease, identity: &str, timing: &Timing) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
    Some(valid_until(renewed, spec.lease_duration_seconds, timing))
}

type Step<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(super) struct Election {
    pub(super) manager: LeaseManager,
    pub(super) api: Api<Lease>,
    pub(super) identity: String,
    pub(super) timing: Timing,
    pub(super) tx: watch::Sender<Standing>,
    pub(super) stop: CancellationToken,
}

impl Election {
    /// Drives the manager (whose `changed()` is also what renews) and reads the Lease
    /// back, publishing the standing after each event, until stopped.
    pub(super) async fn run(self) {
        let (manager, identity, timing) = (&self.manager, self.identity.as_str(), &self.timing);
        let mut holding = false;
        let mut until: Option<SystemTime> = None;
        let mut retry = RETRY_MIN;
        let mut next: Step<'_, _> = Box::pin(manager.changed());
        let mut read: Step<'_, _> = Box::pin(self.read(Duration::ZERO));
        let mut term = 0;
        loop {
            let now = Instant::now();
            let mut standing = Standing { holding, until: until.map(instant_of), term };
            // What was published, judged now: a lapse this task did not see (the process
            // was stopped past the cut-off) counts as one.
            let was = self.tx.borrow().leading(now);
            let is = standing.leading(now);
            // Each start of leading is a new term: fences of the last one stay tripped.
            if is && !was {
                term += 1;
                standing.term = term;
            }
            self.tx.send_if_modified(|s| std::mem::replace(s, standing) != standing);
            if was != is {
                tracing::info!(identity, leader = is, "{}", if is { "leadership acquired" } else { "leadership lost" });
            }
            let expiry = standing.until.filter(|_| is);
            tokio::select! {
                () = self.stop.cancelled() => break,
                result = &mut next => {
                    match result {
                        Ok(now) => {
                            holding = now;
                            retry = RETRY_MIN;
                            if now {
                                // Learn the renewal time of the acquisition right away.
                                read = Box::pin(self.read(Duration::ZERO));
                            }
                            next = Box::pin(manager.changed());
                        }
                        Err(e) => {
                            tracing::warn!(identity, error = %e, retry_in = ?retry, "the lease cannot be renewed or acquired");
                            let wait = retry;
                            retry = (retry * 2).min(RETRY_MAX);
                            next = Box::pin(async move {
                                tokio::time::sleep(wait).await;
                                manager.changed().await
                            });
                        }
                    }
                }
                seen = &mut read => {
                    match seen {
                        Some(Ok(lease)) => until = read_back(&lease, identity, timing),
                        // A failed read proves nothing: the last renewal seen still ages.
                        Some(Err(e)) => tracing::debug!(identity, error = %e, "reading the lease back failed"),
                        None => tracing::debug!(identity, "reading the lease back timed out"),
                    }
                    read = Box::pin(self.read(timing.poll));
                }
                () = sleep_until(expiry) => {}
            }
        }
        // Not leader from here on, before the Lease is freed for the others.
        self.tx.send_replace(Standing::default());
        drop((next, read));
        match tokio::time::timeout(RELEASE_TIMEOUT, manager.release()).await {
            Ok(Ok(())) => tracing::info!(identity, "lease released"),
            Ok(Err(e)) => tracing::warn!(identity, error = %e, "releasing the lease failed; it expires on its own"),
            Err(_) => tracing::warn!(identity, "releasing the lease timed out; it expires on its own"),
        }
    }

    /// One read of the Lease after `delay`, bounded by the poll period so a hung
    /// connection cannot hold back the next one.
    async fn read(&self, delay: Duration) -> Option<Result<Lease, kube::Error>> {
        tokio::time::sleep(delay).await;
        tokio::time::timeout(self.timing.poll.max(Duration::from_millis(250)), self.api.get(LEASE_NAME)).await.ok()
    }
}

/// The monotonic instant of a wall-clock time (now if it is already past).
fn instant_of(at: SystemTime) -> Instant {
    let now = Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;
    use crate::lease::LeaseTiming;

    fn timing(duration: u64, grace: u64) -> Timing {
        LeaseTiming { duration: Duration::from_secs(duration), grace: Duration::from_secs(grace) }.check().unwrap()
    }

    fn lease(holder: &str, renewed: SystemTime, seconds: i32) -> Lease {
        Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                renew_time: Some(MicroTime(renewed.try_into().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn we_may_act_until_grace_before_the_lease_expires_for_the_others() {
        let t = timing(15, 5);
        let renewed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(read_back(&lease("me", renewed, 15), "me", &t), Some(renewed + Duration::from_secs(10)));
        // A shorter duration written on the Lease is what the others go by.
        assert_eq!(read_back(&lease("me", renewed, 8), "me", &t), Some(renewed + Duration::from_secs(3)));
        assert_eq!(read_back(&lease("other", renewed, 15), "me", &t), None, "someone else holds it");
        let mut unrenewed = lease("me", renewed, 15);
        unrenewed.spec.as_mut().unwrap().renew_time = None;
        assert_eq!(read_back(&unrenewed, "me", &t), None);
    }
}
