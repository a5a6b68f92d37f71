//! Validation of `Canary` specs, in both served versions, with Kubernetes field errors.
//! v1alpha1 is checked through its v1beta1 expansion, with paths rewritten to the flat
//! fields the user wrote, so a bad value gets the same words whichever way it came.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Findings;
use super::templates;
use crate::api::canary::{
    BUILTIN_METRICS, GROUP, REQUEST_DURATION, REQUEST_SUCCESS_RATE, SEVERITIES, WEBHOOK_TYPES, v1alpha1, v1beta1,
};
use crate::api::field::{FieldError, Path, Shown};
use crate::api::{alert_provider::AlertProvider, metric_template::MetricTemplate};
use crate::api::{annotations::defaults, apisix_route, rules};
use crate::conversion;

const PROVIDER: &str = "apisix";

/// Checks any object of ours on CREATE and UPDATE. An UPDATE that leaves the spec (and
/// the v1alpha1 spill annotation) as it was is not re-checked: the controller's own
/// writes of finalizers and annotations never fail on a rule added later.
pub fn validate(request: &AdmissionRequest<DynamicObject>) -> Findings {
    let Some(new) = &request.object else { return Findings::default() };
    if !matches!(request.operation, Operation::Create | Operation::Update) || request.kind.group != GROUP {
        return Findings::default();
    }
    if let Some(old) = &request.old_object {
        let spill = |o: &DynamicObject| {
            o.metadata.annotations.as_ref().and_then(|a| a.get(v1alpha1::SPILL_ANNOTATION)).cloned()
        };
        if old.data.get("spec") == new.data.get("spec") && spill(old) == spill(new) {
            return Findings::default();
        }
    }
    let value = match serde_json::to_value(new) {
        Ok(v) => v,
        Err(e) => return unreadable(&e),
    };
    let result = match (request.kind.version.as_str(), request.kind.kind.as_str()) {
        ("v1beta1", "Canary") => serde_json::from_value::<v1beta1::Canary>(value).map(|c| {
            let mut f = validate_v1beta1(&c.spec);
            if c.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(v1alpha1::SPILL_ANNOTATION)) {
                let path = Path::new("metadata").child("annotations").key(v1alpha1::SPILL_ANNOTATION);
                f.errors.push(FieldError::forbidden(&path, "reserved for the v1alpha1 form of a Canary"));
            }
            f
        }),
        ("v1alpha1", "Canary") => serde_json::from_value::<v1alpha1::Canary>(value).map(|c| validate_v1alpha1(&c)),
        (_, "MetricTemplate") => {
            serde_json::from_value::<MetricTemplate>(value).map(|t| templates::validate_metric_template(&t.spec))
        }
        (_, "AlertProvider") => {
            serde_json::from_value::<AlertProvider>(value).map(|a| templates::validate_alert_provider(&a.spec))
        }
        _ => Ok(Findings::default()),
    };
    result.unwrap_or_else(|e| unreadable(&e))
}

fn unreadable(e: &serde_json::Error) -> Findings {
    let mut f = Findings::default();
    f.errors.push(FieldError::invalid(&Path::new("spec"), "(object)", format!("cannot be read: {e}")));
    f
}

