//! Validation of `MetricTemplate` and `AlertProvider` specs.

use super::Findings;
use crate::analysis::template::custom_headers;
use crate::api::field::{FieldError, Path};
use crate::api::metric_template::{self, MetricTemplateSpec, PROMETHEUS};
use crate::api::{alert_provider, rules};

pub fn validate_metric_template(spec: &MetricTemplateSpec) -> Findings {
    let mut f = Findings::default();
    let p = Path::new("spec");
    let provider = p.child("provider");
    if let Some(region) = &spec.provider.region {
        let why =
            format!("{region:?} is a region of CloudWatch, which is not supported: the only type is {PROMETHEUS}");
        f.errors.push(FieldError::forbidden(&provider.child("region"), why));
    }
    if spec.provider.type_ != PROMETHEUS {
        // Flagger's other providers (datadog, cloudwatch, ...): their address and query
        // are not a Prometheus' and not PromQL, so nothing else is worth reporting.
        f.errors.push(FieldError::not_supported(&provider.child("type"), &spec.provider.type_, &[PROMETHEUS]));
        return f;
    }
    match &spec.provider.address {
        Some(address) => f.push(rules::http_url(&provider.child("address"), address)),
        None => f.errors.push(FieldError::required(&provider.child("address"), "the URL of the Prometheus API")),
    }
    if let Some(secret) = &spec.provider.secret_ref {
        f.push(rules::object_name(&provider.child("secretRef").child("name"), &secret.name));
    }
    for e in custom_headers(&spec.provider).1 {
        f.errors.push(e);
    }
    if spec.query.trim().is_empty() {
        f.errors.push(FieldError::required(&p.child("query"), "a PromQL query"));
    } else if let Err(e) = metric_template::variables(&spec.query) {
        f.errors.push(FieldError::invalid(&p.child("query"), &spec.query, e.to_string()));
    }
    f
}

pub fn validate_alert_provider(spec: &alert_provider::AlertProviderSpec) -> Findings {
    let mut f = Findings::default();
    let p = Path::new("spec");
    if alert_provider::Kind::parse(&spec.type_).is_none() {
        f.errors.push(FieldError::not_supported(&p.child("type"), &spec.type_, alert_provider::TYPES));
    }
    if spec.address.is_none() && spec.secret_ref.is_none() {
        f.errors.push(FieldError::required(
            &p.child("address"),
            "set address, or secretRef to a Secret with the key address",
        ));
    }
    if let Some(address) = &spec.address {
        f.push(rules::http_url(&p.child("address"), address));
    }
    if let Some(secret) = &spec.secret_ref {
        f.push(rules::object_name(&p.child("secretRef").child("name"), &secret.name));
    }
    if let Some(proxy) = &spec.proxy {
        f.push(rules::http_url(&p.child("proxy"), proxy));
    }
    f
}
