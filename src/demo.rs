//! `apisix-canary demo`: SCENARIO.md played on the simulated cluster, in process.
//!
//! ```text
//!  sim (API server, workloads, gateway, load tester, real Prometheus)
//!    ▲ webhooks (testbed::install)      ▲ controller (lease + controller::spawn, one Runtime)
//!    │                                  │
//!  acts: kubectl-like writes ──▶ the release runs ──▶ observe (Canary status, Events,
//!        load tester curls                             canary-only PromQL) ──▶ show (stdout)
//! ```
//!
//! Each act releases a new image and must end as the scenario says; the summary and
//! the exit status say whether it did.

mod acts;
mod needs;
mod observe;
pub mod scenario;
pub mod show;

use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use serde_json::Value;
use sim::{Options, Sim};

use self::scenario::Act;
use crate::analysis::http::Resolver;
use crate::analysis::prometheus::{Prometheus, QUERY_TIMEOUT};
use crate::runtime::Runtime;
use crate::testbed;

/// Where the leader-election Lease lives, as `serve` defaults it.
const CONTROLLER_NAMESPACE: &str = crate::manifests::DEFAULT_NAMESPACE;
/// The Deployment the sim runs (in the controller's namespace) for our in-process server
/// and controller: its pod's log is theirs.
const SERVER_DEPLOYMENT: &str = crate::manifests::DEFAULT_SERVICE;
/// How long the cast may take to roll out and its Canary to initialize.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one act may run before it counts as differing.
pub const ACT_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the release is observed.
const POLL: Duration = Duration::from_millis(250);
/// Timeout of the demo's own HTTP calls (the load tester).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// The load tester's Service name, as the scenario's webhooks call it.
const LOADTESTER_HOST: &str = "flagger-loadtester.test";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting the simulated cluster: {0}")]
    Sim(#[from] sim::SimError),
    /// What is missing and the command that installs it ([`needs`]).
    #[error("{0}")]
    NoPrometheus(String),
    #[error("installing our webhooks: {0}")]
    Install(#[from] testbed::InstallError),
    #[error("starting leader election in namespace {CONTROLLER_NAMESPACE}: {0}")]
    Lease(#[from] crate::lease::LeaseError),
    #[error("starting the controller: {0}")]
    Controller(#[from] crate::controller::Error),
    #[error(transparent)]
    Manifest(#[from] scenario::ManifestError),
    #[error("{action}: {source}")]
    Kube { action: String, source: kube::Error },
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Prometheus(#[from] crate::analysis::QueryError),
    #[error("{0}")]
    Timeout(String),
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("the report of act {act}: {source}")]
    Report { act: u8, source: Box<dyn std::error::Error + Send + Sync> },
}

impl DemoError {
    fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| DemoError::Kube { action, source }
    }
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// One act only (from a freshly initialized Canary); all three by default.
    pub act: Option<Act>,
    /// Leave the cluster and the controller running at the end, until Ctrl-C.
    pub keep: bool,
    /// The Prometheus binary (default: the Debian package's, or `prometheus` on PATH).
    pub prometheus_bin: Option<PathBuf>,
    /// Write each act's report (`act-N.svg`, `act-N.html`) into this directory.
    pub report: Option<PathBuf>,
}

/// The simulated cluster with our webhooks and controller, and the demo's clients.
pub(crate) struct World {
    // Dropped last: the controller and webhooks stop before the cluster.
    pub sim: Sim,
    pub webhook: testbed::Installed,
    pub runtime: Runtime,
    pub leadership: crate::lease::Leadership,
    pub client: Client,
    pub prometheus: Prometheus,
    pub prometheus_url: String,
    /// Calls `http://flagger-loadtester.test/` as the controller does.
    pub http: reqwest::Client,
    /// Redraw the live line in place (stdout is a terminal).
    pub tty: bool,
}

impl World {
    async fn start(settings: &Settings) -> Result<World, DemoError> {
        let options =
            Options { prometheus: true, prometheus_bin: settings.prometheus_bin.clone(), ..Options::default() };
        let sim = Sim::start_with(options).await.map_err(|e| match e {
            sim::SimError::Prometheus(p) => {
                match needs::missing(&p, settings.prometheus_bin.as_deref(), needs::Machine::this()) {
                    Some(said) => DemoError::NoPrometheus(said),
                    None => DemoError::Sim(sim::SimError::Prometheus(p)),
                }
            }
            other => DemoError::Sim(other),
        })?;
        // Our server's and controller's log is the output of the pod the sim runs for
        // them, as `sim --with-webhook` has it (`kubectl -n apisix-canary logs
        // deploy/apisix-canary` under --keep), from the server's first line on: set
        // before the server starts (the sim holds what comes before the pod runs).
        crate::telemetry::also_log_to(sim.deployment_output(CONTROLLER_NAMESPACE, SERVER_DEPLOYMENT));
        let webhook = testbed::install(&sim).await?;
        let client = sim.client()?;
        let prometheus_url = sim.prometheus_url().unwrap_or_default();
        let resolver = Resolver::new([(LOADTESTER_HOST.to_owned(), sim.loadtester().addr)]);
        let runtime = Runtime::new();
        let identity = crate::lease::identity();
        let leadership =
            crate::lease::start(client.clone(), CONTROLLER_NAMESPACE, &identity, crate::lease::LeaseTiming::default())
                .await?;
        let config = crate::controller::Config {
            prometheus_url: prometheus_url.clone(),
            prometheus_max_age: crate::analysis::batch::DEFAULT_MAX_AGE,
            concurrency: crate::controller::DEFAULT_CONCURRENCY,
            identity,
            resolver,
            excluded_namespaces: crate::controller::Config::excluded(CONTROLLER_NAMESPACE),
        };
        crate::controller::spawn(&runtime, client.clone(), client.clone(), config.clone(), leadership.watcher())?;
        let options = crate::analysis::http::Options {
            timeout: Some(HTTP_TIMEOUT),
            resolver: Some(&config.resolver),
            ..Default::default()
        };
        let http = crate::analysis::http::client(&options).map_err(DemoError::Http)?;
        let prometheus = Prometheus::new(&prometheus_url, QUERY_TIMEOUT)?;
        use std::io::IsTerminal as _;
        let tty = std::io::stdout().is_terminal();
        Ok(World { sim, webhook, runtime, leadership, client, prometheus, prometheus_url, http, tty })
    }

    /// Creates objects as `kubectl apply` of new files does.
    async fn create(&self, objects: Vec<Value>) -> Result<(), DemoError> {
        for object in objects {
            self.sim.create(object).await?;
        }
        Ok(())
    }

    /// The controller and webhooks stop, the Lease is freed, then the cluster goes.
    async fn stop(self) {
        self.runtime.stop_now().await;
        self.leadership.release().await;
        self.webhook.server.shutdown().await;
        drop(self.sim);
    }
}

/// Runs the demo; the acts' outcomes, in order. An act that differs is in its outcome,
/// not an error: the caller says which and how.
pub async fn run(settings: Settings) -> Result<Vec<show::Outcome>, DemoError> {
    println!("Starting the simulated cluster (API server, gateway, load tester, Prometheus),");
    println!("our webhooks and the release controller, in process...");
    let world = World::start(&settings).await?;
    let result = play(&world, &settings).await;
    if settings.keep && result.is_ok() {
        keep(&world).await?;
    }
    world.stop().await;
    result
}

async fn play(world: &World, settings: &Settings) -> Result<Vec<show::Outcome>, DemoError> {
    println!("\n$ kubectl create namespace test");
    let cast = scenario::CAST_DIR;
    println!("$ kubectl apply -k {cast}/podinfo/   # Flagger's podinfo: Deployment and HPA, nothing of ours");
    println!(
        "$ kubectl apply -f {cast}/route.yaml -f {cast}/canary.yaml   # the article's ApisixRoute and Canary, as written"
    );
    println!(
        "  (timings compressed: interval {}, metrics over {}; threshold {}, maxWeight {}, stepWeight {} as written)",
        scenario::INTERVAL,
        scenario::METRIC_INTERVAL,
        scenario::THRESHOLD,
        scenario::MAX_WEIGHT,
        scenario::STEP_WEIGHT,
    );
    world.create(scenario::cast()?).await?;
    observe::wait_initialized(world, INSTALL_TIMEOUT).await?;
    println!("  Canary podinfo.test Initialized: it took deployment/podinfo over and generated service/podinfo");
    let acts: Vec<Act> = match settings.act {
        Some(act) => vec![act],
        None => Act::ALL.to_vec(),
    };
    let mut outcomes = Vec::new();
    let mut errors_until = None;
    for act in acts {
        outcomes.push(acts::run(world, act, &mut errors_until).await?);
        if let Some(dir) = &settings.report {
            write_report(world, act.number(), dir).await?;
        }
    }
    println!("\n{}", show::summary(&outcomes));
    match show::verdict(&outcomes) {
        Ok(said) | Err(said) => println!("{said}"),
    }
    Ok(outcomes)
}

/// `--report DIR`: the act's release as `report` draws it, in `act-N.svg` and `act-N.html`.
async fn write_report(world: &World, act: u8, dir: &std::path::Path) -> Result<(), DemoError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| DemoError::Report { act, source };
    let now = k8s_openapi::jiff::Timestamp::now();
    let report = crate::report::gather(&world.client, &world.prometheus, scenario::NAMESPACE, scenario::NAME, now)
        .await
        .map_err(|e| failed(Box::new(e)))?;
    let svg = crate::report::svg::render(&report).map_err(|e| failed(Box::new(e)))?;
    let html = crate::report::html::render(&report, &svg);
    let write = |name: String, text: &str| {
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|source| DemoError::Write { path: path.display().to_string(), source })
    };
    write(format!("act-{act}.svg"), &svg)?;
    write(format!("act-{act}.html"), &html)?;
    println!("  report: {}", dir.join(format!("act-{act}.html")).display());
    Ok(())
}

/// `--keep`: the kubeconfig in a file that stays, then wait for Ctrl-C.
async fn keep(world: &World) -> Result<(), DemoError> {
    let write = |e: std::io::Error| DemoError::Write { path: "a kubeconfig in the temp directory".into(), source: e };
    let file =
        tempfile::Builder::new().prefix("apisix-canary-demo-").suffix(".kubeconfig").tempfile().map_err(write)?;
    let (_, path) = file.keep().map_err(|e| write(e.error))?;
    std::fs::write(&path, world.sim.kubeconfig())
        .map_err(|source| DemoError::Write { path: path.display().to_string(), source })?;
    println!("The cluster and the controller keep running (Ctrl-C stops them):");
    println!("export KUBECONFIG={}", path.display());
    println!("kubectl get canaries -A; kubectl -n test describe canary/podinfo");
    println!(
        "kubectl -n {CONTROLLER_NAMESPACE} logs deploy/{SERVER_DEPLOYMENT}   # our webhooks' and controller's log"
    );
    crate::cli::terminated().await;
    Ok(())
}
