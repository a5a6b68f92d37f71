//! The release controller: the I/O shell around `release::lifecycle::decide`.
//!
//! ```text
//!  watches (Canaries, Deployments, the generated Deployment, Service and route)
//!        │
//!        ▼
//!  reconcile(canary) ──observe──▶ Observed ──decide(now)──▶ actions ──act──▶ API writes, Events
//!        ▲                                   ├─RunChecks──▶ analysis (Prometheus) ─┤
//!        │                                   └─Call(kind)─▶ webhooks ──────────────┘  (alerts, event hooks: in the background)
//!        └──────────── requeue after the decision's delay, or on the next watch event
//! ```
//!
//! Two loops share one context: `deployments` keeps the Canary of each Deployment opted
//! in by annotations, `canaries` runs the releases. Only the leader reconciles; every
//! replica keeps its caches warm so a new leader starts at once.

mod act;
mod backoff;
mod canaries;
mod checks;
mod echoes;
mod events;
mod hooks;
mod index;
mod metrics;
mod observe;
mod watches;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};

pub use self::canaries::annotation_mode;
pub use self::metrics::Metrics;
pub use self::watches::Cached;
use crate::api::apisix_route::ApisixRoute;
use crate::api::canary::v1beta1::Canary;
use crate::lease::Watcher;
use crate::runtime::Runtime;

/// The field manager of every write, and the reporting component of every Event.
pub const MANAGER: &str = "apisix-canary";
/// Held on every Canary so its deletion ends a running release safely (route to
/// stable first) instead of leaving the order to the garbage collector.
pub const FINALIZER: &str = "apisix-canary.dev/release";
/// How long running reconciles may take to finish after the stop.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The default `--max-concurrent-reconciles`.
pub const DEFAULT_CONCURRENCY: u16 = 256;
/// The readiness gate of the controller: its caches have synced.
pub const CACHES_GATE: &str = "caches synced";

/// What the controller needs besides the cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// The default Prometheus of the built-in metrics.
    pub prometheus_url: String,
    /// How long one batched answer of the built-in metrics serves every release
    /// (`--prometheus-max-age`); zero sends each release's own queries instead.
    pub prometheus_max_age: Duration,
    /// Releases reconciled at once (`--max-concurrent-reconciles`); 0 is unbounded.
    pub concurrency: u16,
    /// This replica's name in Events and the Lease.
    pub identity: String,
    /// Host names looked up here first (`--resolve`), for a controller outside the cluster.
    pub resolver: crate::analysis::http::Resolver,
    /// Namespaces our Deployment webhooks never see (kube-system and ours): a Deployment
    /// opted in there gets no Canary, since none of its releases could be intercepted.
    pub excluded_namespaces: Vec<String>,
}

impl Config {
    /// The namespaces the webhook configurations exclude, for a server in `own`.
    pub fn excluded(own: &str) -> Vec<String> {
        vec![crate::manifests::SYSTEM_NAMESPACE.to_owned(), own.to_owned()]
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    /// Queues the releases' Events (reports: never waited on).
    pub events: events::Reporter,
    pub config: Config,
    pub metrics: Metrics,
    /// Whether this replica may write: it holds the Lease, recently renewed.
    pub leader: Watcher,
    /// Calls the releases' webhooks.
    pub hooks: crate::analysis::hooks::Caller,
    /// The built-in metrics of every release in one query per family and window; `None`
    /// with a zero max age (or a Prometheus URL that every check reports as invalid).
    pub batcher: Option<crate::analysis::Batcher>,
    /// When each release's next step falls due, as its last reconcile scheduled it.
    pub ticks: Ticks,
    /// The watch events of our own writes, recognized so they need no reconcile.
    pub echoes: echoes::Echoes,
    /// Which Canaries name which Deployments, Services and routes.
    pub index: index::Index,
}

/// When each release (by `namespace/name`) is due next, to measure how late its
/// reconcile writes (`apisix_canary_tick_lag_seconds`).
#[derive(Debug, Default)]
pub struct Ticks(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl Ticks {
    /// The due time `key` had, forgotten: a reconcile consumes it.
    fn take(&self, key: &str) -> Option<std::time::Instant> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key)
    }

    /// The due time `key` has, kept.
    fn peek(&self, key: &str) -> Option<std::time::Instant> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).copied()
    }

    fn schedule(&self, key: String, at: std::time::Instant) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, at);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube { action: String, source: kube::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Finalizer(String),
    /// The leadership the reconcile decided under ended: nothing more is written.
    #[error("the leadership this reconcile decided under has ended; its writes are dropped")]
    Fenced,
}

