//! The invariant observer: watches the sim through its API, as any client would, for
//! the whole of an e2e test, and writes down every moment a promise to the user is
//! broken. [`World`](super::World) starts one and fails the test that broke one.
//!
//! Checked on every change seen:
//! - the generated route's split: its weights sum to 100 (so the stable side is 0 only
//!   when the canary has it all), and the canary's weight never goes back within one
//!   analysis (it may only drop to 0: rollback, restart, end);
//! - each step's Advance once: while the Canary is Progressing, a raise of the canary
//!   weight goes to the plan's next step, never above maxWeight, and at least half an
//!   interval after the raise before (a change seen only through a relist is not timed);
//! - a Deployment under our lock (the stable-revision annotation) is paused only while
//!   its Canary's status says why: a phase of a release in progress, or Failed (paused
//!   on the failed template), within [`GRACE`] of the pause (the webhook pauses, the
//!   controller then writes the status);
//! - a revision that rolled out past the webhook (no lock, not paused, not the revision
//!   last promoted, the Canary idle) is reported by its Canary within [`GRACE`];
//! - nothing a Succeeded or Failed Canary owns (canary Deployment, Service, route)
//!   outlives it by more than [`GRACE`].
//!
//! And once the test is over, from the sim's audit log: one replica writes at a time
//! ([`one_writer`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apisix_canary::api::canary::v1beta1;
use apisix_canary::release::plan::Plan;
use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

/// How long the cluster may take to agree with itself (a status written after the
/// pause, objects deleted after the phase).
pub const GRACE: Duration = Duration::from_secs(5);

/// Phases in which a Canary explains a paused Deployment.
const EXPLAINING: &[&str] =
    &["Initializing", "Waiting", "Progressing", "WaitingPromotion", "Promoting", "Finalising", "Failed"];
const ENDED: &[&str] = &["Succeeded", "Failed"];
/// Phases of a Canary with no release under way.
const IDLE: &[&str] = &["Initialized", "Succeeded", "Failed"];
/// How a Canary reports a release that the webhook did not intercept.
const NOT_INTERCEPTED: &str = "not intercepted";

#[derive(Default)]
struct State {
    /// Objects by kind, then `namespace/name`.
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// The canary weight last seen on each generated route (by uid), with when it last
    /// went up, and whether it was seen without a gap since (no relist in between).
    weights: BTreeMap<String, Seen>,
    /// Since when each locked Deployment has been paused without a reason, by key.
    unexplained: BTreeMap<String, Instant>,
    /// Since when each Deployment has run a revision that slipped past the webhook without
    /// its Canary saying so, by key.
    slipped: BTreeMap<String, Instant>,
    /// Since when each (Canary uid, generated object) has outlived its ended Canary.
    left: BTreeMap<(String, String), Instant>,
    violations: BTreeSet<String>,
    changes: u64,
    /// [`GRACE`] unless a test widens it.
    grace: Option<Duration>,
    /// The highest canary weight seen on any generated route.
    top_weight: u64,
}

/// A generated route's canary weight as last seen.
#[derive(Clone, Copy)]
struct Seen {
    weight: u64,
    raised: Option<Instant>,
    /// Every change since `raised` was seen (no relist in between).
    sure: bool,
}

#[derive(Clone)]
pub struct Observer {
    state: Arc<Mutex<State>>,
    stop: tokio_util::sync::CancellationToken,
}

const KINDS: &[(&str, &str, &str, &str)] = &[
    ("Deployment", "apps", "v1", "deployments"),
    ("Service", "", "v1", "services"),
    ("ApisixRoute", "apisix.apache.org", "v2", "apisixroutes"),
    ("Canary", "apisix-canary.dev", "v1beta1", "canaries"),
];

