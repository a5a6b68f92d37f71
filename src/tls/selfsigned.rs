//! `serve --self-signed-secret NAME`: the certificate mode that needs nothing installed
//! beforehand. The replicas share one Secret in our namespace; the first replica to
//! start creates it; the leader renews it ([`super::authority`] decides what and when)
//! and keeps the CA in the `caBundle` of our webhook configurations and of the CRD
//! conversion; every replica serves what the Secret holds, read every interval.
//!
//! ```text
//!  start:  get Secret ─absent─▶ create (AlreadyExists: read the winner's) ─▶ caBundle
//!                     └unusable▶ replace (resourceVersion)               ─▶ caBundle
//!  every interval: get Secret ─▶ serve its pair
//!                  leader only ─▶ authority::next ─change─▶ replace ─▶ caBundle
//!                                                └none───▶ caBundle where it drifted (helm upgrade)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::authority::{self, CA_CERT, CA_KEY, Change, Material, Policy, TLS_CERT, TLS_KEY};
use super::{CertStore, TlsError};

/// When we last wrote the Secret (RFC 3339): the clock of the rotation's grace periods.
pub const CHANGED_AT: &str = "apisix-canary.dev/certificates-changed-at";

/// Where the mode keeps its Secret and whom it keeps trusting it.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub secret: String,
    /// Our Service: the CRD conversion webhook is sent there.
    pub service: String,
    /// The Mutating- and ValidatingWebhookConfiguration of this name.
    pub webhook_configuration: String,
    /// CRDs whose conversion webhook is ours.
    pub crds: Vec<String>,
    pub policy: Policy,
    /// How often every replica reads the Secret (and the leader renews).
    pub interval: Duration,
}

impl Config {
    /// The grace of a rotation step: the API server has seen the new `caBundle` (it
    /// reloads webhook configurations within a second) and every replica has read the
    /// Secret at least twice.
    pub fn grace(interval: Duration) -> time::Duration {
        time::Duration::try_from(interval * 3 + Duration::from_secs(2)).unwrap_or(time::Duration::MINUTE)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what}: {source}")]
    Api { what: String, source: Box<kube::Error> },
    #[error(transparent)]
    Authority(#[from] authority::AuthorityError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("Secret {0} keeps changing under us; giving up for now")]
    Contended(String),
}

/// The self-signed mode of one replica.
#[derive(Clone)]
pub struct SelfSigned {
    client: Client,
    config: Arc<Config>,
    secrets: Api<Secret>,
}

impl SelfSigned {
    pub fn new(client: Client, config: Config) -> Self {
        let secrets = Api::namespaced(client.clone(), &config.namespace);
        Self { client, config: Arc::new(config), secrets }
    }

    fn origin(&self) -> String {
        format!("Secret {}/{}", self.config.namespace, self.config.secret)
    }

    fn api_error(&self, what: &str, source: kube::Error) -> CertError {
        CertError::Api { what: format!("{what} {}", self.origin()), source: Box::new(source) }
    }

    /// What to serve at start: the Secret's pair, after creating the Secret when it is
    /// absent or replacing it when it cannot be served. Whoever writes it, writes the
    /// `caBundle` too, so no replica serves a certificate the API server does not trust.
    pub async fn load(&self) -> Result<Arc<CertStore>, CertError> {
        for _ in 0..3 {
            let now = OffsetDateTime::now_utc();
            let stored = self.secrets.get_opt(&self.config.secret).await.map_err(|e| self.api_error("reading", e))?;
            let material = match &stored {
                Some(secret) => {
                    let material = material_of(secret);
                    match authority::usable(&material, now) {
                        Ok(()) => material,
                        Err(why) => {
                            tracing::warn!(secret = %self.origin(), %why, "the stored certificates cannot be served; replacing them");
                            let Some((fresh, change)) = authority::next(Some(&material), &self.config.policy, now)?
                            else {
                                continue;
                            };
                            match self.write(stored.as_ref(), &fresh, change).await? {
                                Some(_) => fresh,
                                None => continue,
                            }
                        }
                    }
                }
                None => {
                    let Some((fresh, change)) = authority::next(None, &self.config.policy, now)? else { continue };
                    match self.write(None, &fresh, change).await? {
                        Some(_) => fresh,
                        None => continue,
                    }
                }
            };
            return Ok(CertStore::from_pem(&self.origin(), material.cert_pem.as_bytes(), material.key_pem.as_bytes())?);
        }
        Err(CertError::Contended(self.origin()))
    }

