//! Alerts: what the controller has to say about a release ([`Notice`]), posted to the
//! Slack, MS Teams, Discord or generic webhooks of the Canary's `analysis.alerts`, each
//! filtered by its severity as Flagger does.
//!
//! ```text
//!  Notice ─▶ wants(alert.severity) ─▶ GET AlertProvider (+ Secret) ─▶ destination::resolve
//!                                                                       │
//!          (alert, Ok | Err) ◀── send: POST payload::request(kind, …) ◀─┘
//! ```
//!
//! The AlertProvider and its Secret are read at every notice, so a rotated webhook URL
//! applies to the next alert without a restart.

pub mod destination;
pub mod payload;

use std::collections::BTreeMap;
use std::time::Duration;

use ::http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Api;

pub use self::destination::{Destination, ProviderError, resolve};
use super::http::{self, Resolver};
use crate::api::alert_provider::{AlertProvider, Kind};
use crate::api::canary::Phase;
use crate::release::plan::{Alert, Severity};

/// The deadline of one post, connection included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a refusing endpoint's body an error quotes.
const BODY_QUOTE: usize = 512;

/// One thing to tell the release's alerts, in Flagger's words: "New revision detected,
/// progressing canary analysis." (info), "Canary is waiting for approval." (warn),
/// "Failed checks threshold reached 5" (error)...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The Canary.
    pub canary: String,
    pub namespace: String,
    /// The Deployment released.
    pub target: String,
    pub phase: Phase,
    pub severity: Severity,
    pub message: String,
    /// (title, value) pairs, in order: `("Target", "Deployment/podinfo.test")`.
    pub fields: Vec<(String, String)>,
}

impl Notice {
    /// `<canary>.<namespace>`, as the chat services show who speaks.
    pub fn subject(&self) -> String {
        format!("{}.{}", self.canary, self.namespace)
    }
}

/// Whether an alert subscribed at `subscribed` receives a notice of `notice`: `info`
/// receives everything, `warn` warnings and errors, `error` errors only.
pub fn wants(subscribed: Severity, notice: Severity) -> bool {
    notice >= subscribed
}

/// Posts `notice` to `dest` in the shape `kind` documents. A 2xx answer is success;
/// any other is an error quoting the status and the start of the body. The address is
/// never quoted: chat webhook URLs are credentials.
pub async fn send(dest: &Destination, kind: Kind, notice: &Notice, resolver: &Resolver) -> Result<(), String> {
    let fail = |what: String| format!("AlertProvider {}: {what}", dest.provider);
    let (url, body) = payload::request(kind, dest, notice, Timestamp::now());
    let mut headers = HeaderMap::new();
    if let Some(token) = &dest.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| fail("token is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let options = http::Options {
        timeout: Some(SEND_TIMEOUT),
        proxy: dest.proxy.as_deref(),
        headers,
        resolver: Some(resolver),
        ..http::Options::default()
    };
    let client = http::client(&options).map_err(fail)?;
    let host = url.host().unwrap_or_default().to_owned();
    let response = client
        .post(url.to_string())
        .json(&body)
        .send()
        .await
        .map_err(|e| fail(format!("post to {host}: {}", http::error_chain(&e))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let quoted: String = text.trim().chars().take(BODY_QUOTE).collect();
    Err(fail(format!("post to {host}: {status}: {quoted}")))
}

/// Posts `notice` to every alert of the release that [`wants`] it, concurrently, each
/// AlertProvider (in `provider_namespace`, else `namespace`) and its Secret read anew.
/// One result per alert that was due, named by the alert; errors are returned, the
/// caller decides how loud to be.
pub async fn notify(
    client: &kube::Client,
    namespace: &str,
    alerts: &[Alert],
    notice: &Notice,
    resolver: &Resolver,
) -> Vec<(String, Result<(), String>)> {
    let due = alerts.iter().filter(|a| wants(a.severity, notice.severity)).map(|alert| async move {
        let ns = alert.provider_namespace.as_deref().unwrap_or(namespace);
        let result = match read_provider(client, ns, &alert.provider).await {
            Ok((kind, dest)) => send(&dest, kind, notice, resolver).await,
            Err(e) => Err(e),
        };
        (alert.name.clone(), result)
    });
    futures_util::future::join_all(due).await
}

/// The AlertProvider `namespace/name` and its Secret, resolved.
async fn read_provider(client: &kube::Client, namespace: &str, name: &str) -> Result<(Kind, Destination), String> {
    let provider = format!("{name}.{namespace}");
    let spec = match Api::<AlertProvider>::namespaced(client.clone(), namespace).get(name).await {
        Ok(p) => p.spec,
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(format!("AlertProvider {provider} not found")),
        Err(e) => return Err(format!("AlertProvider {provider}: {}", http::error_chain(&e))),
    };
    let secret = match &spec.secret_ref {
        Some(r) => match Api::<Secret>::namespaced(client.clone(), namespace).get(&r.name).await {
            Ok(secret) => Some(secret_data(&secret)),
            // resolve() says so, in the same words as the other Secret problems.
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(format!("AlertProvider {provider}: Secret {}: {}", r.name, http::error_chain(&e))),
        },
        None => None,
    };
    resolve(&provider, &spec, secret.as_ref()).map_err(|e| e.to_string())
}

/// A Secret's `data`, decoded (a value that is not UTF-8 is read lossily and then fails
/// as a URL, which names the key).
pub fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    let data = secret.data.iter().flatten();
    data.map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())).collect()
}

#[cfg(test)]
mod tests;
