//! Leader election on a `coordination.k8s.io/v1` Lease: every replica serves webhooks,
//! only the holder reconciles and writes.
//!
//! ```text
//!  kube-lease-manager ── renews at R + duration - renew_grace ──▶ Lease {holder, renewTime R}
//!  our reader ── GET the Lease every poll ──▶ R, last seen with us as holder
//!  is_leader() = the manager holds it && holder == us && now < R + duration - grace
//!  the others may take it at R + duration
//! ```
//!
//! kube-lease-manager keeps saying "leader" while its renewals fail (it only re-reads
//! the Lease after its own expiry), so we never trust that alone: we read the renewal
//! time back ourselves and stop reporting leadership `grace` before the Lease can expire
//! for the others, whatever the reason the renewals stopped. The manager is told to
//! renew well before that point (halfway between our cut-off and `grace`), so a healthy
//! leader never flaps at a renewal.

use std::time::{Duration, Instant, SystemTime};

use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::election::Election;

mod election;

/// The Lease in our namespace that the replicas compete for.
pub const LEASE_NAME: &str = "apisix-canary-leader";
/// Prefix of the field manager of our Lease writes (the identity follows).
const FIELD_MANAGER: &str = "apisix-canary-lease";
/// client-go's defaults for controllers: a 15s lease, stop 5s before it can expire.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Our reads of the Lease happen at least this often.
const MAX_POLL: Duration = Duration::from_secs(1);
/// Retries after a failed renewal: quick at first, at most this far apart.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long freeing the Lease may take on shutdown before we give up on it.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a Lease lasts and how early its holder stops writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// `leaseDurationSeconds`: the others may take the Lease this long after its last
    /// renewal. Whole seconds.
    pub duration: Duration,
    /// The holder stops reporting leadership this long before that (clock skew and the
    /// time a write in flight may take). Whole seconds, at least 2s under `duration`.
    pub grace: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self { duration: DEFAULT_DURATION, grace: DEFAULT_GRACE }
    }
}

/// A [`LeaseTiming`] that holds together, in the units the Lease uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timing {
    duration: u64,
    grace: u64,
    /// The manager's grace: it renews this many seconds before the Lease expires.
    renew_grace: u64,
    /// How often we read the Lease back.
    poll: Duration,
}