    /// Every interval until `stop`: serve what the Secret holds; as the leader, renew it
    /// and keep the `caBundle`s. Errors are logged and tried again at the next tick.
    pub async fn run(
        self,
        store: Arc<CertStore>,
        leader: impl Fn() -> bool + Send + 'static,
        stop: CancellationToken,
        on_swap: impl Fn(&Result<bool, TlsError>) + Send + 'static,
    ) {
        let mut ticker = crate::runtime::Ticker::new(self.config.interval, stop);
        while ticker.next().await {
            match self.tick(&store, leader()).await {
                Ok(swapped) => {
                    if swapped {
                        tracing::info!(cert = %self.origin(), "serving a new certificate");
                        on_swap(&Ok(true));
                    }
                }
                Err(CertError::Tls(e)) => {
                    tracing::error!(error = %e, "the Secret's certificate does not parse; still serving the previous one");
                    on_swap(&Err(e));
                }
                Err(e) => tracing::warn!(error = %e, "self-signed certificates: will try again"),
            }
        }
    }

    /// One tick; whether the served pair changed.
    async fn tick(&self, store: &CertStore, leader: bool) -> Result<bool, CertError> {
        let now = OffsetDateTime::now_utc();
        let stored = self.secrets.get_opt(&self.config.secret).await.map_err(|e| self.api_error("reading", e))?;
        let material = stored.as_ref().map(material_of);
        let usable = if leader {
            if let Some((next, change)) = authority::next(material.as_ref(), &self.config.policy, now)? {
                if self.write(stored.as_ref(), &next, change).await?.is_some() {
                    return Ok(store.replace(next.cert_pem.as_bytes(), next.key_pem.as_bytes())?);
                }
                return Ok(false);
            }
            if let Some(material) = &material {
                self.inject(&material.ca_pem).await?;
            }
            // `next` checked it: material it could not serve would have been replaced.
            true
        } else {
            material.as_ref().is_some_and(|m| authority::usable(m, now).is_ok())
        };
        match material {
            Some(m) if usable => Ok(store.replace(m.cert_pem.as_bytes(), m.key_pem.as_bytes())?),
            _ => Ok(false),
        }
    }

    /// Creates or replaces (at the read resourceVersion) the Secret, then writes the
    /// CA into every `caBundle`. `None` when another replica wrote first.
    async fn write(
        &self,
        existing: Option<&Secret>,
        material: &Material,
        change: Change,
    ) -> Result<Option<Secret>, CertError> {
        let secret = secret_of(&self.config.secret, existing, material);
        let written = match existing {
            None => self.secrets.create(&post_params(), &secret).await,
            Some(_) => self.secrets.replace(&self.config.secret, &post_params(), &secret).await,
        };
        let written = match written {
            Ok(written) => written,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::info!(secret = %self.origin(), "another replica wrote the certificates first");
                return Ok(None);
            }
            Err(e) => return Err(self.api_error("writing", e)),
        };
        tracing::info!(secret = %self.origin(), change = change.as_str(), "self-signed certificates written");
        self.inject(&material.ca_pem).await?;
        Ok(Some(written))
    }

    /// Writes `ca_pem` into the `caBundle` of our webhook configurations and CRD
    /// conversions where it differs; objects not installed yet are skipped.
    pub async fn inject(&self, ca_pem: &str) -> Result<(), CertError> {
        let patch =
            |what: &str, e| CertError::Api { what: format!("writing the caBundle of {what}"), source: Box::new(e) };
        let mutating = Api::<MutatingWebhookConfiguration>::all(self.client.clone());
        self.inject_webhooks(mutating, ca_pem, |c| {
            c.webhooks.iter().flatten().map(|w| (w.name.clone(), w.client_config.ca_bundle.clone())).collect()
        })
        .await?;
        let validating = Api::<ValidatingWebhookConfiguration>::all(self.client.clone());
        self.inject_webhooks(validating, ca_pem, |c| {
            c.webhooks.iter().flatten().map(|w| (w.name.clone(), w.client_config.ca_bundle.clone())).collect()
        })
        .await?;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd_name in &self.config.crds {
            let Some(crd) = crds.get_opt(crd_name).await.map_err(|e| patch(crd_name, e))? else { continue };
            if let Some(body) = conversion_patch(&crd, ca_pem, &self.config) {
                crds.patch(crd_name, &patch_params(), &Patch::Merge(body)).await.map_err(|e| patch(crd_name, e))?;
                tracing::info!(crd = %crd_name, "caBundle written into the CRD conversion webhook");
            }
        }
        Ok(())
    }
}