impl Observer {
    /// Starts watching the cluster of `kubeconfig` on a thread of its own.
    pub fn start(kubeconfig: &Path) -> Self {
        let observer = Observer { state: Arc::default(), stop: Default::default() };
        let (me, kubeconfig) = (observer.clone(), kubeconfig.to_owned());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(me.run(&kubeconfig));
        });
        observer
    }

    async fn run(self, kubeconfig: &Path) {
        let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(config, &options).await.unwrap();
        let client = Client::try_from(config).unwrap();
        let watches = KINDS.iter().map(|&(kind, group, version, plural)| {
            let resource = ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: if group.is_empty() { version.into() } else { format!("{group}/{version}") },
                kind: kind.into(),
                plural: plural.into(),
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            // A kind not installed yet (the Canary CRD) is retried until it is.
            let events = watcher(api, watcher::Config::default()).default_backoff();
            let me = self.clone();
            async move {
                let mut events = std::pin::pin!(events);
                // A relist (after a cut or 410 Gone watch) says nothing of the objects
                // deleted meanwhile: what it lists replaces what was known.
                let mut listed = Vec::new();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::Apply(o)) => me.seen(kind, o, false),
                        Ok(watcher::Event::Delete(o)) => me.seen(kind, o, true),
                        Ok(watcher::Event::Init) => listed.clear(),
                        Ok(watcher::Event::InitApply(o)) => listed.push(o),
                        Ok(watcher::Event::InitDone) => me.relisted(kind, std::mem::take(&mut listed)),
                        Err(_) => {}
                    }
                }
            }
        });
        let ticks = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.check_timed();
            }
        };
        tokio::select! {
            _ = futures_util::future::join_all(watches) => {}
            _ = ticks => {}
            _ = self.stop.cancelled() => {}
        }
    }

    fn seen(&self, kind: &'static str, object: DynamicObject, deleted: bool) {
        let value = serde_json::to_value(&object).unwrap();
        let key =
            format!("{}/{}", object.metadata.namespace.unwrap_or_default(), object.metadata.name.unwrap_or_default());
        let mut state = self.state.lock().unwrap();
        state.changes += 1;
        if kind == "ApisixRoute" && !deleted {
            check_split(&mut state, &key, &value);
        }
        let objects = state.objects.entry(kind).or_default();
        if deleted {
            objects.remove(&key);
        } else {
            objects.insert(key, value);
        }
    }

    fn relisted(&self, kind: &'static str, objects: Vec<DynamicObject>) {
        let keys: BTreeSet<String> = objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o.metadata.namespace.as_deref().unwrap_or_default(),
                    o.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        let mut state = self.state.lock().unwrap();
        state.objects.entry(kind).or_default().retain(|k, _| keys.contains(k));
        if kind == "ApisixRoute" {
            // Changes may have been missed: the next one is a new reference.
            state.weights.values_mut().for_each(|s| s.sure = false);
        }
        drop(state);
        for o in objects {
            self.seen(kind, o, false);
        }
    }

    /// The invariants that hold once the cluster has had [`GRACE`] to settle.
    fn check_timed(&self) {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        let grace = state.grace.unwrap_or(GRACE);
        let empty = BTreeMap::new();
        let canaries = state.objects.get("Canary").unwrap_or(&empty).clone();
        let phase = |c: &Value| c.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_owned();
        // Paused under our lock: the Canary says why.
        let mut unexplained = Vec::new();
        for (key, d) in state.objects.get("Deployment").unwrap_or(&empty) {
            let locked = d.pointer("/metadata/annotations/apisix-canary.dev~1stable-revision").is_some();
            let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
            if !(locked && paused) {
                continue;
            }
            let (namespace, name) = key.split_once('/').unwrap();
            let explained = canaries.values().any(|c| {
                c.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                    && c.pointer("/spec/targetRef/name").and_then(Value::as_str) == Some(name)
                    && EXPLAINING.contains(&phase(c).as_str())
            });
            if !explained {
                unexplained.push(key.clone());
            }
        }
        state.unexplained.retain(|k, _| unexplained.contains(k));
        for key in unexplained {
            let since = *state.unexplained.entry(key.clone()).or_insert(now);
            if now - since > grace {
                let phases: Vec<String> = canaries.values().map(phase).collect();
                state.violations.insert(format!(
                    "Deployment {key} paused under the lock for over {grace:?} without a Canary status saying why (phases: {phases:?})"
                ));
            }
        }
        // Not locked, not paused, not the revision last promoted, and the Canary idle: the
        // template changed past the webhook (down, failurePolicy Ignore). Its Canary says so.
        // Or resumed under our lock, which the webhook never lets happen: the controller
        // must report it and let the lock go.
        let mut slipped = Vec::new();
        for (key, d) in state.objects.get("Deployment").unwrap_or(&empty) {
            let locked = d.pointer("/metadata/annotations/apisix-canary.dev~1stable-revision").is_some();
            let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
            let (namespace, name) = key.split_once('/').unwrap();
            let canary = canaries.values().find(|c| {
                c.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                    && c.pointer("/spec/targetRef/name").and_then(Value::as_str) == Some(name)
            });
            let unreported =
                canary.filter(|c| !locked && !paused && IDLE.contains(&phase(c).as_str())).is_some_and(|c| {
                    let promoted = c.pointer("/status/lastPromotedSpec").and_then(Value::as_str);
                    let reported = c.get("status").is_some_and(|s| s.to_string().contains(NOT_INTERCEPTED));
                    promoted.is_some_and(|p| p != revision(d)) && !reported
                });
            if unreported || (locked && !paused) {
                slipped.push(key.clone());
            }
        }
        state.slipped.retain(|k, _| slipped.contains(k));
        for key in slipped {
            let since = *state.slipped.entry(key.clone()).or_insert(now);
            if now - since > grace {
                state.violations.insert(format!(
                    "Deployment {key} rolled out a revision past the webhook (unlocked, or resumed under the lock) and was \
                     not reported and released within {grace:?}"
                ));
            }
        }
        // Ended: nothing generated left behind for longer than the grace (a release that
        // starts makes its objects a moment before its status says so).
        let ended: BTreeMap<String, String> = canaries
            .values()
            .map(|c| (c.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned(), phase(c)))
            .filter(|(_, p)| ENDED.contains(&p.as_str()))
            .collect();
        // The apex Service a Canary generates from `spec.service` lives as long as it.
        let apex: BTreeSet<(String, String)> = canaries
            .values()
            .map(|c| {
                let text = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
                let name = Some(text("/spec/service/name")).filter(|n| !n.is_empty());
                (text("/metadata/uid"), name.unwrap_or_else(|| text("/spec/targetRef/name")))
            })
            .collect();
        let mut left = BTreeMap::new();
        for (kind, objects) in &state.objects {
            for (key, o) in objects {
                let refs = o.pointer("/metadata/ownerReferences").and_then(Value::as_array);
                let owner = refs.into_iter().flatten().find_map(|r| {
                    let uid = r["uid"].as_str().filter(|_| r["kind"] == "Canary")?;
                    ended.get(uid).map(|p| (uid, p))
                });
                let going = o.pointer("/metadata/deletionTimestamp").is_some();
                let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
                let kept = |uid: &str| *kind == "Service" && apex.contains(&(uid.to_owned(), name.to_owned()));
                if let Some((uid, p)) = owner.filter(|(uid, _)| !going && !kept(uid)) {
                    let since = state.left.get(&(uid.to_owned(), format!("{kind} {key}"))).copied().unwrap_or(now);
                    left.insert((uid.to_owned(), format!("{kind} {key}")), (since, p.clone()));
                }
            }
        }
        state.left = left.iter().map(|(k, (since, _))| (k.clone(), *since)).collect();
        for ((_, what), (since, p)) in left {
            if now - since > grace {
                state.violations.insert(format!("{what} still exists over {grace:?} while its Canary is {p}"));
            }
        }
    }

    /// Gives the cluster longer to agree with itself (a test that makes writes fail, so
    /// they are retried after a backoff).
    pub fn set_grace(&self, grace: Duration) {
        self.state.lock().unwrap().grace = Some(grace);
    }

    /// Every broken promise seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.iter().cloned().collect()
    }

    /// The object of `kind` at `namespace/name` as the observer last saw it.
    pub fn object(&self, kind: &str, key: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(kind)?.get(key).cloned()
    }

    /// How many changes the observer has seen: it is not blind.
    pub fn changes(&self) -> u64 {
        self.state.lock().unwrap().changes
    }

    /// The highest canary weight it saw a generated route give.
    pub fn top_weight(&self) -> u64 {
        self.state.lock().unwrap().top_weight
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The weighted split of a generated route (owned by a Canary), on every change.
fn check_split(state: &mut State, key: &str, route: &Value) {
    let owned = route
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["kind"] == "Canary"));
    if !owned {
        return;
    }
    let uid = route.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let rules = route.pointer("/spec/http").and_then(Value::as_array).cloned().unwrap_or_default();
    for rule in rules {
        let backends = rule["backends"].as_array().cloned().unwrap_or_default();
        // A sticky release's cookie rules send all or nothing: their own check, not steps.
        let name = rule["name"].as_str().unwrap_or_default();
        if name.ends_with("-sticky-canary") || name.ends_with("-sticky-stable") {
            let canary: u64 = backends
                .iter()
                .filter(|b| b["serviceName"].as_str().unwrap_or_default().ends_with("-canary"))
                .map(|b| b["weight"].as_u64().unwrap_or(0))
                .sum();
            let allowed: &[u64] = if name.ends_with("-sticky-stable") { &[0] } else { &[0, 100] };
            if !allowed.contains(&canary) {
                let rv = route.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
                state
                    .violations
                    .insert(format!("route {key} at {rv}: cookie rule {name} sends {canary} to the canary"));
            }
            continue;
        }
        let weight = |canary: bool| -> u64 {
            backends
                .iter()
                .filter(|b| b["serviceName"].as_str().unwrap_or_default().ends_with("-canary") == canary)
                .map(|b| b["weight"].as_u64().unwrap_or(0))
                .sum()
        };
        let (stable, canary) = (weight(false), weight(true));
        let rv = route.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
        if stable + canary != 100 {
            state.violations.insert(format!("route {key} at {rv}: weights {stable} + {canary} do not sum to 100"));
        }
        state.top_weight = state.top_weight.max(canary);
        let now = Instant::now();
        let last = state.weights.get(&uid).copied().unwrap_or(Seen { weight: 0, raised: None, sure: false });
        if canary < last.weight && canary != 0 {
            state
                .violations
                .insert(format!("route {key} at {rv}: the canary weight went back from {} to {canary}", last.weight));
        }
        // A raise seen only in a relist happened at some unknown time before.
        let raised = match (canary > last.weight, last.sure) {
            (true, true) => Some(now),
            (true, false) => None,
            (false, _) => last.raised.filter(|_| canary > 0),
        };
        state.weights.insert(uid.clone(), Seen { weight: canary, raised, sure: true });
        if canary > last.weight
            && let Some((plan, phase)) = owner_plan(state, route)
            && matches!(phase.as_str(), "Progressing" | "WaitingPromotion")
        {
            check_step(state, key, rv, &plan, last, canary, now);
        }
    }
}

