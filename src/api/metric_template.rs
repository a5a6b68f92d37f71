//! `MetricTemplate` (apisix-canary.dev/v1beta1): a custom PromQL check, Flagger's shape.

// kube's derive repeats `printcolumn(...)` keys by design.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only provider type: Prometheus (or anything that speaks its HTTP API).
pub const PROMETHEUS: &str = "prometheus";

/// Variables a query may use, as `{{ name }}`; `{{ variables.x }}` reads the metric's
/// `templateVariables`.
/// Flagger's first (`ingress` is the target's name, as in Flagger without an
/// ingressRef), then ours.
pub const VARIABLES: &[&str] =
    &["namespace", "name", "target", "service", "route", "ingress", "interval", "generated_route", "canary_nodes"];

/// A PromQL query and the Prometheus that answers it, for the Canary metrics that name
/// this template in `templateRef`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "apisix-canary.dev",
    version = "v1beta1",
    kind = "MetricTemplate",
    namespaced,
    doc = "A custom Prometheus check for the canary analysis",
    derive = "PartialEq",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider.type")
)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateSpec {
    pub provider: MetricProvider,
    /// The PromQL query whose value is judged against the metric's thresholdRange (an
    /// empty result or NaN is "no values found"). Flagger's variables, in Flagger's
    /// meaning: `{{ namespace }}`, `{{ name }}` (the Canary), `{{ target }}` (the
    /// targetRef's Deployment), `{{ service }}` (spec.service.name, or the target),
    /// `{{ route }}` (the routeRef's ApisixRoute, so `{{ route }}-{{ target }}-canary`
    /// names the generated route), `{{ ingress }}` (the target), `{{ interval }}` (the
    /// metric's) and `{{ variables.<key> }}` (the metric's templateVariables); ours:
    /// `{{ generated_route }}` (the generated ApisixRoute) and `{{ canary_nodes }}` (the
    /// canary's upstream nodes, for `node=~"..."`). Any other is rejected.
    pub query: String,
}

/// The Prometheus a template's query is sent to, and how.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// `prometheus`, the only type: Prometheus, or any server with its HTTP API.
    #[serde(rename = "type")]
    pub type_: String,
    /// Required: base URL of the Prometheus HTTP API, an absolute http or https URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A Secret in the MetricTemplate's namespace with `token` (a bearer token) or
    /// `username` and `password` (basic auth), read at every check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// Do not verify the server's TLS certificate (a self-signed one). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// HTTP headers sent with every query (a tenant ID, for example): each a string, or
    /// a list of strings as in Flagger (Go's `http.Header`), every one sent. No
    /// `Authorization` beside secretRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "header_map")]
    pub headers: Option<BTreeMap<String, HeaderValues>>,
    /// Flagger's CloudWatch region. Rejected: only for type `cloudwatch`, which is not
    /// supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The values of one header: one string, or Flagger's list (each sent, in order).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum HeaderValues {
    One(String),
    Many(Vec<String>),
    /// Anything else (a number, an object): kept as written so the object still reads,
    /// and refused by the admission webhook and by every query.
    Invalid(serde_json::Value),
}

impl HeaderValues {
    /// Every value, in order; `Err` with what was written when it is neither a string
    /// nor a list of strings.
    pub fn values(&self) -> Result<Vec<&str>, &serde_json::Value> {
        match self {
            HeaderValues::One(v) => Ok(vec![v.as_str()]),
            HeaderValues::Many(list) => Ok(list.iter().map(String::as_str).collect()),
            HeaderValues::Invalid(v) => Err(v),
        }
    }
}

/// Why a header's value was refused.
pub const HEADER_VALUES: &str = "must be a string or a list of strings";

impl From<&str> for HeaderValues {
    fn from(v: &str) -> Self {
        HeaderValues::One(v.to_owned())
    }
}

/// A map whose values are a string or a list of strings: structural schemas cannot say
/// "one of two types", so the values keep their JSON and the admission webhook checks them.
fn header_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"x-kubernetes-preserve-unknown-fields": true}
    })
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalRef {
    /// The Secret's name, in the namespace of the object that names it.
    pub name: String,
}

/// A `{{ ... }}` in a query that is not a known variable, or that never closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template variable {0:?}; known: {known}, variables.<key>", known = VARIABLES.join(", "))]
    Unknown(String),
    #[error("\"{{{{\" at byte {0} is never closed by \"}}}}\"")]
    Unclosed(usize),
}

/// A piece of a query: text as written, or a `{{ variable }}` (its trimmed name).
enum Piece<'a> {
    Text(&'a str),
    Variable(&'a str),
}

/// Walks `query` piece by piece; every variable is checked to be a known one.
fn walk<'q>(query: &'q str, mut each: impl FnMut(Piece<'q>) -> Result<(), TemplateError>) -> Result<(), TemplateError> {
    let mut rest = query;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unclosed(offset + start))?;
        let name = after[..end].trim();
        let known = VARIABLES.contains(&name)
            || name
                .strip_prefix("variables.")
                .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        if !known {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        each(Piece::Text(&rest[..start]))?;
        each(Piece::Variable(name))?;
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    each(Piece::Text(rest))
}

/// The variables a query uses, in order; `variables.x` is returned as is.
pub fn variables(query: &str) -> Result<Vec<&str>, TemplateError> {
    let mut found = Vec::new();
    walk(query, |piece| {
        if let Piece::Variable(name) = piece {
            found.push(name);
        }
        Ok(())
    })?;
    Ok(found)
}

/// The query with each `{{ variable }}` replaced by `value(variable)`; an unknown or
/// unclosed variable is the same error [`variables`] gives.
pub fn render(query: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(query.len());
    walk(query, |piece| {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Variable(name) => out.push_str(&value(name).ok_or_else(|| TemplateError::Unknown(name.to_owned()))?),
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_variable() {
        let q = r#"sum(rate(x{route=~"{{ namespace }}_{{route}}_.+"}[{{ interval }}])) * {{ variables.scale }}"#;
        let v = |name: &str| match name {
            "namespace" => Some("test".to_owned()),
            "route" => Some("podinfo-podinfo-canary".to_owned()),
            "interval" => Some("1m".to_owned()),
            "variables.scale" => Some("100".to_owned()),
            _ => None,
        };
        assert_eq!(render(q, v).unwrap(), r#"sum(rate(x{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100"#);
        assert_eq!(render("{{ variables.missing }}", v), Err(TemplateError::Unknown("variables.missing".into())));
        assert_eq!(render("{{ nope }}", v), Err(TemplateError::Unknown("nope".into())));
    }

    #[test]
    fn finds_known_variables() {
        let q = r#"sum(rate(apisix_http_status{route=~"{{ namespace }}_{{ route }}.*",code!~"404"}[{{ interval }}]))
            / {{variables.scale}}"#;
        assert_eq!(variables(q), Ok(vec!["namespace", "route", "interval", "variables.scale"]));
        assert_eq!(variables("up"), Ok(vec![]));
    }

    #[test]
    fn rejects_unknown_and_unclosed() {
        assert_eq!(variables("x{{ nmespace }}"), Err(TemplateError::Unknown("nmespace".into())));
        assert_eq!(variables("{{ variables. }}"), Err(TemplateError::Unknown("variables.".into())));
        assert_eq!(variables("a {{ namespace"), Err(TemplateError::Unclosed(2)));
        assert!(TemplateError::Unknown("x".into()).to_string().contains("known: namespace, name, target"));
    }
}
