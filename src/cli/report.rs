//! `apisix-canary report NAME`: the last (or current) release of a Canary as a chart
//! (`--out X.svg`) or a page with the chart, its checks and its Events (`--out X.html`,
//! the default).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::jiff::Timestamp;

use super::cluster::{ClusterArgs, connect};
use crate::analysis::prometheus::{Prometheus, QUERY_TIMEOUT};
use crate::cli::serve::DEFAULT_PROMETHEUS_URL;
use crate::report::{self, Release, ReportError};

const FLAG: &str = "--prometheus-url";

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The Canary.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Where to write: `.svg` for the chart alone, `.html` for the chart, the checks and
    /// the Events (default: NAME-report.html in the current directory).
    #[arg(long, env = "APISIX_CANARY_REPORT_OUT")]
    pub out: Option<PathBuf>,
    /// The Prometheus that scrapes APISIX (default: the one the release's checks
    /// queried, `status.metricsServer`, else serve's default).
    #[arg(long, env = "APISIX_CANARY_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
}

/// The Prometheus to read, and where its URL came from.
fn prometheus_url(flag: Option<&str>, release: &Release) -> (String, &'static str) {
    match (flag, release.metrics_server()) {
        (Some(url), _) => (url.to_owned(), FLAG),
        (None, Some(url)) => (url.to_owned(), "status.metricsServer (the checks queried it)"),
        (None, None) => (DEFAULT_PROMETHEUS_URL.to_owned(), "serve's default"),
    }
}

pub async fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-report.html", args.name)));
    let html = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm") => true,
        Some(e) if e.eq_ignore_ascii_case("svg") => false,
        _ => anyhow::bail!("--out {}: must end in .svg or .html", out.display()),
    };
    let (client, ns) = connect(&args.cluster).await?;
    let release = Release::read(&client, &ns, &args.name).await?;
    let (url, from) = prometheus_url(args.prometheus_url.as_deref(), &release);
    let prometheus = Prometheus::new(&url, QUERY_TIMEOUT)?;
    let report = match release.measure(&client, &prometheus, Timestamp::now()).await {
        Err(e @ ReportError::Prometheus(_)) => {
            let hint = if from == FLAG { String::new() } else { "; --prometheus-url reads another".to_owned() };
            return Err(anyhow::Error::new(e).context(format!("measuring with the Prometheus from {from}{hint}")));
        }
        result => result?,
    };
    let svg = report::svg::render(&report)?;
    let text = if html { report::html::render(&report, &svg) } else { svg };
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}: {} ({from})", out.display(), report.summary());
    Ok(())
}
