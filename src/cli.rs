//! The command line: `serve`, `certs`, `sim`, `demo` and the manifests. Every flag is also an `APISIX_CANARY_*`
//! environment variable; defaults live here, once. `sim` and `demo` run the testbed: they
//! exist with the `testbed` feature only (not in the shipped build).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::tls::generate;

mod cluster;
#[cfg(feature = "testbed")]
mod demo;
mod operate;
mod report;
mod revision;
mod serve;
#[cfg(feature = "testbed")]
mod sim;
mod status;

pub use self::serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(name = "apisix-canary", version, about = "Canary releases for Kubernetes services behind Apache APISIX")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "APISIX_CANARY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhooks over HTTPS, and /live, /ready, /metrics over HTTP.
    Serve(Box<ServeArgs>),
    /// Write a development CA and a serving certificate signed by it.
    Certs(CertsArgs),
    /// Print the revision of each Deployment in a manifest, as the lock annotations record it
    /// (the template with the API server's common defaults applied).
    Revision(RevisionArgs),
    /// Print our CRDs (Canary, MetricTemplate, AlertProvider) as YAML.
    Crds(TargetArgs),
    /// Write the CRDs and the webhook configurations to DIR/crds.yaml and DIR/webhooks.yaml.
    Manifests(ManifestsArgs),
    /// Print the RBAC rules `serve` needs (the chart's files/rbac.yaml) as YAML.
    Rbac,
    /// Run the simulated cluster (API server, workloads, gateway) for kubectl; Ctrl-C stops it.
    #[cfg(feature = "testbed")]
    Sim(sim::SimArgs),
    /// Play SCENARIO.md's three acts on the simulated cluster with our webhooks and
    /// controller, in process: promotion, rollback, custom metric.
    #[cfg(feature = "testbed")]
    Demo(demo::DemoArgs),
    /// Show the releases: phase, weight, failed checks, last event; --wait-for for CI.
    Status(status::StatusArgs),
    /// Promote the running release after its next passing check (--force: now).
    Promote(operate::PromoteArgs),
    /// Roll the running release back now.
    Abort(operate::VerbArgs),
    /// Release the failed revision once more.
    Retry(operate::VerbArgs),
    /// Stop acting on a release, keeping its state (spec.suspend).
    Pause(operate::VerbArgs),
    /// Act on a paused release again.
    Resume(operate::VerbArgs),
    /// Chart the last (or current) release: weight, success rate and P99 of the canary
    /// and the stable, thresholds and Events (SVG, or an HTML page with the Events).
    Report(report::ReportArgs),
}

/// Where the API server reaches our webhooks.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Our namespace: where our Service lives; the Deployment webhooks skip it.
    #[arg(long, env = "APISIX_CANARY_NAMESPACE", default_value = crate::manifests::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name of our Service.
    #[arg(long, env = "APISIX_CANARY_SERVICE", default_value = crate::manifests::DEFAULT_SERVICE)]
    pub service: String,
    /// Call the webhooks at https://HOST:PORT instead of through our Service, for a server
    /// that runs outside the cluster (a laptop, the tests); the certificate must name HOST.
    #[arg(long, env = "APISIX_CANARY_WEBHOOK_URL", conflicts_with = "service")]
    pub url: Option<crate::manifests::WebhookUrl>,
    /// PEM CA certificate to put in caBundle (left unset otherwise, for cert-manager's injector).
    #[arg(long, env = "APISIX_CANARY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<crate::manifests::Target> {
        let ca_bundle = match &self.ca_file {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
            None => None,
        };
        Ok(crate::manifests::Target {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            url: self.url.clone(),
            ca_bundle,
        })
    }
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// Directory for crds.yaml and webhooks.yaml (created when missing).
    #[arg(long, env = "APISIX_CANARY_MANIFESTS_OUT_DIR", default_value = "manifests")]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RevisionArgs {
    /// A YAML or JSON manifest (several documents allowed); `-` reads standard input.
    #[arg(default_value = "-")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, tls.crt and tls.key.
    #[arg(long, env = "APISIX_CANARY_CERTS_OUT_DIR", default_value = "certs")]
    pub out_dir: PathBuf,
    /// A DNS name the serving certificate is valid for (repeat for more).
    #[arg(long = "dns-name", env = "APISIX_CANARY_CERTS_DNS_NAMES", value_delimiter = ',', required = true)]
    pub dns_names: Vec<String>,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::api::duration::parse(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).and_then(|d| if d.is_zero() { Err("must be more than zero".to_owned()) } else { Ok(d) })
}