/// The analysis and phase of the Canary owning `route`, when seen.
fn owner_plan(state: &State, route: &Value) -> Option<(Plan, String)> {
    let refs = route.pointer("/metadata/ownerReferences").and_then(Value::as_array)?;
    let uid = refs.iter().find(|r| r["kind"] == "Canary")?["uid"].as_str()?;
    let canary = state.objects.get("Canary")?.values().find(|c| c.pointer("/metadata/uid") == Some(&json!(uid)))?;
    let phase = canary.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_owned();
    let typed: v1beta1::Canary = serde_json::from_value(canary.clone()).ok()?;
    let (plan, _) = Plan::from_canary(&typed.spec).ok()?;
    Some((plan, phase))
}

/// Each step's Advance once: a raise goes to the next step of the plan (never above
/// maxWeight), and, after the first step, an interval after the last raise.
fn check_step(state: &mut State, key: &str, rv: &str, plan: &Plan, last: Seen, canary: u64, now: Instant) {
    let max = u64::from(plan.max_weight);
    if canary > max {
        state.violations.insert(format!("route {key} at {rv}: canary weight {canary} above maxWeight {max}"));
    }
    if !last.sure {
        return;
    }
    let from = u32::try_from(last.weight).unwrap_or(u32::MAX);
    let next = plan.next_weight(from).map(u64::from);
    if next != Some(canary) {
        state.violations.insert(format!(
            "route {key} at {rv}: the canary weight went from {from} to {canary}, not to the next step {next:?}"
        ));
    }
    // An interval apart, less a margin for the writes' and the watch's own delays on a
    // loaded machine (a CI run saw 1.595 s for 2 s); a step taken twice is ~0 s apart.
    let least = plan.interval.mul_f64(0.5);
    if let Some(raised) = last.raised.filter(|_| last.weight > 0)
        && now - raised < least
    {
        let gap = now - raised;
        state.violations.insert(format!(
            "route {key} at {rv}: advanced to {canary} {gap:?} after the step to {from}, within one interval ({:?})",
            plan.interval
        ));
    }
}

