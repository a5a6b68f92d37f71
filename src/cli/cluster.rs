//! How a command reaches the cluster: `--kubeconfig` (else `KUBECONFIG`, else
//! in-cluster), and `-n` (else the kubeconfig context's namespace, else `default`).

use std::path::{Path, PathBuf};

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

/// The User-Agent of `serve`'s requests, as audit logs show them (and the field manager
/// kube-apiserver takes from it when a request names none: `apisix-canary`).
pub const SERVE_USER_AGENT: &str = concat!("apisix-canary/", env!("CARGO_PKG_VERSION"), " (serve)");
/// The User-Agent of the commands run with the user's credentials.
const CLI_USER_AGENT: &str = concat!("apisix-canary/", env!("CARGO_PKG_VERSION"), " (cli)");

/// A client and the namespace to work in, for the commands run by a user.
pub async fn connect(args: &ClusterArgs) -> anyhow::Result<(kube::Client, String)> {
    let config = config(args.kubeconfig.as_deref(), CLI_USER_AGENT).await?;
    let ns = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config).context("building the cluster client")?, ns))
}

/// `serve`'s client for `kubeconfig`, else `KUBECONFIG`'s, else the pod's service account.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    kube::Client::try_from(config(kubeconfig, SERVE_USER_AGENT).await?).context("building the cluster client")
}

async fn config(kubeconfig: Option<&Path>, user_agent: &'static str) -> anyhow::Result<kube::Config> {
    let mut config = located(kubeconfig).await?;
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(user_agent)));
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
