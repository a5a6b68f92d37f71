//! `apisix-canary demo`: SCENARIO.md on the simulated cluster, in process ([`crate::demo`]).

use std::path::PathBuf;

use clap::Args;

use crate::demo::{self, Settings, scenario::Act};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run one act only (1 promotion, 2 rollback, 3 custom metric), from a freshly
    /// initialized Canary.
    #[arg(long, env = "APISIX_CANARY_DEMO_ACT", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub act: Option<u8>,
    /// At the end, leave the cluster and the controller running (prints an
    /// `export KUBECONFIG=...`) until Ctrl-C.
    #[arg(long, env = "APISIX_CANARY_DEMO_KEEP")]
    pub keep: bool,
    /// The Prometheus binary scraping the gateway (default: the Debian package's).
    #[arg(long, env = "APISIX_CANARY_SIM_PROMETHEUS_BIN")]
    pub prometheus_bin: Option<PathBuf>,
    /// Write each act's release picture (`act-N.svg`, `act-N.html`, as `report` draws
    /// it) into DIR.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
}

/// Runs the demo; an error when an act did not end as the scenario says.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let settings = Settings {
        act: args.act.and_then(Act::from_number),
        keep: args.keep,
        prometheus_bin: args.prometheus_bin,
        report: args.report,
    };
    let outcomes = demo::run(settings).await?;
    // The verdict is printed; the exit status says it too.
    crate::demo::show::verdict(&outcomes).map(drop).map_err(anyhow::Error::msg)
}