impl Error {
    fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

/// Runs both loops under `runtime` until it stops. `leader` says when this replica may
/// write; the loops run on every replica so their caches are warm. `client` makes the
/// reads and writes, `watches` the watches (the same client will do where requests
/// have no timeout).
pub fn spawn(runtime: &Runtime, client: Client, watches: Client, config: Config, leader: Watcher) -> Result<(), Error> {
    let hooks = crate::analysis::hooks::Caller::new(&config.resolver)
        .map_err(|e| Error::Invalid(format!("building the webhook client: {e}")))?;
    let (recorder, events, queue) = events::Events::new(client.clone(), MANAGER, &config.identity);
    let stop_events = runtime.stopping();
    runtime.spawn(async move {
        tokio::select! {
            () = recorder.run(queue) => {}
            () = stop_events.cancelled() => {}
        }
    });
    let metrics = runtime.register(Metrics::register);
    let (ticks, batcher) = (Ticks::default(), batcher(&config, &metrics));
    let echoes = echoes::Echoes::default();
    let index = index::Index::default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        events,
        config,
        metrics,
        leader,
        hooks,
        batcher,
        ticks,
        echoes,
        index,
    });
    let gate = runtime.gate(CACHES_GATE);
    let stop = runtime.stopping();

    // One watch of each kind both loops read, shared (see `watches`).
    let canaries = watches::shared::<Canary>(Api::all(watches.clone()), 2);
    let deployments = watches::shared::<Deployment>(Api::all(watches.clone()), 2);
    let (canary_store, deployment_store) = (canaries.store, deployments.store);
    let (mut canary_feeds, mut deployment_feeds) = (canaries.feeds, deployments.feeds);
    let (Some(canaries_for_releases), Some(canaries_for_opt_ins)) = (canary_feeds.pop(), canary_feeds.pop()) else {
        return Err(Error::Invalid("the Canary store gave no subscription".into()));
    };
    let (Some(deployments_for_releases), Some(deployments_for_opt_ins)) =
        (deployment_feeds.pop(), deployment_feeds.pop())
    else {
        return Err(Error::Invalid("the Deployment store gave no subscription".into()));
    };
    let (stop_canaries, stop_deployments) = (runtime.stopping(), runtime.stopping());
    runtime.spawn(async move {
        tokio::select! {
            () = canaries.watch => {}
            () = stop_canaries.cancelled() => {}
        }
    });
    runtime.spawn(async move {
        tokio::select! {
            () = deployments.watch => {}
            () = stop_deployments.cancelled() => {}
        }
    });

    // A Deployment's change concerns the Canary it opts in by annotation, the Canaries
    // that name it as their target (`index`), and the one that owns it (a canary copy).
    let by_target = ctx.clone();
    let generated = watches::generated();
    let releases = Controller::for_shared_stream(canaries_for_releases, canary_store.clone())
        .watches_shared_stream(
            deployments_for_releases,
            noted(&ctx, move |d: &Cached<Deployment>| {
                let mut found: Vec<_> = canaries::canary_of_deployment(d).into_iter().collect();
                found.extend(by_target.index.readers(d.meta().namespace.as_deref(), &d.name_any()));
                found.extend(owners(d));
                found
            }),
        )
        // Our generated Services and routes, by their owner.
        .watches(Api::<Cached<Service>>::all(watches.clone()), generated.clone(), noted(&ctx, owners))
        .watches(Api::<Cached<ApisixRoute>>::all(watches.clone()), generated, noted(&ctx, owners))
        .with_config(controller::Config::default().concurrency(ctx.config.concurrency))
        .trigger_backoff(backoff::WatchBackoff::default())
        .graceful_shutdown_on(stop.clone().cancelled_owned());
    let releases = releases.run(reconcile, error_policy, ctx.clone());

    // A deleted annotation-mode Canary is made again: it is owned by its Deployment.
    let opt_ins = Controller::for_shared_stream(deployments_for_opt_ins, deployment_store.clone())
        .owns_shared_stream(canaries_for_opt_ins)
        .trigger_backoff(backoff::WatchBackoff::default())
        .graceful_shutdown_on(stop.cancelled_owned());
    let opt_ins = opt_ins.run(canaries::reconcile_deployment, canaries::error_policy, ctx);
    let (releases_store, opt_ins_store) = (canary_store, deployment_store);

    let (stopping, stopping_loops) = (runtime.stopping(), runtime.stopping());
    runtime.spawn(async move {
        // Ends with the runtime too: without our CRDs the caches never sync.
        tokio::select! {
            () = async {
                synced(&releases_store).await;
                synced(&opt_ins_store).await;
            } => {
                gate.open();
                tracing::info!("controller caches synced");
            }
            () = stopping.cancelled() => {}
        }
    });
    runtime.spawn(async move {
        let canaries = releases.for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "canary reconcile ended with an error");
            }
        });
        let deployments = opt_ins.for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "deployment reconcile ended with an error");
            }
        });
        // A graceful stop lets running reconciles finish, but kube-runtime also waits
        // for requeues scheduled minutes ahead: after a short grace the loops are
        // dropped. Nothing is lost: every release resumes from its status.
        tokio::select! {
            _ = async { tokio::join!(canaries, deployments) } => {}
            () = async {
                stopping_loops.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => {}
        }
        tracing::info!("controller stopped");
    });
    Ok(())
}

