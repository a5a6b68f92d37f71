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

/// A client and the namespace to work in.
pub async fn connect(args: &ClusterArgs) -> anyhow::Result<(kube::Client, String)> {
    let config = config(args.kubeconfig.as_deref()).await?;
    let ns = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config).context("building the cluster client")?, ns))
}

/// A client for `kubeconfig`, else `KUBECONFIG`'s, else the pod's service account.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    kube::Client::try_from(config(kubeconfig).await?).context("building the cluster client")
}

async fn config(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
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
