//! The admission chain and CRD conversion as kube-apiserver runs them: webhook
//! configurations read from the store, matched by rules and selectors, called over
//! HTTPS trusting their `caBundle`, patches applied, denials turned into 403s.
//!
//! Only loopback addresses are ever dialled: a Service in `clientConfig` is mapped to a
//! local address registered with [`Webhooks::register_service`]; a `url` must be https
//! on a loopback address (or `localhost`), anything else fails as an unreachable host.

mod response;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use self::response::Response;
use super::resources::Target;
use super::selector::{LabelSelector, labels};
use super::status::ApiError;

const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

/// One write under admission.
#[derive(Debug)]
pub struct Call<'a> {
    pub operation: &'a str,
    pub target: &'a Target<'a>,
    /// `scale` for `/scale` writes (status writes are not admitted).
    pub sub: Option<&'a str>,
    pub name: &'a str,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
    pub user: &'a str,
}

/// What the chain reads of the cluster for one call, as kube-apiserver reads it from
/// its informers: the webhook configurations of one kind (mutating or validating) and
/// the labels of the request's namespace (for `namespaceSelector`).
#[derive(Debug, Default)]
pub struct Registered {
    pub configurations: Vec<Arc<Value>>,
    pub namespace_labels: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Webhooks {
    services: Mutex<HashMap<(String, String), SocketAddr>>,
}

/// Why a webhook call failed, before failurePolicy decides what it means.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Config(String),
    #[error("failed to call webhook: {0}")]
    Transport(String),
    #[error("failed to call webhook: the server responded with HTTP {0}")]
    Status(u16),
    #[error("received invalid webhook response: {0}")]
    Response(String),
}