impl SelfSigned {
    /// Sets `caBundle` on every webhook of our configuration of kind `K` that differs;
    /// `webhooks` lists each webhook's name and bundle.
    async fn inject_webhooks<K>(
        &self,
        api: Api<K>,
        ca_pem: &str,
        webhooks: impl Fn(&K) -> Vec<(String, Option<ByteString>)>,
    ) -> Result<(), CertError>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = &self.config.webhook_configuration;
        let kind = K::kind(&());
        let failed = |e| CertError::Api { what: format!("writing the caBundle of {kind} {name}"), source: Box::new(e) };
        let Some(config) = api.get_opt(name).await.map_err(failed)? else { return Ok(()) };
        let bundles = webhooks(&config);
        if let Some(ops) = bundle_ops(bundles.iter().map(|(n, b)| (n, b.as_ref())), ca_pem) {
            api.patch(name, &patch_params(), &Patch::Json::<()>(ops)).await.map_err(failed)?;
            tracing::info!(%name, %kind, "caBundle written");
        }
        Ok(())
    }
}

/// The Secret's material; missing keys read as empty (and so as unusable).
pub fn material_of(secret: &Secret) -> Material {
    let key = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    let changed_at = secret
        .annotations()
        .get(CHANGED_AT)
        .and_then(|at| OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok());
    Material {
        ca_pem: key(CA_CERT),
        ca_key_pem: key(CA_KEY),
        cert_pem: key(TLS_CERT),
        key_pem: key(TLS_KEY),
        changed_at,
    }
}

/// A `kubernetes.io/tls` Secret holding `material`, keeping the labels and annotations
/// someone else put on `existing`.
fn secret_of(name: &str, existing: Option<&Secret>, material: &Material) -> Secret {
    let mut metadata = existing.map(|s| s.metadata.clone()).unwrap_or_else(|| ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_owned(), "apisix-canary".to_owned())])),
        ..ObjectMeta::default()
    });
    metadata.managed_fields = None;
    if let Some(at) = material.changed_at.and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
    {
        metadata.annotations.get_or_insert_with(BTreeMap::new).insert(CHANGED_AT.to_owned(), at);
    }
    let data = [
        (CA_CERT, &material.ca_pem),
        (CA_KEY, &material.ca_key_pem),
        (TLS_CERT, &material.cert_pem),
        (TLS_KEY, &material.key_pem),
    ];
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes()))).collect()),
        ..Secret::default()
    }
}

/// JSON Patch operations that set `caBundle` on every webhook whose bundle differs, each
/// guarded by a `test` of the webhook's name so a reordered list is never patched blind.
fn bundle_ops<'a>(
    webhooks: impl Iterator<Item = (&'a String, Option<&'a ByteString>)>,
    ca_pem: &str,
) -> Option<json_patch::Patch> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut ops = Vec::new();
    for (i, (name, bundle)) in webhooks.enumerate() {
        if bundle.map(|b| b.0.as_slice()) != Some(ca_pem.as_bytes()) {
            ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}));
            ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
        }
    }
    if ops.is_empty() {
        return None;
    }
    serde_json::from_value(Value::Array(ops)).ok()
}

/// A merge patch that points a CRD's conversion webhook at our Service (when it names a
/// Service, not a URL) and trusts `ca_pem`; `None` when it already does.
fn conversion_patch(crd: &CustomResourceDefinition, ca_pem: &str, config: &Config) -> Option<Value> {
    let client = crd.spec.conversion.as_ref()?.webhook.as_ref()?.client_config.as_ref()?;
    let bundle_ok = client.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(ca_pem.as_bytes());
    let service_ok =
        client.service.as_ref().is_none_or(|s| s.namespace == config.namespace && s.name == config.service);
    if bundle_ok && service_ok {
        return None;
    }
    let mut client_config = json!({"caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)});
    if client.service.is_some() {
        client_config["service"] = json!({"namespace": config.namespace, "name": config.service});
    }
    Some(json!({"spec": {"conversion": {"webhook": {"clientConfig": client_config}}}}))
}
/// Our field manager on the certificate's writes, as on every other.
fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(crate::controller::MANAGER.to_owned()), ..PatchParams::default() }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(crate::controller::MANAGER.to_owned()), ..PostParams::default() }
}