/// Parses the command line and runs it; errors are printed, not panicked.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo speaks on stdout; its logs only when RUST_LOG asks for them.
    #[cfg(feature = "testbed")]
    let default_filter = if matches!(cli.command, Command::Demo(_)) { "off" } else { "info" };
    #[cfg(not(feature = "testbed"))]
    let default_filter = "info";
    let logs = crate::telemetry::init(matches!(cli.log_format, LogFormat::Json), default_filter);
    let result = run(cli);
    // The queued log lines first, then the error, in the order they happened.
    drop(logs);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", said(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: many of our errors already
/// say their cause in their message (`cannot read FILE: No such file ...`).
fn said(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.is_empty() {
            line = cause;
        } else if !line.ends_with(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let verb = |verb, args: &operate::VerbArgs| runtime()?.block_on(operate::run(verb, args));
    match cli.command {
        Command::Certs(args) => certs(&args),
        Command::Revision(args) => revision::run(&args),
        Command::Crds(args) => {
            print!("{}", crate::manifests::crds_yaml(&args.target()?)?);
            Ok(())
        }
        Command::Manifests(args) => manifests(&args),
        Command::Rbac => {
            print!("{}", crate::rbac::yaml()?);
            Ok(())
        }
        #[cfg(feature = "testbed")]
        Command::Sim(args) => runtime()?.block_on(sim::run(args)),
        Command::Serve(args) => runtime()?.block_on(serve::run(*args)),
        #[cfg(feature = "testbed")]
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Status(args) => return runtime()?.block_on(status::run(&args)),
        Command::Promote(args) => verb(operate::Verb::Promote { force: args.force }, &args.verb),
        Command::Abort(args) => verb(operate::Verb::Abort, &args),
        Command::Retry(args) => verb(operate::Verb::Retry, &args),
        Command::Pause(args) => verb(operate::Verb::Pause, &args),
        Command::Resume(args) => verb(operate::Verb::Resume, &args),
        Command::Report(args) => runtime()?.block_on(report::run(&args)),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    let certs = generate::generate(&args.dns_names).context("generating certificates")?;
    certs.write(&args.out_dir).with_context(|| format!("writing certificates to {}", args.out_dir.display()))?;
    let dir = args.out_dir.display();
    eprintln!(
        "wrote {dir}/{}, {dir}/{} and {dir}/{} for {}",
        generate::CA_FILE,
        generate::CERT_FILE,
        generate::KEY_FILE,
        args.dns_names.join(", ")
    );
    eprintln!("caBundle for the webhook configurations:");
    println!("{}", certs.ca_bundle());
    Ok(())
}

fn manifests(args: &ManifestsArgs) -> anyhow::Result<()> {
    let target = args.target.target()?;
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    for (file, yaml) in [
        (crate::manifests::CRDS_FILE, crate::manifests::crds_yaml(&target)?),
        (crate::manifests::WEBHOOKS_FILE, crate::manifests::webhooks_yaml(&target)?),
    ] {
        let path = args.out_dir.join(file);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub(crate) async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let tls = crate::tls::TlsError::Read { path: "/nope".into(), source: io };
        let e = anyhow::Error::new(tls).context("starting the webhook server");
        assert_eq!(said(&e), "starting the webhook server: cannot read /nope: No such file or directory (os error 2)");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(said(&plain), "outer: inner");
    }
}
