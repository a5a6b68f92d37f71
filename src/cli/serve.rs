//! `apisix-canary serve`: the webhooks and, unless `--webhook-only`, the release
//! controller, as peers under one runtime until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{parse_duration, parse_positive_duration, terminated};
use crate::analysis::http::Resolver;
use crate::runtime::{Runtime, bind};
use crate::server::run::{self, ServeConfig};

const DEFAULT_ADDR: &str = "0.0.0.0:8443";
const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";
const DEFAULT_TLS_CERT: &str = "certs/tls.crt";
const DEFAULT_TLS_KEY: &str = "certs/tls.key";
const DEFAULT_RELOAD_INTERVAL: &str = "10s";
const DEFAULT_DRAIN_TIMEOUT: &str = "25s";
const DEFAULT_SHUTDOWN_DELAY: &str = "5s";
const DEFAULT_NAMESPACE: &str = "apisix-canary";
pub(crate) const DEFAULT_PROMETHEUS_URL: &str = "http://prometheus-server.apisix:9090";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address of the webhook paths.
    #[arg(long, env = "APISIX_CANARY_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// Plain-HTTP address of /live, /ready and /metrics.
    #[arg(long, env = "APISIX_CANARY_ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// PEM certificate chain served on --addr.
    #[arg(long, env = "APISIX_CANARY_TLS_CERT", default_value = DEFAULT_TLS_CERT)]
    pub tls_cert: PathBuf,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "APISIX_CANARY_TLS_KEY", default_value = DEFAULT_TLS_KEY)]
    pub tls_key: PathBuf,
    /// How often the certificate files are re-read (a Go duration: 10s, 1m).
    #[arg(long, env = "APISIX_CANARY_TLS_RELOAD_INTERVAL", default_value = DEFAULT_RELOAD_INTERVAL, value_parser = parse_positive_duration)]
    pub tls_reload_interval: Duration,
    /// After SIGTERM, how long to keep serving with /ready false before closing the port.
    #[arg(long, env = "APISIX_CANARY_SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "APISIX_CANARY_DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Serve the webhooks only, without the release controller and without any cluster.
    #[arg(long, env = "APISIX_CANARY_WEBHOOK_ONLY")]
    pub webhook_only: bool,
    /// Kubeconfig of the cluster to run releases in (else KUBECONFIG, else in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Our own namespace: where the leader-election Lease lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The Prometheus that scrapes APISIX, for the built-in metrics.
    #[arg(long, env = "APISIX_CANARY_PROMETHEUS_URL", default_value = DEFAULT_PROMETHEUS_URL)]
    pub prometheus_url: String,
    /// This replica's name in the Lease and in Events (default: the pod or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Where a controller running outside the cluster reaches a cluster Service name used
    /// in webhook, alert and MetricTemplate URLs, like curl's --resolve: the host name in
    /// any of its forms (svc.ns, svc.ns.svc, svc.ns.svc.cluster.local) connects to IP:PORT.
    /// The URL is never rewritten. Repeatable; comma-separated in the variable.
    #[arg(
        long,
        env = "APISIX_CANARY_RESOLVE",
        value_name = "HOST=IP:PORT",
        value_delimiter = ',',
        value_parser = Resolver::parse_entry
    )]
    pub resolve: Vec<(String, SocketAddr)>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig {
        addr: args.addr,
        admin_addr: args.admin_addr,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        reload_interval: args.tls_reload_interval,
        shutdown_delay: args.shutdown_delay,
        drain_timeout: args.drain_timeout,
    };
    let runtime = Runtime::new();
    let admin = bind(config.admin_addr).await.context("starting the admin port")?;
    let admin_addr = admin.local_addr().unwrap_or(config.admin_addr);
    let webhooks = run::spawn(&runtime, &config).await.context("starting the webhook server")?;
    crate::admin::spawn(&runtime, admin, config.drain_timeout);
    let leadership = if args.webhook_only { None } else { Some(controller(&runtime, &args).await?) };
    tracing::info!(addr = %webhooks.addr, %admin_addr, controller = !args.webhook_only, "serving webhooks");
    terminated().await;
    tracing::info!(delay = ?config.shutdown_delay, "signal received: not ready; closing the port after the delay, then draining");
    runtime.shutdown(config.shutdown_delay).await;
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(())
}

/// The cluster client, the Lease, and the controller loops.
async fn controller(runtime: &Runtime, args: &ServeArgs) -> anyhow::Result<crate::lease::Leadership> {
    let client = super::cluster::client(args.kubeconfig.as_deref()).await?;
    let identity = args.identity.clone().unwrap_or_else(crate::lease::identity);
    let leadership =
        crate::lease::start(client.clone(), &args.namespace, &identity, crate::lease::LeaseTiming::default())
            .await
            .with_context(|| format!("starting leader election in namespace {}", args.namespace))?;
    if !args.resolve.is_empty() {
        let table: Vec<String> = args.resolve.iter().map(|(host, addr)| format!("{host}={addr}")).collect();
        tracing::info!(resolve = ?table, "cluster names resolved from --resolve");
    }
    let config = crate::controller::Config {
        prometheus_url: args.prometheus_url.clone(),
        identity,
        resolver: Resolver::new(args.resolve.iter().cloned()),
    };
    crate::controller::spawn(runtime, client, config, leadership.watcher())?;
    Ok(leadership)
}