impl LeaseTiming {
    fn check(&self) -> Result<Timing, LeaseError> {
        let whole = |what: &str, d: Duration| {
            if d.subsec_nanos() == 0 && d.as_secs() > 0 {
                Ok(d.as_secs())
            } else {
                Err(LeaseError::Timing(format!("{what} must be a whole number of seconds, at least 1s (got {d:?})")))
            }
        };
        let (duration, grace) = (whole("duration", self.duration)?, whole("grace", self.grace)?);
        // One second between our cut-off and the manager's renewal, at the least.
        if duration < grace + 2 {
            return Err(LeaseError::Timing(format!(
                "duration ({duration}s) must be at least grace ({grace}s) + 2s, so renewals happen before the cut-off"
            )));
        }
        let renew_grace = grace + (duration - grace) / 2;
        let poll = (Duration::from_secs(renew_grace - grace) / 4).min(MAX_POLL);
        Ok(Timing { duration, grace, renew_grace, poll })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease timing: {0}")]
    Timing(String),
    #[error("lease {namespace}/{LEASE_NAME}: {source}")]
    Manager {
        namespace: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// What the election task publishes: whether we hold the Lease, until when we may act
/// on it, and which of our terms of leadership this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Standing {
    holding: bool,
    until: Option<Instant>,
    /// Counts the times this replica started leading: a decision made in one term is
    /// never carried out in the next, when another replica may have led in between.
    term: u64,
}

impl Standing {
    fn leading(&self, now: Instant) -> bool {
        self.holding && self.until.is_some_and(|until| now < until)
    }
}

/// A view of the election for the loops that write: cheap to clone.
#[derive(Debug, Clone)]
pub struct Watcher {
    rx: watch::Receiver<Standing>,
    seen: bool,
}

impl Watcher {
    /// Whether this replica holds the Lease and its last renewal is recent enough to act.
    /// Checked against the clock on every call, so it turns false on time even if the
    /// election task is late.
    pub fn is_leader(&self) -> bool {
        self.rx.borrow().leading(Instant::now())
    }

    /// The fence of this term of leadership, `None` when not leading: what a reconcile
    /// decides under it may be written only while [`Fence::holds`].
    pub fn fence(&self) -> Option<Fence> {
        let standing = *self.rx.borrow();
        standing.leading(Instant::now()).then(|| Fence { rx: self.rx.clone(), term: standing.term })
    }

    /// Waits until [`is_leader`](Self::is_leader) differs from what this watcher last
    /// returned, and returns the new value. After the election ended it returns false
    /// once, then never again.
    pub async fn changed(&mut self) -> bool {
        loop {
            let now = self.is_leader();
            if now != self.seen {
                self.seen = now;
                return now;
            }
            let standing = *self.rx.borrow_and_update();
            let expiry = standing.until.filter(|_| now);
            tokio::select! {
                result = self.rx.changed() => {
                    if result.is_err() {
                        // The election ended: only the clock can change the answer now.
                        sleep_until(expiry).await;
                    }
                }
                () = sleep_until(expiry) => {}
            }
        }
    }
}

/// The leadership a decision was made under. It trips, for good, when that term ends:
/// the cut-off `grace` before the Lease could expire for another replica, whether or not
/// the election task has run since (a process stopped and resumed finds its clock past
/// the cut-off), or a new term began.
#[derive(Debug, Clone)]
pub struct Fence {
    rx: watch::Receiver<Standing>,
    term: u64,
}

impl Fence {
    /// Whether a write decided under this fence may still be made: checked right before
    /// each write and after each slow call.
    pub fn holds(&self) -> bool {
        let standing = *self.rx.borrow();
        standing.term == self.term && standing.leading(Instant::now())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// This replica in the election. Dropping it stops the election and frees the Lease in
/// the background; [`release`](Self::release) does it and waits.
#[derive(Debug)]
pub struct Leadership {
    identity: String,
    watcher: Watcher,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// See [`Watcher::is_leader`].
    pub fn is_leader(&self) -> bool {
        self.watcher.is_leader()
    }

    /// See [`Watcher::changed`].
    pub async fn changed(&mut self) -> bool {
        self.watcher.changed().await
    }

    /// A watcher for a loop that writes (the reconciler checks it before each write).
    pub fn watcher(&self) -> Watcher {
        Watcher { rx: self.watcher.rx.clone(), seen: false }
    }

    /// Stops reporting leadership, then frees the Lease at once so another replica
    /// takes over without waiting for it to expire (SIGTERM).
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the leader election task failed");
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Joins the election for [`LEASE_NAME`] in `namespace` as `identity` (see
/// [`identity`]). The Lease is created if missing; the election runs on its own task.
pub async fn start(
    client: Client,
    namespace: &str,
    identity: &str,
    params: LeaseTiming,
) -> Result<Leadership, LeaseError> {
    let timing = params.check()?;
    let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_field_manager(format!("{FIELD_MANAGER}-{identity}"))
        .with_duration(timing.duration)
        .with_grace(timing.renew_grace)
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .build()
        .await
        .map_err(|source| LeaseError::Manager { namespace: namespace.to_owned(), source })?;
    let (tx, rx) = watch::channel(Standing::default());
    let stop = CancellationToken::new();
    let election = Election {
        manager,
        api: Api::namespaced(client, namespace),
        identity: identity.to_owned(),
        timing,
        tx,
        stop: stop.clone(),
    };
    let task = tokio::spawn(election.run());
    Ok(Leadership { identity: identity.to_owned(), watcher: Watcher { rx, seen: false }, stop, task: Some(task) })
}

/// Our name in the election: the pod name (`POD_NAME`, from the downward API), unique
/// in the cluster; else the hostname with a random suffix, so two processes on one
/// machine never share it.
pub fn identity() -> String {
    let pod = std::env::var("POD_NAME").ok();
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok());
    identity_from(pod.as_deref(), host.as_deref(), &random_suffix())
}

fn identity_from(pod: Option<&str>, host: Option<&str>, suffix: &str) -> String {
    if let Some(pod) = pod.map(str::trim).filter(|p| !p.is_empty()) {
        return pod.to_owned();
    }
    let host = host.map(str::trim).filter(|h| !h.is_empty()).unwrap_or("apisix-canary");
    format!("{host}-{suffix}")
}

/// Eight hex digits from the process's random hash seed, the pid and the clock.
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(duration: u64, grace: u64) -> Result<Timing, LeaseError> {
        LeaseTiming { duration: Duration::from_secs(duration), grace: Duration::from_secs(grace) }.check()
    }

    #[test]
    fn the_manager_renews_between_our_cut_off_and_the_expiry() {
        let t = timing(15, 5).unwrap();
        assert_eq!((t.renew_grace, t.poll), (10, MAX_POLL), "renew at R+5s, stop at R+10s, expire at R+15s");
        let t = timing(3, 1).unwrap();
        assert_eq!((t.renew_grace, t.poll), (2, Duration::from_millis(250)), "renew at R+1s, stop at R+2s");
        assert!(matches!(timing(2, 1), Err(LeaseError::Timing(m)) if m.contains("at least grace (1s) + 2s")));
        assert!(timing(3, 0).is_err());
        let fractional = LeaseTiming { duration: Duration::from_millis(2500), grace: Duration::from_secs(1) };
        assert!(matches!(fractional.check(), Err(LeaseError::Timing(m)) if m.contains("whole number of seconds")));
        assert!(LeaseTiming::default().check().is_ok());
    }

    #[test]
    fn leading_needs_the_lease_and_a_recent_renewal() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert!(Standing { holding: true, until: Some(later), term: 1 }.leading(now));
        assert!(
            !Standing { holding: true, until: Some(later), term: 1 }.leading(later),
            "the cut-off itself is too late"
        );
        assert!(!Standing { holding: false, until: Some(later), term: 1 }.leading(now), "the manager lost it");
        assert!(!Standing { holding: true, until: None, term: 1 }.leading(now), "no renewal seen yet");
    }

    #[test]
    fn a_fence_trips_at_the_cut_off_and_with_a_new_term() {
        let now = Instant::now();
        let (tx, rx) = watch::channel(Standing { holding: true, until: Some(now + Duration::from_secs(60)), term: 1 });
        let watcher = Watcher { rx, seen: false };
        let fence = watcher.fence().expect("leading");
        assert!(fence.holds());
        // Lost, then led again: the first term's decisions are void.
        tx.send_replace(Standing { holding: false, until: None, term: 1 });
        assert!(!fence.holds() && watcher.fence().is_none());
        tx.send_replace(Standing { holding: true, until: Some(now + Duration::from_secs(60)), term: 2 });
        assert!(!fence.holds(), "a new term");
        assert!(watcher.fence().is_some_and(|f| f.holds()));
        // The cut-off passes with no word from the election task (a stopped process).
        tx.send_replace(Standing { holding: true, until: Some(Instant::now()), term: 2 });
        assert!(watcher.fence().is_none());
    }

    #[test]
    fn the_identity_is_the_pod_name_else_the_host_with_a_suffix() {
        assert_eq!(identity_from(Some("apisix-canary-7d9f-x2"), Some("node"), "0a1b2c3d"), "apisix-canary-7d9f-x2");
        assert_eq!(identity_from(Some(" "), Some("laptop\n"), "0a1b2c3d"), "laptop-0a1b2c3d");
        assert_eq!(identity_from(None, None, "0a1b2c3d"), "apisix-canary-0a1b2c3d");
        assert_ne!(random_suffix(), random_suffix());
        assert_eq!(random_suffix().len(), 8);
    }
}
