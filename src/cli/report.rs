//! `apisix-canary report NAME`: the last (or current) release of a Canary as a chart
//! (`--out X.svg`) or a page with the chart and its Events (`--out X.html`, the default).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::jiff::Timestamp;

use super::cluster::{ClusterArgs, connect};
use super::parse_positive_duration;
use crate::analysis::prometheus::{Prometheus, QUERY_TIMEOUT};
use crate::report;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The Canary.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Where to write: `.svg` for the chart alone, `.html` for the chart and the Events
    /// (default: NAME-report.html in the current directory).
    #[arg(long, env = "APISIX_CANARY_REPORT_OUT")]
    pub out: Option<PathBuf>,
    /// The Prometheus that scrapes APISIX.
    #[arg(long, env = "APISIX_CANARY_PROMETHEUS_URL", default_value = crate::cli::serve::DEFAULT_PROMETHEUS_URL)]
    pub prometheus_url: String,
    /// The range of each point's rate() (default: the request-success-rate's interval,
    /// what the analysis judged).
    #[arg(long, env = "APISIX_CANARY_REPORT_RATE_WINDOW", value_parser = parse_positive_duration)]
    pub rate_window: Option<Duration>,
}

pub async fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-report.html", args.name)));
    let html = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm") => true,
        Some(e) if e.eq_ignore_ascii_case("svg") => false,
        _ => anyhow::bail!("--out {}: must end in .svg or .html", out.display()),
    };
    let (client, ns) = connect(&args.cluster).await?;
    let prometheus = Prometheus::new(&args.prometheus_url, QUERY_TIMEOUT)?;
    let report = report::gather(&client, &prometheus, &ns, &args.name, args.rate_window, Timestamp::now()).await?;
    let svg = report::svg::render(&report)?;
    let text = if html { report::html::render(&report, &svg) } else { svg };
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    let points = [&report.lines.canary_success, &report.lines.stable_success].map(|l| l.len());
    eprintln!(
        "wrote {}: {}.{} from {} to {}, {} Events, {} canary and {} stable success-rate points (canary nodes {:?}, \
         stable nodes {:?})",
        out.display(),
        args.name,
        ns,
        report::clock(report.window.start),
        report::clock(report.window.end),
        report.events.len(),
        points[0],
        points[1],
        report.nodes.canary,
        report.nodes.stable
    );
    Ok(())
}