impl Webhooks {
    /// Where the Service `namespace/name` of a `clientConfig` is served locally.
    pub fn register_service(&self, namespace: &str, name: &str, addr: SocketAddr) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services.insert((namespace.to_owned(), name.to_owned()), addr);
    }

    /// The address and TLS server name of a `clientConfig`, and the request path.
    fn endpoint(&self, client: &Value) -> Result<(SocketAddr, String, String), CallError> {
        if let Some(service) = client.get("service") {
            let ns = service["namespace"].as_str().unwrap_or_default();
            let name = service["name"].as_str().unwrap_or_default();
            let path = service["path"].as_str().unwrap_or("/").to_owned();
            let services = self.services.lock().unwrap_or_else(|p| p.into_inner());
            let addr = services.get(&(ns.to_owned(), name.to_owned())).copied().ok_or_else(|| {
                CallError::Transport(format!("service \"{name}.{ns}.svc\" has no endpoints in the simulated cluster"))
            })?;
            return Ok((addr, format!("{name}.{ns}.svc"), path));
        }
        let url = client
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| CallError::Config("clientConfig has neither service nor url".into()))?;
        let uri: http::Uri = url.parse().map_err(|e| CallError::Config(format!("bad url {url:?}: {e}")))?;
        // kube-apiserver refuses these at validation; never dial them.
        if uri.scheme_str() != Some("https") {
            return Err(CallError::Config(format!("{url}: 'https' is the only allowed URL scheme")));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(CallError::Config(format!("{url}: user information is not permitted in the URL")));
        }
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let ip: std::net::IpAddr = if host == "localhost" {
            [127, 0, 0, 1].into()
        } else {
            host.parse().map_err(|_| {
                CallError::Transport(format!(
                    "{host}: only loopback webhooks can be reached from the simulated cluster"
                ))
            })?
        };
        if !ip.is_loopback() {
            return Err(CallError::Transport(format!(
                "{ip}: only loopback webhooks can be reached from the simulated cluster"
            )));
        }
        let path = uri.path_and_query().map_or("/".to_owned(), |p| p.to_string());
        Ok((SocketAddr::new(ip, port), host, path))
    }

    /// POSTs a JSON body to a webhook over TLS and returns the JSON answer.
    async fn post(&self, client: &Value, body: &Value, timeout: Duration) -> Result<Value, CallError> {
        let (addr, server_name, path) = self.endpoint(client)?;
        let ca = client.get("caBundle").and_then(Value::as_str).unwrap_or_default();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .map_err(|e| CallError::Config(format!("caBundle: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|e| CallError::Config(format!("caBundle: {e}")))?;
            roots.add(cert).map_err(|e| CallError::Config(format!("caBundle: {e}")))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| CallError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.clone()).map_err(|e| CallError::Config(e.to_string()))?;
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Config(e.to_string()))?;
        let exchange = async {
            let tcp =
                TcpStream::connect(addr).await.map_err(|e| CallError::Transport(format!("dial tcp {addr}: {e}")))?;
            let tls = TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| CallError::Transport(format!("tls: {e}")))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?;
            tokio::spawn(conn);
            let request = http::Request::post(&path)
                .header(http::header::HOST, server_name.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json")
                .body(Full::new(Bytes::from(bytes)))
                .map_err(|e| CallError::Config(e.to_string()))?;
            let response = sender.send_request(request).await.map_err(|e| CallError::Transport(e.to_string()))?;
            let status = response.status().as_u16();
            let body =
                response.into_body().collect().await.map_err(|e| CallError::Transport(e.to_string()))?.to_bytes();
            if status != 200 {
                return Err(CallError::Status(status));
            }
            serde_json::from_slice(&body).map_err(|e| CallError::Response(e.to_string()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Transport(format!("context deadline exceeded after {timeout:?}")))?
    }

    /// Runs the mutating webhooks in order, applying their patches to `object`.
    pub async fn mutate(
        &self,
        registered: &Registered,
        call: &Call<'_>,
        object: &mut Value,
    ) -> Result<Vec<String>, ApiError> {
        let mut warnings = Vec::new();
        for hook in matching(registered, call, object) {
            dry_run_allowed(&hook, call)?;
            match self.review(&hook, call, object, true).await {
                Ok(response) => {
                    warnings.extend(response.warnings.iter().cloned());
                    deny_unless_allowed(&hook, &response)?;
                    if let Some(patch) = &response.patch {
                        json_patch::patch(object, &patch.0).map_err(|e| {
                            ApiError::Internal(format!(
                                "admission webhook \"{}\" returned an unappliable patch: {e}",
                                hook.name
                            ))
                        })?;
                    }
                }
                Err(e) => on_failure(&hook, e)?,
            }
        }
        Ok(warnings)
    }

    /// Runs the validating webhooks; any denial fails the write.
    pub async fn validate(
        &self,
        registered: &Registered,
        call: &Call<'_>,
        object: &Value,
    ) -> Result<Vec<String>, ApiError> {
        let mut warnings = Vec::new();
        for hook in matching(registered, call, object) {
            dry_run_allowed(&hook, call)?;
            match self.review(&hook, call, object, false).await {
                Ok(response) => {
                    warnings.extend(response.warnings.iter().cloned());
                    deny_unless_allowed(&hook, &response)?;
                }
                Err(e) => on_failure(&hook, e)?,
            }
        }
        Ok(warnings)
    }

    /// One AdmissionReview v1 round trip; the answer checked as kube-apiserver checks it.
    async fn review(
        &self,
        hook: &Hook,
        call: &Call<'_>,
        object: &Value,
        mutating: bool,
    ) -> Result<Response, CallError> {
        let uid = super::defaults::uid();
        let r = call.target.resource;
        let (group, version) = (r.group.as_str(), call.target.version);
        let kind = match call.sub {
            Some("scale") => json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            _ => json!({"group": group, "version": version, "kind": r.kind}),
        };
        let resource = json!({"group": group, "version": version, "resource": r.plural});
        let deleting = call.operation == "DELETE";
        let options_kind = match call.operation {
            "CREATE" => "CreateOptions",
            "UPDATE" => "UpdateOptions",
            _ => "DeleteOptions",
        };
        let mut request = json!({
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": call.name,
            "operation": call.operation,
            "userInfo": {"username": call.user, "groups": ["system:authenticated"]},
            "object": if deleting { Value::Null } else { object.clone() },
            "oldObject": call.old.cloned().unwrap_or(Value::Null),
            "dryRun": call.dry_run,
            "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
        });
        if r.namespaced {
            request["namespace"] = json!(call.target.namespace);
        }
        if let Some(sub) = call.sub {
            request["subResource"] = json!(sub);
            request["requestSubResource"] = json!(sub);
        }
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        let answer = self.post(&hook.client, &review, hook.timeout).await?;
        Response::read(&answer, &uid, mutating).map_err(CallError::Response)
    }

    /// Converts objects with a CRD's conversion webhook.
    pub async fn convert(&self, client: &Value, objects: Vec<Value>, desired: &str) -> Result<Vec<Value>, ApiError> {
        let uid = super::defaults::uid();
        let count = objects.len();
        let review = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
        });
        // kube-apiserver names the GroupVersionKind converted from: `group/v1, Kind=K`.
        let from = objects.first().map_or_else(String::new, |o| {
            let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            format!("{}, Kind={}", s("apiVersion"), s("kind"))
        });
        let failed = |e: String| ApiError::Internal(format!("conversion webhook for {from} failed: {e}"));
        let answer = self
            .post(client, &review, Duration::from_secs(DEFAULT_TIMEOUT_SECONDS))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let response = &answer["response"];
        if response["result"]["status"] != "Success" {
            return Err(failed(response["result"]["message"].as_str().unwrap_or("no message").to_owned()));
        }
        let converted = response["convertedObjects"].as_array().cloned().unwrap_or_default();
        if converted.len() != count || response["uid"] != uid.as_str() {
            return Err(failed(format!("expected {count} objects for uid {uid}")));
        }
        Ok(converted)
    }
}

