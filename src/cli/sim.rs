//! `apisix-canary sim`: the simulated cluster standalone, for kubectl, with our webhook
//! server installed into it on request ([`crate::testbed`]).

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
    /// The Prometheus binary scraping the gateway (default: the Debian package's).
    #[arg(long, env = "APISIX_CANARY_SIM_PROMETHEUS_BIN")]
    pub prometheus_bin: Option<PathBuf>,
}

/// Runs the simulated cluster until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let options = Options { prometheus: true, prometheus_bin: args.prometheus_bin.clone(), ..Options::default() };
    let sim = Sim::start_with(options).await.context("starting the simulated cluster")?;
    let webhook =
        if args.with_webhook { Some(testbed::install(&sim).await.context("installing the webhook")?) } else { None };
    std::fs::write(&args.kubeconfig_out, sim.kubeconfig())
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
    println!("export KUBECONFIG={}", path.display());
    tracing::info!(api = %sim.api_url(), "simulated cluster running; Ctrl-C stops it");
    super::terminated().await;
    if let Some(w) = webhook {
        w.server.shutdown().await;
    }
    drop(sim);
    Ok(())
}