/// Checks a v1beta1 spec.
pub fn validate_v1beta1(spec: &v1beta1::CanarySpec) -> Findings {
    let mut f = Findings::default();
    let p = Path::new("spec");
    if let Some(provider) = spec.provider.as_deref().filter(|v| *v != PROVIDER) {
        f.errors.push(FieldError::not_supported(&p.child("provider"), provider, &[PROVIDER]));
    }
    let t = p.child("targetRef");
    if spec.target_ref.api_version != "apps/v1" {
        f.errors.push(FieldError::not_supported(&t.child("apiVersion"), &spec.target_ref.api_version, &["apps/v1"]));
    }
    if spec.target_ref.kind != "Deployment" {
        f.errors.push(FieldError::not_supported(&t.child("kind"), &spec.target_ref.kind, &["Deployment"]));
    }
    f.push(rules::object_name(&t.child("name"), &spec.target_ref.name));
    match &spec.route_ref {
        None => f.errors.push(FieldError::required(&p.child("routeRef"), "the ApisixRoute that serves the target")),
        Some(r) => {
            let rp = p.child("routeRef");
            if r.api_version != apisix_route::API_VERSION {
                let supported = [apisix_route::API_VERSION];
                f.errors.push(FieldError::not_supported(&rp.child("apiVersion"), &r.api_version, &supported));
            }
            if r.kind != apisix_route::KIND {
                f.errors.push(FieldError::not_supported(&rp.child("kind"), &r.kind, &[apisix_route::KIND]));
            }
            f.push(rules::object_name(&rp.child("name"), &r.name));
        }
    }
    if let Some(service) = &spec.service {
        if let Some(name) = &service.name {
            f.push(rules::object_name(&p.child("service").child("name"), name));
        }
        if let Some(port) = service.port {
            f.push(rules::port(&p.child("service").child("port"), port.into()));
        }
    }
    if let Some(v) = spec.progress_deadline_seconds {
        let path = p.child("progressDeadlineSeconds");
        f.push(rules::progress_deadline_seconds(&path, &Shown::bare(v), Some(v.into())));
    }
    analysis(&spec.analysis, &p.child("analysis"), &mut f);
    f
}

fn analysis(a: &v1beta1::Analysis, p: &Path, f: &mut Findings) {
    if let Some(raw) = &a.interval {
        let path = p.child("interval");
        match rules::interval(&path, raw) {
            Ok(d) => f.warnings.extend(rules::interval_warning(d).map(|w| (path, w))),
            Err(e) => f.errors.push(e),
        }
    }
    if let Some(t) = a.threshold {
        let path = p.child("threshold");
        match rules::threshold(&path, &Shown::bare(t), Some(t.into())) {
            Ok(t) => f.warnings.extend(rules::threshold_warning(t).map(|w| (path, w))),
            Err(e) => f.errors.push(e),
        }
    }
    let weight = |key: &str, v: Option<i32>, f: &mut Findings| -> Option<u32> {
        let v = v?;
        rules::weight(&p.child(key), &Shown::bare(v), Some(v.into())).map_err(|e| f.errors.push(e)).ok()
    };
    let max = weight("maxWeight", a.max_weight, f);
    let step = weight("stepWeight", a.step_weight, f);
    weight("stepWeightPromotion", a.step_weight_promotion, f);
    let steps = a.step_weights.as_ref().and_then(|list| {
        let shown = Shown::bare(format!("{list:?}"));
        let values: Vec<Option<i64>> = list.iter().map(|w| Some(i64::from(*w))).collect();
        rules::step_weights(&p.child("stepWeights"), &shown, &values).map_err(|e| f.errors.push(e)).ok()
    });
    if a.step_weight.is_some() && a.step_weights.is_some() {
        // Flagger accepts both and uses stepWeights: so do we, with a word.
        f.warnings.push((p.child("stepWeight"), "ignored: stepWeights is set and takes precedence".to_owned()));
    }
    // Cross-checks only between values that are valid on their own.
    let max_invalid = a.max_weight.is_some() && max.is_none();
    if let (Some(step), false) = (step, max_invalid) {
        let (max, note) = max.map_or((defaults::MAX_WEIGHT, ", the default"), |m| (m, ""));
        if step > max {
            let detail = format!("must be less than or equal to maxWeight ({max}{note})");
            f.errors.push(FieldError::invalid(&p.child("stepWeight"), Shown::bare(step), detail));
        }
    }
    if let (Some(steps), Some(max)) = (&steps, max)
        && steps.last().is_some_and(|last| *last > max)
    {
        let detail = format!("must not go above maxWeight ({max})");
        f.errors.push(FieldError::invalid(&p.child("stepWeights"), Shown::bare(format!("{steps:?}")), detail));
    }
    unsupported(a, p, f);
    metrics(&a.metrics, &p.child("metrics"), f);
    webhooks(&a.webhooks, &p.child("webhooks"), f);
    alerts(&a.alerts, &p.child("alerts"), f);
}

