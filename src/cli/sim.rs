//! `apisix-canary sim`: the simulated cluster standalone, for kubectl, with our webhook
//! server installed into it on request ([`crate::testbed`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use sim::{Options, Sim};

use crate::testbed;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Where to write the kubeconfig of the simulated API server.
    #[arg(long, env = "APISIX_CANARY_SIM_KUBECONFIG_OUT", default_value = "sim.kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// Also run our webhook server in-process and register it (CRDs, webhook configurations).
    #[arg(long, env = "APISIX_CANARY_SIM_WITH_WEBHOOK")]
    pub with_webhook: bool,
    /// Write kube-apiserver's audit log to FILE: one audit.k8s.io/v1 Event per request,
    /// with its verb, object and User-Agent (JSON lines, level Metadata).
    #[arg(long, env = "APISIX_CANARY_SIM_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// The Prometheus binary scraping the gateway (default: the Debian package's).
    #[arg(long, env = "APISIX_CANARY_SIM_PROMETHEUS_BIN")]
    pub prometheus_bin: Option<PathBuf>,
    /// How often Prometheus scrapes the gateway. Every second by default, so a release
    /// with a short interval has samples at once; a cluster's Prometheus scrapes every
    /// 15-30 s, and thousands of routes scraped every second cost the machine more than
    /// the releases they measure.
    #[arg(long, env = "APISIX_CANARY_SIM_SCRAPE_INTERVAL", default_value = "1s", value_parser = crate::cli::parse_duration)]
    pub prometheus_scrape_interval: std::time::Duration,
    /// Where the cluster Service NAMESPACE/NAME named by a webhook configuration's or a
    /// CRD conversion's `clientConfig` is served, e.g. by a `serve` started from a shell:
    /// `apisix-canary/apisix-canary=127.0.0.1:8443`. Loopback only (the simulated cluster
    /// dials nothing else); given after `--with-webhook`'s own mapping, so it wins.
    /// Repeatable; comma-separated in the variable.
    #[arg(
        long = "service",
        env = "APISIX_CANARY_SIM_SERVICES",
        value_name = "NAMESPACE/NAME=IP:PORT",
        value_delimiter = ',',
        value_parser = parse_service
    )]
    pub services: Vec<ServiceAddr>,
}

/// A cluster Service and the local address that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddr {
    pub namespace: String,
    pub name: String,
    pub addr: SocketAddr,
}

/// Parses `NAMESPACE/NAME=IP:PORT` (a loopback IP).
pub fn parse_service(entry: &str) -> Result<ServiceAddr, String> {
    let (service, addr) = entry.split_once('=').ok_or_else(|| format!("{entry:?} is not NAMESPACE/NAME=IP:PORT"))?;
    let (namespace, name) = service
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| format!("{entry:?}: {service:?} is not NAMESPACE/NAME"))?;
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{entry:?}: {addr:?} is not IP:PORT: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{entry:?}: {} is not a loopback address: the simulated cluster dials only those",
            addr.ip()
        ));
    }
    Ok(ServiceAddr { namespace: namespace.to_owned(), name: name.to_owned(), addr })
}

/// Writes `text` to `path` whole or not at all (a temporary file beside it, renamed):
/// a script waiting for the kubeconfig never reads half of one.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Runs the simulated cluster until Ctrl-C or SIGTERM. The kubeconfig appears once the
/// cluster serves (a stale one is removed first), so a script can wait for it.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    match std::fs::remove_file(&args.kubeconfig_out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing the stale {}", args.kubeconfig_out.display()));
        }
        _ => {}
    }
    let options = Options {
        prometheus: true,
        prometheus_bin: args.prometheus_bin.clone(),
        scrape_interval: args.prometheus_scrape_interval,
        audit_log: args.audit_log.clone(),
        ..Options::default()
    };
    let sim = Sim::start_with(options).await.context("starting the simulated cluster")?;
    let webhook = if args.with_webhook {
        // The in-process server's log is its pod's output, as on a cluster, from its
        // first line: set before the server starts (the sim holds what comes before the
        // pod runs), and the kubeconfig only once the pod runs, as `helm install --wait`.
        let (namespace, name) = (crate::manifests::DEFAULT_NAMESPACE, crate::manifests::DEFAULT_SERVICE);
        crate::telemetry::also_log_to(sim.deployment_output(namespace, name));
        let installed = testbed::install(&sim).await.context("installing the webhook")?;
        testbed::running(&sim).await.context("waiting for the webhook's pod")?;
        Some(installed)
    } else {
        None
    };
    for s in &args.services {
        sim.register_service(&s.namespace, &s.name, s.addr);
    }
    write_atomically(&args.kubeconfig_out, &sim.kubeconfig())
        .with_context(|| format!("writing {}", args.kubeconfig_out.display()))?;
    let path = std::fs::canonicalize(&args.kubeconfig_out).unwrap_or(args.kubeconfig_out.clone());
    println!("kubeconfig: {}", path.display());
    println!("api server: {}", sim.api_url());
    println!("gateway:    {}", sim.gateway_url());
    println!("loadtester: {}", sim.loadtester_url());
    if let Some(url) = sim.prometheus_url() {
        println!("prometheus: {url}");
    }
    if let Some(w) = &webhook {
        println!("webhook:    https://{} (admin http://{})", w.server.addr, w.server.admin_addr);
    }
    for s in &args.services {
        println!("service:    {}/{} -> {}", s.namespace, s.name, s.addr);
    }
    println!("export KUBECONFIG={}", path.display());
    tracing::info!(api = %sim.api_url(), "simulated cluster running; Ctrl-C stops it");
    super::terminated().await;
    if let Some(w) = webhook {
        w.server.shutdown().await;
    }
    drop(sim);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_entries_parse_or_say_why_not() {
        let ok = parse_service("apisix-canary/apisix-canary=127.0.0.1:8443").unwrap();
        assert_eq!(
            ok,
            ServiceAddr {
                namespace: "apisix-canary".into(),
                name: "apisix-canary".into(),
                addr: "127.0.0.1:8443".parse().unwrap()
            }
        );
        assert_eq!(parse_service("ns/svc=[::1]:443").unwrap().addr, "[::1]:443".parse().unwrap());
        for (bad, why) in [
            ("apisix-canary=127.0.0.1:8443", "is not NAMESPACE/NAME"),
            ("/svc=127.0.0.1:1", "is not NAMESPACE/NAME"),
            ("a/b/c=127.0.0.1:1", "is not NAMESPACE/NAME"),
            ("ns/svc", "is not NAMESPACE/NAME=IP:PORT"),
            ("ns/svc=localhost:8443", "is not IP:PORT"),
            ("ns/svc=10.0.0.1:8443", "is not a loopback address"),
        ] {
            let err = parse_service(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