/// The revision of a Deployment's template, as the controller computes it.
pub fn revision(d: &Value) -> String {
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(d.clone()).unwrap_or_default();
    let template = serde_json::to_value(typed.spec.map(|s| s.template)).unwrap_or_default();
    apisix_canary::release::revision::Revision::of_template(&template).to_string()
}

/// The least time between the last write of one replica and the first of the next
/// when the writer changes and changes back: a leader that lost the Lease can take it
/// again only after the other's has expired, seconds later.
const HANDOVER: Duration = Duration::from_secs(2);
/// Writes of two replicas closer than this, one after the other, were made at once.
const AT_ONCE: Duration = Duration::from_millis(100);

/// One leader writes at any time: in the sim's audit log, serve's writes (not to its
/// Lease, and not the Secret any replica may create at start), ordered by when they
/// were received, change replica only at a handover: never within [`AT_ONCE`], and
/// never back and forth (A, B, A) within [`HANDOVER`]. The replica is the last word of
/// serve's User-Agent.
pub fn one_writer(audit: &str) -> Vec<String> {
    let mut writes: Vec<(k8s_openapi::jiff::Timestamp, String, String)> = Vec::new();
    for line in audit.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        let agent = event["userAgent"].as_str().unwrap_or_default();
        let Some((_, identity)) = agent.split_once("(serve) ") else { continue };
        let verb = event["verb"].as_str().unwrap_or_default();
        let resource = event.pointer("/objectRef/resource").and_then(Value::as_str).unwrap_or_default();
        let write = matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection");
        if !write || resource == "leases" || (resource == "secrets" && verb == "create") {
            continue;
        }
        let Some(at) = event["requestReceivedTimestamp"].as_str().and_then(|t| t.parse().ok()) else { continue };
        let name = event.pointer("/objectRef/name").and_then(Value::as_str).unwrap_or_default();
        writes.push((at, identity.to_owned(), format!("{verb} {resource} {name}")));
    }
    writes.sort();
    // Runs of one replica's writes: (replica, first, last).
    let mut runs: Vec<(&str, usize, usize)> = Vec::new();
    for (i, (_, who, _)) in writes.iter().enumerate() {
        match runs.last_mut() {
            Some((last, _, end)) if *last == who.as_str() => *end = i,
            _ => runs.push((who, i, i)),
        }
    }
    let gap = |a: usize, b: usize| writes[b].0.duration_since(writes[a].0).unsigned_abs();
    let said = |i: usize| format!("{} ({} at {})", writes[i].1, writes[i].2, writes[i].0);
    let mut broken = Vec::new();
    for pair in runs.windows(2) {
        let [(_, _, end), (_, start, _)] = pair else { continue };
        if gap(*end, *start) < AT_ONCE {
            broken.push(format!("two replicas wrote at once: {}, then {}", said(*end), said(*start)));
        }
    }
    for three in runs.windows(3) {
        let [(a, _, end), (_, start, end2), (c, start2, _)] = three else { continue };
        if a == c && (gap(*end, *start) < HANDOVER || gap(*end2, *start2) < HANDOVER) {
            broken.push(format!(
                "two replicas wrote in turn: {}, then {}, then {} again",
                said(*end),
                said(*start),
                said(*start2)
            ));
        }
    }
    broken
}
