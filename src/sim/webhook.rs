//! Our own webhook server inside the simulated cluster, registered the way a real
//! install does it: a dev CA, the serving certificate for the Service DNS name, our
//! CRDs and webhook configurations from `manifests` with that CA as `caBundle`.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Sim, SimError};
use crate::manifests::{self, DEFAULT_NAMESPACE, DEFAULT_SERVICE, Target};
use crate::server::run::{Running, ServeConfig, start};
use crate::tls::generate::{self, DevCerts};

/// The webhook server running for a sim, and where its certificate files are.
#[derive(Debug)]
pub struct Installed {
    pub server: Running,
    pub certs: DevCerts,
    /// Holds the certificate files while the server re-reads them.
    _dir: tempfile::TempDir,
    pub cert_dir: PathBuf,
}

impl Sim {
    /// Starts our webhook server on loopback, maps the `apisix-canary` Service to it and
    /// applies our CRDs and webhook configurations with its CA bundle.
    pub async fn install_webhook(&self) -> Result<Installed, SimError> {
        let names = generate::service_dns_names(DEFAULT_SERVICE, DEFAULT_NAMESPACE);
        let certs = generate::generate(&names).map_err(|e| SimError::Manifest(format!("certificates: {e}")))?;
        let dir = tempfile::tempdir().map_err(|source| SimError::Bind { what: "webhook certificates", source })?;
        certs.write(dir.path()).map_err(|source| SimError::Bind { what: "webhook certificates", source })?;
        let config = ServeConfig::local(dir.path().join(generate::CERT_FILE), dir.path().join(generate::KEY_FILE));
        let server = start(&config).await.map_err(|e| SimError::Manifest(format!("webhook server: {e}")))?;
        self.cluster.webhooks.register_service(DEFAULT_NAMESPACE, DEFAULT_SERVICE, server.addr);

        self.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEFAULT_NAMESPACE}})).await?;
        let target = Target { ca_bundle: Some(certs.ca_pem.clone().into_bytes()), ..Target::default() };
        let mut objects: Vec<Value> = Vec::new();
        for crd in manifests::crds(&target) {
            objects.push(to_value(&crd)?);
        }
        objects.push(to_value(&manifests::mutating(&target))?);
        objects.push(to_value(&manifests::validating(&target))?);
        for object in objects {
            self.create(object).await?;
        }
        let cert_dir = dir.path().to_owned();
        Ok(Installed { server, certs, _dir: dir, cert_dir })
    }
}

fn to_value(object: &impl serde::Serialize) -> Result<Value, SimError> {
    serde_json::to_value(object).map_err(|e| SimError::Manifest(e.to_string()))
}
