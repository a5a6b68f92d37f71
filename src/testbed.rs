//! Our webhook server installed into the simulated cluster (the `sim` crate), the way a
//! real install does it: a dev CA, the serving certificate for the Service DNS name, our
//! CRDs and webhook configurations from [`manifests`] with that CA as `caBundle`. Used
//! by `apisix-canary sim --with-webhook` and the end-to-end tests; never by `serve`.
//! The sim knows nothing of us: this glue only uses its product-neutral API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use serde_json::{Value, json};
use sim::Sim;

use crate::manifests::{self, DEFAULT_NAMESPACE, DEFAULT_SERVICE, Target};
use crate::server::run::{Running, ServeConfig, start};
use crate::tls::generate::{self, DevCerts};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("generating the webhook certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("writing the webhook certificates: {0}")]
    CertificateFiles(#[source] std::io::Error),
    #[error("starting the webhook server: {0}")]
    Server(String),
    #[error("encoding {what}: {source}")]
    Encode { what: String, source: serde_json::Error },
    #[error("registering with the simulated cluster: {0}")]
    Sim(#[from] sim::SimError),
    #[error("reading the server's Deployment: {0}")]
    Read(#[from] kube::Error),
    #[error("the server's pod did not run within {0:?}")]
    NotRunning(Duration),
}

/// How long the server's pod may take to run: the sim readies pods in a fraction of a second.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(10);
const RUNNING_POLL: Duration = Duration::from_millis(50);

/// The webhook server running for a sim, and where its certificate files are.
#[derive(Debug)]
pub struct Installed {
    pub server: Running,
    pub certs: DevCerts,
    /// Holds the certificate files while the server re-reads them.
    _dir: tempfile::TempDir,
    pub cert_dir: PathBuf,
}

/// Starts our webhook server on loopback, maps the `apisix-canary` Service to it and
/// applies our CRDs and webhook configurations with its CA bundle.
pub async fn install(sim: &Sim) -> Result<Installed, InstallError> {
    let names = generate::service_dns_names(DEFAULT_SERVICE, DEFAULT_NAMESPACE);
    let certs = generate::generate(&names)?;
    let dir = tempfile::tempdir().map_err(InstallError::CertificateFiles)?;
    certs.write(dir.path()).map_err(InstallError::CertificateFiles)?;
    let server = start_server(dir.path()).await?;
    sim.register_service(DEFAULT_NAMESPACE, DEFAULT_SERVICE, server.addr);

    sim.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEFAULT_NAMESPACE}})).await?;
    let target = Target { ca_bundle: Some(certs.ca_pem.clone().into_bytes()), ..Target::default() };
    let mut objects: Vec<Value> = Vec::new();
    for crd in manifests::crds(&target) {
        objects.push(to_value("a CRD", &crd)?);
    }
    objects.push(to_value("the MutatingWebhookConfiguration", &manifests::mutating(&target))?);
    objects.push(to_value("the ValidatingWebhookConfiguration", &manifests::validating(&target))?);
    // The Deployment the server would run as: its pods' output is the server's log
    // (`kubectl -n apisix-canary logs deploy/apisix-canary`).
    objects.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEFAULT_SERVICE, "namespace": DEFAULT_NAMESPACE, "labels": {"app.kubernetes.io/name": "apisix-canary"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "apisix-canary"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "apisix-canary"}},
                "spec": {"containers": [{
                    "name": "apisix-canary",
                    "image": format!("ghcr.io/apisix-canary/apisix-canary:{}", env!("CARGO_PKG_VERSION")),
                    "args": ["serve"],
                }]},
            },
        },
    }));
    for object in objects {
        sim.create(object).await?;
    }
    let cert_dir = dir.path().to_owned();
    Ok(Installed { server, certs, _dir: dir, cert_dir })
}

/// Waits until the pod of the server's Deployment runs (one available replica), so its
/// log can be read at once (`kubectl logs deploy/apisix-canary`).
pub async fn running(sim: &Sim) -> Result<(), InstallError> {
    let deployments: Api<Deployment> = Api::namespaced(sim.client()?, DEFAULT_NAMESPACE);
    let deadline = Instant::now() + RUNNING_TIMEOUT;
    loop {
        let deployment = deployments.get(DEFAULT_SERVICE).await?;
        if deployment.status.and_then(|s| s.available_replicas).unwrap_or(0) >= 1 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(InstallError::NotRunning(RUNNING_TIMEOUT));
        }
        tokio::time::sleep(RUNNING_POLL).await;
    }
}

/// The one call into the server's start-up, serving the certificate files of `cert_dir`.
async fn start_server(cert_dir: &Path) -> Result<Running, InstallError> {
    let config = ServeConfig::local(cert_dir.join(generate::CERT_FILE), cert_dir.join(generate::KEY_FILE));
    start(&config).await.map_err(|e| InstallError::Server(e.to_string()))
}

fn to_value(what: &str, object: &impl serde::Serialize) -> Result<Value, InstallError> {
    serde_json::to_value(object).map_err(|source| InstallError::Encode { what: what.to_owned(), source })
}
