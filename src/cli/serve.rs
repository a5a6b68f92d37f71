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
use crate::tls::authority::Policy;
use crate::tls::generate;
use crate::tls::selfsigned::{self, SelfSigned};

const DEFAULT_ADDR: &str = "0.0.0.0:8443";
const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:8080";
const DEFAULT_TLS_CERT: &str = "certs/tls.crt";
const DEFAULT_TLS_KEY: &str = "certs/tls.key";
const DEFAULT_RELOAD_INTERVAL: &str = "10s";
const DEFAULT_DRAIN_TIMEOUT: &str = "25s";
const DEFAULT_SHUTDOWN_DELAY: &str = "5s";
const DEFAULT_NAMESPACE: &str = crate::manifests::DEFAULT_NAMESPACE;
const DEFAULT_SERVICE: &str = crate::manifests::DEFAULT_SERVICE;
const DEFAULT_WEBHOOK_CONFIGURATION: &str = crate::manifests::NAME;
/// 90 days, as cert-manager's default.
const DEFAULT_CERT_VALIDITY: &str = "2160h";
/// Ten years.
const DEFAULT_CA_VALIDITY: &str = "87600h";
pub(crate) const DEFAULT_PROMETHEUS_URL: &str = "http://prometheus-server.apisix:9090";
const DEFAULT_PROMETHEUS_MAX_AGE: &str = "1s";

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
    /// How long one answer of the built-in metrics' batched queries (one per metric family
    /// and window, for every release at once) serves the releases that ask after it;
    /// releases asking while it is in flight wait for it. At scale, set it to the
    /// interval at which Prometheus scrapes the gateway: an answer younger than one
    /// scrape cannot differ. 0 turns batching off: each release sends its own queries.
    #[arg(long, env = "APISIX_CANARY_PROMETHEUS_MAX_AGE", default_value = DEFAULT_PROMETHEUS_MAX_AGE, value_parser = parse_duration)]
    pub prometheus_max_age: Duration,
    /// Releases reconciled at once. Steps that fall due together (releases started
    /// together share their intervals) wait their turn instead of all reading and writing
    /// at once: this bounds the memory they hold and the burst of requests the API server
    /// sees. 0 is unbounded.
    #[arg(long, env = "APISIX_CANARY_MAX_CONCURRENT_RECONCILES", default_value_t = crate::controller::DEFAULT_CONCURRENCY)]
    pub max_concurrent_reconciles: u16,
    /// This replica's name in the Lease and in Events (default: the pod or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The self-signed certificate mode: serve the certificate kept in this Secret of
    /// --namespace instead of --tls-cert/--tls-key. The first replica creates it (a CA and
    /// a serving certificate for --service); the leader renews both before they expire and
    /// writes the CA into the caBundle of --webhook-configuration and of the Canary CRD's
    /// conversion. Every replica re-reads it every --tls-reload-interval.
    #[arg(long, env = "APISIX_CANARY_SELF_SIGNED_SECRET", value_name = "NAME")]
    pub self_signed_secret: Option<String>,
    /// Our Service in --namespace: the self-signed certificate's DNS names
    /// (NAME.NAMESPACE.svc and its other forms) and where the CRD conversion is sent.
    #[arg(long, env = "APISIX_CANARY_SERVICE", default_value = DEFAULT_SERVICE)]
    pub service: String,
    /// Another DNS name of the self-signed serving certificate, e.g. localhost for a
    /// server outside the cluster. Repeatable; comma-separated in the variable.
    #[arg(long = "cert-dns-name", env = "APISIX_CANARY_CERT_DNS_NAMES", value_delimiter = ',')]
    pub cert_dns_names: Vec<String>,
    /// The Mutating- and ValidatingWebhookConfiguration whose caBundle the self-signed
    /// mode keeps.
    #[arg(long, env = "APISIX_CANARY_WEBHOOK_CONFIGURATION", default_value = DEFAULT_WEBHOOK_CONFIGURATION)]
    pub webhook_configuration: String,
    /// Lifetime of a self-signed serving certificate; renewed when a third is left.
    #[arg(long, env = "APISIX_CANARY_CERT_VALIDITY", default_value = DEFAULT_CERT_VALIDITY, value_parser = parse_positive_duration)]
    pub cert_validity: Duration,
    /// Lifetime of the self-signed CA; rotated when a third is left, with no failed call.
    /// At least twice --cert-validity.
    #[arg(long, env = "APISIX_CANARY_CA_VALIDITY", default_value = DEFAULT_CA_VALIDITY, value_parser = parse_positive_duration)]
    pub ca_validity: Duration,
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
    let identity = args.identity.clone().unwrap_or_else(crate::lease::identity);
    let clients = match args.webhook_only {
        true => None,
        false => Some(super::cluster::ServeClients::new(args.kubeconfig.as_deref(), &identity).await?),
    };
    let self_signed = match (&args.self_signed_secret, clients.as_ref().map(|c| &c.requests)) {
        (None, _) => None,
        (Some(_), None) => anyhow::bail!(
            "--self-signed-secret keeps its Secret in the cluster: it needs the controller, not --webhook-only"
        ),
        (Some(secret), Some(client)) => {
            let mode = SelfSigned::new(client.clone(), self_signed_config(&args, secret)?);
            let store = mode.load().await.with_context(|| {
                format!("loading the self-signed certificate of Secret {}/{secret}", args.namespace)
            })?;
            Some((mode, store))
        }
    };
    let runtime = Runtime::new();
    let admin = bind(config.admin_addr).await.context("starting the admin port")?;
    let admin_addr = admin.local_addr().unwrap_or(config.admin_addr);
    let webhooks = run::spawn_with(&runtime, &config, self_signed.as_ref().map(|(_, store)| store.clone()))
        .await
        .context("starting the webhook server")?;
    crate::admin::spawn(&runtime, admin, config.drain_timeout);
    let leadership = match clients {
        Some(clients) => Some(controller(&runtime, clients, &args, identity).await?),
        None => None,
    };
    if let (Some((mode, store)), Some(leadership)) = (self_signed, &leadership) {
        let (watcher, metrics) = (leadership.watcher(), webhooks.metrics.clone());
        runtime.spawn(mode.run(
            store,
            move || watcher.is_leader(),
            runtime.stopping(),
            move |result| match result {
                Ok(true) => metrics.observe_cert_reload("swapped"),
                Ok(false) => {}
                Err(_) => metrics.observe_cert_reload("error"),
            },
        ));
    }
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
async fn controller(
    runtime: &Runtime,
    clients: super::cluster::ServeClients,
    args: &ServeArgs,
    identity: String,
) -> anyhow::Result<crate::lease::Leadership> {
    let leadership =
        crate::lease::start(clients.requests.clone(), &args.namespace, &identity, crate::lease::LeaseTiming::default())
            .await
            .with_context(|| format!("starting leader election in namespace {}", args.namespace))?;
    if !args.resolve.is_empty() {
        let table: Vec<String> = args.resolve.iter().map(|(host, addr)| format!("{host}={addr}")).collect();
        tracing::info!(resolve = ?table, "cluster names resolved from --resolve");
    }
    let config = crate::controller::Config {
        prometheus_url: args.prometheus_url.clone(),
        prometheus_max_age: args.prometheus_max_age,
        concurrency: args.max_concurrent_reconciles,
        identity,
        resolver: Resolver::new(args.resolve.iter().cloned()),
        excluded_namespaces: crate::controller::Config::excluded(&args.namespace),
    };
    crate::controller::spawn(runtime, clients.requests, clients.watches, config, leadership.watcher())?;
    Ok(leadership)
}

