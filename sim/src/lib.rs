//! The simulated cluster: a kube-apiserver stand-in that `kube::Client` and kubectl
//! talk to unchanged, the admission chain, workloads, an APISIX-like gateway, a load
//! tester and a real Prometheus. Used by the `apisix-canary sim` command, the
//! end-to-end tests and the benchmarks; never by `serve`.
//!
//! It imitates Kubernetes and APISIX from their documentation and code, and knows
//! nothing of apisix-canary (which depends on it, never the reverse): a product installs
//! itself like into a real cluster, by creating its objects ([`Sim::create`],
//! [`Sim::apply_yaml`]) and saying where its webhook Service listens
//! ([`Sim::register_service`]).
//!
//! ```text
//!  kube::Client / kubectl ──HTTP──▶ apiserver ──▶ cluster ──▶ store (objects, rv, watch history)
//!                                      │            └─▶ admission webhooks (HTTPS, caBundle)
//!             workloads (Deployment → ReplicaSet → Pod → EndpointSlice) ◀── watch
//!  load tester ──HTTP──▶ gateway (ApisixRoutes, weights) ──▶ podinfo-like endpoints
//!                           └─ /apisix/prometheus/metrics ◀── Prometheus (scrapes every 1s)
//! ```

pub mod admission;
pub mod apiserver;
pub mod audit;
pub mod autoscaling;
pub mod builtin;
pub mod cluster;
pub mod decode;
pub mod defaults;
pub mod events;
pub mod exec;
pub mod faults;
pub mod gateway;
pub mod httpd;
pub mod loadtest;
pub mod logs;
pub mod managed;
pub mod openapi;
pub mod prometheus;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod store;
pub mod strategic;
pub mod table;
pub mod watch;
pub mod workloads;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::apiserver::ApiServer;
use self::cluster::{Cluster, Ctx};
use self::resources::Target;
use self::status::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {what}: {source}")]
    Bind { what: &'static str, source: std::io::Error },
    #[error("kube client: {0}")]
    Client(String),
    #[error("{context}: {source}")]
    Api { context: String, source: ApiError },
    #[error("{0}")]
    Manifest(String),
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error(transparent)]
    LoadTest(#[from] loadtest::LoadTestError),
    #[error(transparent)]
    Prometheus(#[from] prometheus::PrometheusError),
    #[error("cannot open the audit log {path}: {source}")]
    Audit { path: std::path::PathBuf, source: std::io::Error },
}

/// APISIX's ApisixRoute CRD, installed at start as in a cluster running APISIX.
const APISIX_ROUTE_CRD: &str = include_str!("apisix/apisixroute-crd.yaml");

/// Namespaces every cluster starts with.
const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// What to start besides the API server, and how fast the simulated world moves.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a new pod takes to become ready.
    pub pod_ready_delay: std::time::Duration,
    /// How long a deleted pod is Terminating: its containers' exit on SIGTERM (its
    /// `terminationGracePeriodSeconds`, when shorter, bounds it).
    pub pod_stop_delay: std::time::Duration,
    /// Start a real Prometheus scraping the gateway (needs the `prometheus` binary).
    pub prometheus: bool,
    /// The Prometheus binary; by default the Debian package's.
    pub prometheus_bin: Option<std::path::PathBuf>,
    /// How often Prometheus scrapes the gateway.
    pub scrape_interval: std::time::Duration,
    /// Write kube-apiserver's audit log (JSON lines, level Metadata) to this file.
    pub audit_log: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pod_ready_delay: std::time::Duration::from_millis(200),
            pod_stop_delay: std::time::Duration::from_secs(1),
            prometheus: false,
            prometheus_bin: None,
            scrape_interval: prometheus::SCRAPE_INTERVAL,
            audit_log: None,
        }
    }
}