/// The key of a release: its Canary's `namespace/name`.
fn key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// The Canaries that own `child` (what `Controller::owns` maps).
fn owners<C: Resource>(child: &C) -> Vec<ObjectRef<Cached<Canary>>> {
    let ns = child.meta().namespace.as_deref();
    child.owner_references().iter().filter_map(|o| ObjectRef::from_owner_ref(ns, o, ())).collect()
}

/// `map` (the Canaries a change of a child concerns), each told of the change so the
/// echo of our own writes is known from others' (see `echoes`). Takes the object as
/// a watch or a shared store hands it over.
fn noted<C: Resource, O: std::borrow::Borrow<C>>(
    ctx: &Arc<Context>,
    map: impl Fn(&C) -> Vec<ObjectRef<Cached<Canary>>> + Send + Sync + 'static,
) -> impl Fn(O) -> Vec<ObjectRef<Cached<Canary>>> + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |child| {
        let child = child.borrow();
        let canaries = map(child);
        let (uid, rv) = (child.meta().uid.as_deref(), child.meta().resource_version.as_deref());
        for canary in &canaries {
            ctx.echoes.seen(&key(canary.namespace.as_deref(), &canary.name), uid, rv);
        }
        canaries
    }
}

/// The batcher of `config`, counting its queries in `metrics`.
fn batcher(config: &Config, metrics: &Metrics) -> Option<crate::analysis::Batcher> {
    use crate::analysis::prometheus::{Prometheus, QUERY_TIMEOUT};
    if config.prometheus_max_age.is_zero() {
        return None;
    }
    let options = crate::analysis::http::Options { resolver: Some(&config.resolver), ..Default::default() };
    // An invalid URL is reported by each check, as without batching.
    let prometheus = Prometheus::with(&config.prometheus_url, QUERY_TIMEOUT, &options).ok()?;
    let prometheus = prometheus.counted(metrics.prometheus_queries(metrics::BUILTIN_BATCH));
    Some(crate::analysis::Batcher::new(prometheus, config.prometheus_max_age))
}

/// Resolves once `store` has had its first full list. Asked again every 100 ms: a
/// `wait_until_ready` that starts before the first list (the CRD not installed yet, the
/// watcher retrying) was seen never to wake with kube-runtime 5, though the store fills.
async fn synced<K>(store: &kube::runtime::reflector::Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await.is_ok() {
            return;
        }
    }
}

/// One release: observe, decide, act; again at once when the analysis is due.
async fn reconcile(canary: Arc<Cached<Canary>>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    tracing::debug!(canary = %canary.name_any(), "reconcile");
    let key = key(canary.namespace().as_deref(), &canary.name_any());
    let Some(fence) = ctx.leader.fence() else {
        // Another replica may write meanwhile: nothing we wrote is known to be the last.
        ctx.echoes.forget(&key);
        return Ok(Requeue::requeue(Duration::from_secs(2)));
    };
    let started = std::time::Instant::now();
    // The watch echo of our own last writes, nothing due before the next step: no read.
    if let Some(due) = ctx.ticks.peek(&key).filter(|due| *due > started)
        && ctx.echoes.skip(&key, canary.resource_version().as_deref())
    {
        tracing::debug!(canary = %key, due_in_ms = (due - started).as_millis() as u64, "echo of our own writes");
        ctx.metrics.skipped_reconcile();
        return Ok(Requeue::requeue(due - started));
    }
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    // The Canary as our last write returned it, when nobody changed it since; else read
    // afresh: the cache may not hold our last status write yet, and a decision on an
    // older status than the objects read next would repeat a step.
    let canary = match ctx.echoes.canary(&key, canary.resource_version().as_deref()) {
        Some(written) => written,
        None => match api.get_opt(&canary.name_any()).await.map_err(Error::kube("reading the Canary"))? {
            Some(canary) => canary,
            None => return Ok(Requeue::await_change()),
        },
    };
    let canary = Arc::new(canary);
    let result = finalizer(&api, FINALIZER, canary.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(c) => act::reconcile(&c, &ctx, &fence).await,
            FinalizerEvent::Cleanup(c) => act::cleanup(&c, &ctx, &fence).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()));
    ctx.metrics.observe_duration(&canary.name_any(), &canary.namespace().unwrap_or_default(), started.elapsed());
    result
}

fn error_policy(canary: Arc<Cached<Canary>>, error: &Error, _: Arc<Context>) -> Requeue {
    let id = format!("{}.{}", canary.name_any(), canary.namespace().unwrap_or_default());
    match error {
        // Not a failure: another replica leads now, or will.
        Error::Fenced => tracing::info!(canary = %id, "{error}"),
        _ => tracing::warn!(canary = %id, error = %error, "reconcile failed; retrying"),
    }
    Requeue::requeue(Duration::from_secs(2))
}