/// Flagger features APISIX's weighted backends cannot do: refused, never approximated.
fn unsupported(a: &v1beta1::Analysis, p: &Path, f: &mut Findings) {
    let refusals = [
        (
            "match",
            a.match_.is_some(),
            "A/B testing by request match is not supported with APISIX: the generated route splits traffic \
             by weight only; use stepWeight or stepWeights",
        ),
        (
            "iterations",
            a.iterations.is_some(),
            "blue/green analysis (iterations) is not supported: use stepWeight or stepWeights",
        ),
        ("mirror", a.mirror.is_some(), "traffic mirroring is not supported with APISIX weighted backends"),
        ("mirrorWeight", a.mirror_weight.is_some(), "traffic mirroring is not supported with APISIX weighted backends"),
        (
            "sessionAffinity",
            a.session_affinity.is_some(),
            "session affinity is not supported with APISIX weighted backends: requests are split by weight",
        ),
    ];
    for (key, present, why) in refusals {
        if present {
            f.errors.push(FieldError::forbidden(&p.child(key), why));
        }
    }
}

fn metrics(list: &[v1beta1::Metric], p: &Path, f: &mut Findings) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, m) in list.iter().enumerate() {
        let mp = p.index(i);
        if m.name.is_empty() {
            f.errors.push(FieldError::required(&mp.child("name"), "a metric needs a name"));
        } else if !seen.insert(m.name.as_str()) {
            f.errors.push(FieldError::duplicate(&mp.child("name"), &m.name));
        }
        match &m.template_ref {
            Some(t) => f.push(rules::object_name(&mp.child("templateRef").child("name"), &t.name)),
            None if !m.name.is_empty() && !BUILTIN_METRICS.contains(&m.name.as_str()) => {
                f.errors.push(FieldError::invalid(
                    &mp.child("name"),
                    &m.name,
                    format!("must be a built-in metric ({}) or set templateRef", BUILTIN_METRICS.join(", ")),
                ))
            }
            None => {}
        }
        let range = m.threshold_range.as_ref().filter(|r| r.min.is_some() || r.max.is_some());
        let rp = mp.child("thresholdRange");
        match range {
            None => f.errors.push(FieldError::required(&rp, "set min, max or both")),
            Some(r) => {
                if let (Some(min), Some(max)) = (r.min, r.max)
                    && min > max
                {
                    f.errors.push(FieldError::invalid(
                        &rp.child("min"),
                        Shown::bare(min),
                        format!("must not exceed max ({max})"),
                    ));
                }
                if m.name == REQUEST_SUCCESS_RATE && m.template_ref.is_none() {
                    for (key, v) in [("min", r.min), ("max", r.max)] {
                        if let Some(v) = v {
                            f.push(rules::success_rate(&rp.child(key), &Shown::bare(v), Some(v)));
                        }
                    }
                }
                if m.name == REQUEST_DURATION
                    && m.template_ref.is_none()
                    && let Some(ms) = r.max
                {
                    f.push(rules::request_duration_ms(&rp.child("max"), ms));
                }
            }
        }
        if let Some(raw) = &m.interval {
            f.push(rules::interval(&mp.child("interval"), raw));
        }
    }
}

fn webhooks(list: &[v1beta1::Webhook], p: &Path, f: &mut Findings) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, w) in list.iter().enumerate() {
        let wp = p.index(i);
        if w.name.is_empty() {
            f.errors.push(FieldError::required(&wp.child("name"), "a webhook needs a name"));
        } else if !seen.insert(w.name.as_str()) {
            f.errors.push(FieldError::duplicate(&wp.child("name"), &w.name));
        }
        if let Some(t) = w.type_.as_deref().filter(|t| !WEBHOOK_TYPES.contains(t)) {
            f.errors.push(FieldError::not_supported(&wp.child("type"), t, WEBHOOK_TYPES));
        }
        f.push(rules::http_url(&wp.child("url"), &w.url));
        if let Some(raw) = &w.timeout {
            f.push(rules::webhook_timeout(&wp.child("timeout"), raw));
        }
    }
}

fn alerts(list: &[v1beta1::Alert], p: &Path, f: &mut Findings) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in list.iter().enumerate() {
        let ap = p.index(i);
        if a.name.is_empty() {
            f.errors.push(FieldError::required(&ap.child("name"), "an alert needs a name"));
        } else if !seen.insert(a.name.as_str()) {
            f.errors.push(FieldError::duplicate(&ap.child("name"), &a.name));
        }
        if let Some(s) = a.severity.as_deref().filter(|s| !SEVERITIES.contains(s)) {
            f.errors.push(FieldError::not_supported(&ap.child("severity"), s, SEVERITIES));
        }
        f.push(rules::object_name(&ap.child("providerRef").child("name"), &a.provider_ref.name));
    }
}

