//! Leader election against the simulated cluster: one of two candidates leads and keeps
//! leading through its renewals, a released or dropped leader hands over within the
//! lease duration, and a leader cut off from the API server stops reporting leadership
//! before its Lease can expire for the others.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use apisix_canary::lease::{LEASE_NAME, Leadership, LeaseTiming, start};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;
use sim::Sim;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "apisix-canary";
/// Short, as the brief of the tests asks: renew at R+1s, stop at R+2s, expire at R+3s.
const TIMING: LeaseTiming = LeaseTiming { duration: Duration::from_secs(3), grace: Duration::from_secs(1) };

async fn cluster() -> Sim {
    let sim = Sim::start().await.unwrap();
    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})).await.unwrap();
    sim
}

async fn candidate(client: kube::Client, identity: &str) -> Leadership {
    start(client, NAMESPACE, identity, TIMING).await.unwrap()
}

/// Polls `f` every 10ms until it holds; false if `within` passes first.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// `f` holds on every 10ms sample for `period`.
async fn always(period: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if !f() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

fn stored_lease(sim: &Sim) -> Lease {
    serde_json::from_value(
        sim.cluster.get_raw("coordination.k8s.io", "leases", NAMESPACE, LEASE_NAME).unwrap().as_ref().clone(),
    )
    .unwrap()
}

fn holder(sim: &Sim) -> Option<String> {
    stored_lease(sim).spec.and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_candidates_leads_and_keeps_leading_through_renewals() {
    let sim = cluster().await;
    let (a, b) = tokio::join!(candidate(sim.client().unwrap(), "a"), candidate(sim.client().unwrap(), "b"));
    assert!(eventually(Duration::from_secs(3), || a.is_leader() || b.is_leader()).await, "nobody leads");
    let (leader, follower) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    assert_eq!(holder(&sim).as_deref(), Some(leader.identity()));
    // Three lease durations: several renewals, never two leaders, never a gap.
    assert!(
        always(Duration::from_secs(9), || leader.is_leader() && !follower.is_leader()).await,
        "leadership flapped or was shared: {} {}",
        a.is_leader(),
        b.is_leader()
    );
    let lease = stored_lease(&sim).spec.unwrap();
    assert_eq!(lease.lease_duration_seconds, Some(3));
    assert_eq!(lease.lease_transitions, Some(1), "acquired once, renewed since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_or_dropped_leader_hands_over_within_the_duration() {
    let sim = cluster().await;
    let a = candidate(sim.client().unwrap(), "a").await;
    assert!(eventually(Duration::from_secs(3), || a.is_leader()).await);
    let mut b = candidate(sim.client().unwrap(), "b").await;
    assert!(always(Duration::from_secs(1), || !b.is_leader()).await, "b leads while a holds the lease");

    let released = Instant::now();
    a.release().await;
    assert_eq!(holder(&sim), None, "released at once, not left to expire");
    assert!(tokio::time::timeout(TIMING.duration + Duration::from_millis(1500), b.changed()).await.unwrap());
    assert!(b.is_leader());
    assert!(released.elapsed() <= TIMING.duration + Duration::from_millis(1500), "{:?}", released.elapsed());
    assert_eq!(holder(&sim).as_deref(), Some("b"));

    // Dropped without release (a task that ends): the Lease is freed in the background.
    let c = candidate(sim.client().unwrap(), "c").await;
    let dropped = Instant::now();
    drop(b);
    assert!(eventually(TIMING.duration + Duration::from_millis(1500), || c.is_leader()).await);
    assert!(dropped.elapsed() <= TIMING.duration + Duration::from_millis(1500), "{:?}", dropped.elapsed());
}

/// A TCP forwarder to the API server that can be cut: its port refuses connections and
/// the open ones are closed, as when the API server goes away for one replica only.
struct Proxy {
    addr: SocketAddr,
    cut: CancellationToken,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut down, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        config.default_namespace = "default".to_owned();
        kube::Client::try_from(config).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_expires() {
    let sim = cluster().await;
    let upstream: SocketAddr = sim.api_url().trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let a = candidate(proxy.client(), "a").await;
    assert!(eventually(Duration::from_secs(3), || a.is_leader()).await);
    let b = candidate(sim.client().unwrap(), "b").await;
    // Renewals through the proxy work: a leads past its first cut-off.
    assert!(always(Duration::from_millis(2500), || a.is_leader() && !b.is_leader()).await);

    proxy.cut.cancel();
    assert!(eventually(TIMING.duration, || !a.is_leader()).await, "a still leads without an API server");
    let stopped = SystemTime::now();
    // Nothing can renew through the proxy any more: this is the last renewal.
    let lease = stored_lease(&sim).spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("a"));
    let renewed: SystemTime = lease.renew_time.unwrap().0.into();
    let cut_off = renewed + TIMING.duration - TIMING.grace;
    let expiry = renewed + TIMING.duration;
    assert!(
        stopped <= cut_off + Duration::from_millis(100),
        "stopped {:?} after the cut-off",
        stopped.duration_since(cut_off)
    );
    assert!(stopped < expiry);

    // b takes over once the Lease expired, and a never comes back meanwhile.
    let mut overlap = false;
    let took_over = eventually(Duration::from_secs(5), || {
        overlap |= a.is_leader();
        b.is_leader()
    })
    .await;
    assert!(took_over, "b never took over");
    assert!(!overlap, "a led again while cut off");
    assert!(SystemTime::now() >= expiry, "b took a Lease that had not expired");
    assert_eq!(holder(&sim).as_deref(), Some("b"));
    assert!(always(Duration::from_secs(1), || !a.is_leader() && b.is_leader()).await);
}
