//! How a command reaches the cluster: `--kubeconfig` (else `KUBECONFIG`, else
//! in-cluster), and `-n` (else the kubeconfig context's namespace, else `default`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig of the cluster (else KUBECONFIG, else in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace (else the current context's).
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

/// The User-Agent of `serve`'s requests, as audit logs show them, followed by the
/// replica's identity (kube-apiserver takes the field manager of a request that names
/// none from its first word: `apisix-canary`).
pub const SERVE_USER_AGENT: &str = concat!("apisix-canary/", env!("CARGO_PKG_VERSION"), " (serve)");
/// How long `serve` waits for the answer to one API request (from when it is sent) before
/// it gives up and retries: a stuck request never holds a release. kube-apiserver itself
/// ends a request at 60 s; ours are small reads and writes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The User-Agent of the commands run with the user's credentials.
const CLI_USER_AGENT: &str = concat!("apisix-canary/", env!("CARGO_PKG_VERSION"), " (cli)");

/// A client and the namespace to work in, for the commands run by a user.
pub async fn connect(args: &ClusterArgs) -> anyhow::Result<(kube::Client, String)> {
    let config = config(args.kubeconfig.as_deref(), CLI_USER_AGENT).await?;
    let ns = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config).context("building the cluster client")?, ns))
}

/// `serve`'s clients for `kubeconfig`, else `KUBECONFIG`'s, else the pod's service account.
pub struct ServeClients {
    /// Reads and writes, each answered within [`REQUEST_TIMEOUT`] or failed.
    pub requests: kube::Client,
    /// Watches: long polls that may stay silent for minutes (the watcher has its own
    /// idle timeout).
    pub watches: kube::Client,
}

impl ServeClients {
    pub async fn new(kubeconfig: Option<&Path>, identity: &str) -> anyhow::Result<Self> {
        let user_agent = format!("{SERVE_USER_AGENT} {identity}");
        let watches = config(kubeconfig, &user_agent).await?;
        let mut requests = watches.clone();
        requests.read_timeout = Some(REQUEST_TIMEOUT);
        // Counted from the request, not from when its pooled connection went idle.
        requests.reset_reader_on_write = true;
        let build = |config: kube::Config| kube::Client::try_from(config).context("building the cluster client");
        Ok(Self { requests: build(requests)?, watches: build(watches)? })
    }
}

async fn config(kubeconfig: Option<&Path>, user_agent: &str) -> anyhow::Result<kube::Config> {
    let mut config = located(kubeconfig).await?;
    let value = http::HeaderValue::from_str(user_agent)
        .with_context(|| format!("{user_agent:?} is not a valid User-Agent (is the identity printable ASCII?)"))?;
    config.headers.push((http::header::USER_AGENT, value));
    Ok(config)
}

async fn located(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let file =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using {}", path.display()))
        }
        None => kube::Config::infer().await.context("no --kubeconfig, no KUBECONFIG and not in a cluster"),
    }
}