/// v1beta1 paths of the fields v1alpha1 holds flat, and their v1alpha1 paths.
const FLAT_PATHS: &[(&str, &str)] = &[
    ("spec.targetRef.name", "spec.target"),
    ("spec.routeRef.name", "spec.route"),
    ("spec.routeRef", "spec.route"),
    ("spec.service.name", "spec.service"),
    ("spec.service.port", "spec.port"),
    ("spec.analysis.interval", "spec.interval"),
    ("spec.analysis.threshold", "spec.threshold"),
    ("spec.analysis.maxWeight", "spec.maxWeight"),
    ("spec.analysis.stepWeight", "spec.stepWeight"),
    ("spec.analysis.stepWeights", "spec.stepWeights"),
    ("spec.analysis.stepWeightPromotion", "spec.stepWeightPromotion"),
];

/// An error of the expanded v1beta1 spec, as the v1alpha1 writer should read it: at
/// the flat field, or at the spill annotation it came from.
fn flat_error(e: &FieldError) -> FieldError {
    match FLAT_PATHS.iter().find(|(beta, _)| *beta == e.path.as_str()) {
        Some((_, alpha)) => FieldError { path: Path::new(alpha), kind: e.kind.clone() },
        None => {
            let spill = Path::new("metadata").child("annotations").key(v1alpha1::SPILL_ANNOTATION);
            FieldError::invalid(&spill, "(json)", e.to_string())
        }
    }
}

/// Checks a v1alpha1 Canary: the flat fields with their own paths, the rest through
/// the v1beta1 expansion.
pub fn validate_v1alpha1(c: &v1alpha1::Canary) -> Findings {
    let mut f = Findings::default();
    let p = Path::new("spec");
    if let Some(rate) = c.spec.min_success_rate {
        f.push(rules::success_rate(&p.child("minSuccessRate"), &Shown::bare(rate), Some(rate)));
    }
    let duration_ok = match &c.spec.max_request_duration {
        Some(raw) => {
            let checked = rules::request_duration(&p.child("maxRequestDuration"), raw);
            let parsed = crate::api::duration::parse(raw).is_ok();
            f.push(checked);
            parsed
        }
        None => true,
    };
    // Expand as written; a duration that does not parse was reported and is left out.
    let mut expandable = c.spec.clone();
    if !duration_ok {
        expandable.max_request_duration = None;
    }
    let spill = c.metadata.annotations.as_ref().and_then(|a| a.get(v1alpha1::SPILL_ANNOTATION));
    let beta = match conversion::canary::spec_to_v1beta1(&expandable, spill.map(String::as_str)) {
        Ok((beta, _)) => beta,
        Err(e) => {
            let path = Path::new("metadata").child("annotations").key(v1alpha1::SPILL_ANNOTATION);
            f.errors.push(FieldError::invalid(&path, "(json)", e.to_string()));
            return f;
        }
    };
    // The bounds of the built-in metrics written flat were checked at the flat fields.
    let builtin = |name: &str| beta.analysis.metrics.iter().position(|m| m.name == name && m.template_ref.is_none());
    let mut checked_flat = Vec::new();
    if let (Some(i), Some(_)) = (builtin(REQUEST_SUCCESS_RATE), c.spec.min_success_rate) {
        checked_flat.push(format!("spec.analysis.metrics[{i}].thresholdRange.min"));
    }
    if let (Some(i), Some(_)) = (builtin(REQUEST_DURATION), &c.spec.max_request_duration) {
        checked_flat.push(format!("spec.analysis.metrics[{i}].thresholdRange.max"));
    }
    let inner = validate_v1beta1(&beta);
    for e in inner.errors.iter().filter(|e| !checked_flat.iter().any(|p| p == e.path.as_str())) {
        f.errors.push(flat_error(e));
    }
    for (path, w) in inner.warnings {
        let path =
            FLAT_PATHS.iter().find(|(beta, _)| *beta == path.as_str()).map_or(path, |(_, alpha)| Path::new(alpha));
        f.warnings.push((path, w));
    }
    f
}
