//! A `MetricTemplate`'s provider settings as the HTTP options of its Prometheus client:
//! authorization from its Secret (`token` for a bearer, else `username` and `password`
//! for basic auth), its custom headers, `insecureSkipVerify`, and our `--resolve` table.

use std::collections::BTreeMap;

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderValue};
use k8s_openapi::ByteString;

use crate::analysis::http::{Options, Resolver};
use crate::api::field::{FieldError, Path, Shown};
use crate::api::metric_template::{HEADER_VALUES, MetricProvider};
use crate::api::rules;

/// Why a template cannot set its own `Authorization` along with a `secretRef`.
pub const AUTHORIZATION_CONFLICT: &str = "the Authorization header comes from secretRef: set one or the other";

/// Why a provider's settings cannot make a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The Secret of `secretRef`: missing, or without usable credentials.
    #[error("secret {secret} error: {reason}")]
    Secret { secret: String, reason: String },
    /// A header that is not HTTP, or that the Secret's credentials would replace.
    #[error("{0}")]
    Header(FieldError),
}

impl ProviderError {
    /// The check's halt message, in Flagger's words for Secret problems
    /// (`Metric template <name>.<ns> secret <secret> error: <why>`).
    pub fn halt_message(&self, template: &str, namespace: &str) -> String {
        match self {
            ProviderError::Secret { .. } => format!("Metric template {template}.{namespace} {self}"),
            ProviderError::Header(_) => format!("Metric template {template}.{namespace} error: {self}"),
        }
    }
}

/// The options of a client for `provider`. `secret` is the data of the Secret its
/// `secretRef` names, `None` when that Secret does not exist; it is not read when the
/// provider names no Secret.
pub fn options<'a>(
    provider: &MetricProvider,
    secret: Option<&BTreeMap<String, ByteString>>,
    resolver: &'a Resolver,
) -> Result<Options<'a>, ProviderError> {
    let (mut headers, errors) = custom_headers(provider);
    if let Some(e) = errors.into_iter().next() {
        return Err(ProviderError::Header(e));
    }
    if let Some(secret_ref) = &provider.secret_ref {
        let bad = |reason: &str| ProviderError::Secret { secret: secret_ref.name.clone(), reason: reason.to_owned() };
        let data = secret.ok_or_else(|| bad("not found"))?;
        headers.insert(AUTHORIZATION, authorization(data).map_err(bad)?);
    }
    Ok(Options {
        insecure_skip_verify: provider.insecure_skip_verify.unwrap_or(false),
        headers,
        resolver: Some(resolver),
        ..Options::default()
    })
}

/// The provider's `headers`, every value of each (Flagger's lists send them all), and
/// what is wrong with any: not HTTP, neither a string nor a list of strings, or an
/// `Authorization` that secretRef would replace. The admission webhook reports the same.
pub fn custom_headers(provider: &MetricProvider) -> (http::HeaderMap, Vec<FieldError>) {
    let mut headers = http::HeaderMap::new();
    let mut errors = Vec::new();
    let path = Path::new("spec").child("provider").child("headers");
    for (name, values) in provider.headers.iter().flatten() {
        let path = path.key(name);
        let values = match values.values() {
            Ok(values) => values,
            Err(written) => {
                errors.push(FieldError::invalid(&path, Shown::bare(written), HEADER_VALUES));
                continue;
            }
        };
        for value in values {
            match rules::http_header(&path, name, value) {
                Ok((key, _)) if key == AUTHORIZATION && provider.secret_ref.is_some() => {
                    errors.push(FieldError::forbidden(&path, AUTHORIZATION_CONFLICT));
                    break;
                }
                Ok((key, value)) => {
                    headers.append(key, value);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    (headers, errors)
}

/// `Bearer <token>` when the Secret has a `token`, else `Basic` from `username` and
/// `password`. A token is trimmed: one written with `echo` ends in a newline.
fn authorization(data: &BTreeMap<String, ByteString>) -> Result<HeaderValue, &'static str> {
    let field = |key: &str| data.get(key).map(|b| b.0.as_slice()).filter(|b| !b.is_empty());
    let mut value = match (field("token"), field("username"), field("password")) {
        (Some(token), _, _) => {
            let token = std::str::from_utf8(token).map_err(|_| "token is not UTF-8")?.trim();
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "token is not a valid HTTP header value")?
        }
        (None, Some(user), Some(password)) => {
            let pair = [user, b":", password].concat();
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| "username and password cannot be encoded")?
        }
        (None, Some(_), None) => return Err("has a username but no password"),
        (None, None, Some(_)) => return Err("has a password but no username"),
        (None, None, None) => return Err("has neither a token nor a username and password"),
    };
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests;