/// A webhook of a configuration, with what the chain needs of it.
#[derive(Debug, Clone)]
struct Hook {
    name: String,
    client: Value,
    fail_closed: bool,
    timeout: Duration,
    /// `sideEffects` other than None/NoneOnDryRun: a dry run cannot call it.
    side_effects: bool,
}

/// kube-apiserver refuses a dry run that would reach a webhook with side effects.
fn dry_run_allowed(hook: &Hook, call: &Call<'_>) -> Result<(), ApiError> {
    if call.dry_run && hook.side_effects {
        return Err(ApiError::BadRequest(format!("admission webhook \"{}\" does not support dry run", hook.name)));
    }
    Ok(())
}

/// A denial as kube-apiserver's `webhookerrors.ToStatusErr` words it: the message, else
/// the reason, else "without explanation"; a code under 400 becomes 403.
fn deny_unless_allowed(hook: &Hook, response: &Response) -> Result<(), ApiError> {
    if response.allowed {
        return Ok(());
    }
    let denied = format!("admission webhook \"{}\" denied the request", hook.name);
    let text = match (response.status.message.as_str(), response.status.reason.as_str()) {
        ("", "") => format!("{denied} without explanation"),
        ("", reason) => format!("{denied}: {reason}"),
        (message, _) => format!("{denied}: {message}"),
    };
    Err(match response.status.code {
        400 => ApiError::BadRequest(text),
        422 => ApiError::Invalid(text),
        _ => ApiError::Forbidden(text),
    })
}

fn on_failure(hook: &Hook, error: CallError) -> Result<(), ApiError> {
    if hook.fail_closed {
        Err(ApiError::Internal(format!("failed calling webhook \"{}\": {error}", hook.name)))
    } else {
        tracing::warn!(webhook = %hook.name, error = %error, "webhook failed, failurePolicy Ignore lets the write through");
        Ok(())
    }
}

fn contains(list: &Value, value: &str) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(|v| v == "*" || v == value))
}

/// The webhooks of the registered configurations whose rules and selectors match.
fn matching(registered: &Registered, call: &Call<'_>, object: &Value) -> Vec<Hook> {
    let r = call.target.resource;
    let resource = match call.sub {
        Some(sub) => format!("{}/{sub}", r.plural),
        None => r.plural.clone(),
    };
    let mut hooks = Vec::new();
    let mut sorted: Vec<&Arc<Value>> = registered.configurations.iter().collect();
    sorted.sort_by(|a, b| {
        a.pointer("/metadata/name").and_then(Value::as_str).cmp(&b.pointer("/metadata/name").and_then(Value::as_str))
    });
    for config in sorted {
        for w in config.get("webhooks").and_then(Value::as_array).into_iter().flatten() {
            let rule_matches = w["rules"].as_array().into_iter().flatten().any(|rule| {
                contains(&rule["apiGroups"], &r.group)
                    && contains(&rule["apiVersions"], call.target.version)
                    && contains(&rule["resources"], &resource)
                    && contains(&rule["operations"], call.operation)
                    && match rule["scope"].as_str() {
                        Some("Namespaced") => r.namespaced,
                        Some("Cluster") => !r.namespaced,
                        _ => true,
                    }
            });
            if !rule_matches {
                continue;
            }
            if r.namespaced
                && !LabelSelector::from_object(&w["namespaceSelector"]).matches(&registered.namespace_labels)
            {
                continue;
            }
            let object_selector = LabelSelector::from_object(&w["objectSelector"]);
            let candidates = [Some(object), call.old];
            if !object_selector.is_empty() && !candidates.iter().flatten().any(|o| object_selector.matches(&labels(o)))
            {
                continue;
            }
            let side_effects = w["sideEffects"].as_str().unwrap_or("Unknown");
            let timeout = w["timeoutSeconds"].as_u64().unwrap_or(DEFAULT_TIMEOUT_SECONDS);
            let hook = Hook {
                name: w["name"].as_str().unwrap_or_default().to_owned(),
                client: w["clientConfig"].clone(),
                fail_closed: w["failurePolicy"].as_str() != Some("Ignore"),
                timeout: Duration::from_secs(timeout),
                side_effects: !matches!(side_effects, "None" | "NoneOnDryRun"),
            };
            hooks.push(hook);
        }
    }
    hooks
}