/// The one node the pods run on (`kubectl get nodes`), as a kubelet registers it.
fn node() -> serde_json::Value {
    let (major, minor) = apiserver::VERSION;
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": workloads::pods::NODE_NAME, "labels": {
            "kubernetes.io/hostname": workloads::pods::NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/control-plane": "",
        }},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": workloads::pods::NODE_NAME}],
            "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": defaults::now(), "lastTransitionTime": defaults::now()}],
            "nodeInfo": {"kubeletVersion": format!("v{major}.{minor}.0"), "containerRuntimeVersion": "sim://1.0",
                "operatingSystem": "linux", "architecture": "amd64", "kernelVersion": "", "osImage": "apisix-canary sim",
                "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        },
    })
}

/// A running simulated cluster. Everything stops when it is dropped.
#[derive(Debug)]
pub struct Sim {
    pub cluster: Arc<Cluster>,
    pub api: Arc<ApiServer>,
    api_addr: SocketAddr,
    gateway: gateway::Gateway,
    loadtester: loadtest::LoadTester,
    prometheus: Option<prometheus::Prometheus>,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sim {
    /// Starts the API server on a free loopback port with the default namespaces.
    pub async fn start() -> Result<Self, SimError> {
        Self::start_with(Options::default()).await
    }

    /// Starts the cluster with `options`; every part on its own free loopback port.
    pub async fn start_with(options: Options) -> Result<Self, SimError> {
        let stop = CancellationToken::new();
        // Whatever started stops again if a later part fails.
        let guard = stop.clone().drop_guard();
        let cluster = Arc::new(Cluster::default());
        let audit = match &options.audit_log {
            Some(path) => {
                Some(audit::AuditLog::open(path).map_err(|source| SimError::Audit { path: path.clone(), source })?)
            }
            None => None,
        };
        let api = Arc::new(ApiServer::new(cluster.clone(), stop.clone(), audit));
        let listener =
            TcpListener::bind("127.0.0.1:0").await.map_err(|source| SimError::Bind { what: "api", source })?;
        let api_addr = listener.local_addr().map_err(|source| SimError::Bind { what: "api", source })?;
        {
            let api = api.clone();
            httpd::serve(listener, stop.clone(), move |req| api.clone().handle(req));
        }
        let timing = workloads::Timing { ready_delay: options.pod_ready_delay, stop_delay: options.pod_stop_delay };
        workloads::spawn(cluster.clone(), timing, stop.clone());
        let gateway = gateway::spawn(cluster.clone(), stop.clone()).await?;
        let loadtester = loadtest::spawn(cluster.clone(), gateway.addr, stop.clone()).await?;
        let _ = api.loadtester.set(loadtester.clone());
        let prometheus = if options.prometheus {
            Some(prometheus::start(gateway.addr, options.prometheus_bin.as_deref(), options.scrape_interval).await?)
        } else {
            None
        };
        let sim = Self { cluster, api, api_addr, gateway, loadtester, prometheus, stop };
        for ns in NAMESPACES {
            sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;
        }
        // A kubelet registers its Node, then reports its status (dropped on create).
        let mut registered = sim.create(node()).await?;
        registered["status"] = node()["status"].take();
        sim.write_status(registered).await?;
        // The kubelet's heartbeat Lease, which `kubectl describe node` shows.
        sim.create(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": workloads::pods::NODE_NAME, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": workloads::pods::NODE_NAME, "leaseDurationSeconds": 40}}))
            .await?;
        sim.apply_yaml(APISIX_ROUTE_CRD).await?;
        guard.disarm();
        Ok(sim)
    }

    /// `http://127.0.0.1:<port>`: the API server.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// `http://127.0.0.1:<port>`: the APISIX-like gateway (and its `/apisix/prometheus/metrics`).
    pub fn gateway_url(&self) -> String {
        self.gateway.url()
    }

    /// The gateway itself: its address and current metrics.
    pub fn gateway(&self) -> &gateway::Gateway {
        &self.gateway
    }

    /// `http://127.0.0.1:<port>/`: the load tester's webhook endpoint.
    pub fn loadtester_url(&self) -> String {
        self.loadtester.url()
    }

    /// The load tester itself: requests sent, commands running.
    pub fn loadtester(&self) -> &loadtest::LoadTester {
        &self.loadtester
    }

    /// `http://127.0.0.1:<port>` of the real Prometheus, when started (`Options::prometheus`).
    pub fn prometheus_url(&self) -> Option<String> {
        self.prometheus.as_ref().map(prometheus::Prometheus::url)
    }

    /// The real Prometheus, when started: e.g. to wait for its first scrape.
    pub fn prometheus(&self) -> Option<&prometheus::Prometheus> {
        self.prometheus.as_ref()
    }

    /// A client for the API server, as `kube::Client::try_default` would build one.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        let url = self.api_url().parse().map_err(|e: http::uri::InvalidUri| SimError::Client(e.to_string()))?;
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".to_owned();
        kube::Client::try_from(config).map_err(|e| SimError::Client(e.to_string()))
    }

    /// A kubeconfig for kubectl and other clients.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n\
             contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: admin\n    namespace: default\n\
             current-context: sim\nusers:\n- name: admin\n  user:\n    token: sim\n",
            self.api_url()
        )
    }

    /// Where the Service `namespace/name` is served: webhook `clientConfig.service`
    /// references to it are called at `addr` (a loopback address), with the Service's
    /// DNS name (`name.namespace.svc`) as TLS server name.
    pub fn register_service(&self, namespace: &str, name: &str, addr: SocketAddr) {
        self.cluster.webhooks.register_service(namespace, name, addr);
    }

    /// A writer whose lines become the output of the running pods of Deployment
    /// `namespace/name` (`kubectl logs deploy/NAME`): for a product run in-process.
    pub fn deployment_output(&self, namespace: &str, name: &str) -> logs::Output {
        logs::Output::new(self.cluster.clone(), namespace, name)
    }

    /// Ends every open watch stream, as an API server restart or a load balancer would.
    pub fn cut_watches(&self) {
        self.api.cut_watches(None);
    }

    /// Replaces the fault rules in force (see [`faults`]); an empty set heals.
    pub fn set_faults(&self, faults: faults::Faults) -> Result<(), String> {
        self.api.faults.set(faults)
    }

    /// The resource serving `object`'s apiVersion and kind, its version, namespace and name.
    fn resolve(&self, object: &Value) -> Result<(Arc<resources::Resource>, String, String, String), SimError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = split_api_version(api_version);
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = self
            .cluster
            .resources
            .by_kind(group, kind)
            .ok_or_else(|| SimError::Manifest(format!("no resource serves {group}/{version} {kind}")))?;
        let namespace = if resource.namespaced {
            object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned()
        } else {
            String::new()
        };
        let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok((resource, version.to_owned(), namespace, name))
    }

    /// Creates an object as a user would (through admission), at its apiVersion.
    pub async fn create(&self, object: Value) -> Result<Value, SimError> {
        let (resource, version, namespace, name) = self.resolve(&object)?;
        let target = Target { resource: &resource, version: &version, namespace: &namespace };
        self.cluster.create(&Ctx::user("kubernetes-admin"), &target, object).await.map(|w| w.object).map_err(|source| {
            SimError::Api { context: format!("creating {} {namespace}/{name}", resource.kind), source }
        })
    }

    /// Writes an object's status through its status subresource, as its controller would.
    pub async fn write_status(&self, object: Value) -> Result<Value, SimError> {
        let (resource, version, namespace, name) = self.resolve(&object)?;
        let target = Target { resource: &resource, version: &version, namespace: &namespace };
        self.cluster.replace(&Ctx::internal(), &target, &name, Some("status"), object).await.map(|w| w.object).map_err(
            |source| SimError::Api {
                context: format!("writing the status of {} {namespace}/{name}", resource.kind),
                source,
            },
        )
    }

    /// Creates every document of a YAML (or JSON) stream, in order.
    pub async fn apply_yaml(&self, text: &str) -> Result<Vec<Value>, SimError> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| SimError::Manifest(e.to_string()))?;
        let mut out = Vec::new();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            out.push(self.create(doc).await?);
        }
        Ok(out)
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}