/// The self-signed mode's configuration from the flags.
fn self_signed_config(args: &ServeArgs, secret: &str) -> anyhow::Result<selfsigned::Config> {
    let validity =
        |d: Duration, flag: &str| time::Duration::try_from(d).with_context(|| format!("{flag} {d:?} is too long"));
    let mut dns_names = generate::service_dns_names(&args.service, &args.namespace);
    dns_names.extend(args.cert_dns_names.iter().cloned());
    let crds = crate::manifests::crds(&crate::manifests::Target::default())
        .into_iter()
        .filter(|crd| crd.spec.conversion.as_ref().is_some_and(|c| c.strategy == "Webhook"))
        .map(|crd| crd.metadata.name.unwrap_or_default())
        .collect();
    let policy = Policy {
        dns_names,
        cert_validity: validity(args.cert_validity, "--cert-validity")?,
        ca_validity: validity(args.ca_validity, "--ca-validity")?,
        grace: selfsigned::Config::grace(args.tls_reload_interval),
    };
    let interval = validity(args.tls_reload_interval, "--tls-reload-interval")?;
    policy.check(interval).map_err(|e| anyhow::anyhow!("--cert-validity, --ca-validity: {e}"))?;
    Ok(selfsigned::Config {
        namespace: args.namespace.clone(),
        secret: secret.to_owned(),
        service: args.service.clone(),
        webhook_configuration: args.webhook_configuration.clone(),
        crds,
        policy,
        interval: args.tls_reload_interval,
    })
}
