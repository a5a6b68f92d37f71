//! Canary v1beta1 <-> v1alpha1, losslessly.
//!
//! v1alpha1 holds the flat fields it can express exactly. The rest of the v1beta1 spec
//! (the "residual") rides as JSON in the annotation [`SPILL_ANNOTATION`]; on the way
//! back the residual is the base and the flat fields are laid over it, so an edit made
//! at v1alpha1 wins and nothing else is lost. Each residual is verified by expanding it
//! again; when a smaller one does not reproduce the spec exactly, the whole spec is kept.

use serde_json::{Map, Value, json};

use crate::api::apisix_route;
use crate::api::canary::v1alpha1::{self, SPILL_ANNOTATION};
use crate::api::canary::{REQUEST_DURATION, REQUEST_SUCCESS_RATE, v1beta1};
use crate::api::duration;

const TARGET_API_VERSION: &str = "apps/v1";
const TARGET_KIND: &str = "Deployment";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("annotation {SPILL_ANNOTATION} is not a v1beta1 spec: {0}")]
    Spill(serde_json::Error),
    #[error("cannot express the v1alpha1 spec as v1beta1: {0}")]
    Expand(serde_json::Error),
    #[error("spec.maxRequestDuration: {0:?} is not a duration")]
    Duration(String),
}

/// v1beta1 -> v1alpha1.
pub fn to_v1alpha1(c: &v1beta1::Canary) -> v1alpha1::Canary {
    let flat = flatten(&c.spec);
    let spec_json = serde_json::to_value(&c.spec).unwrap_or(Value::Null);
    let residual = [minimal_residual(&spec_json, &flat, true), minimal_residual(&spec_json, &flat, false)]
        .into_iter()
        .find(|r| expand(&flat, r.clone()).is_ok_and(|s| s == c.spec))
        .unwrap_or(spec_json);
    let mut metadata = c.metadata.clone();
    let annotations = metadata.annotations.get_or_insert_default();
    if residual.as_object().is_some_and(Map::is_empty) {
        annotations.remove(SPILL_ANNOTATION);
    } else {
        annotations.insert(SPILL_ANNOTATION.to_owned(), residual.to_string());
    }
    if annotations.is_empty() {
        metadata.annotations = None;
    }
    v1alpha1::Canary { metadata, spec: flat, status: c.status.clone() }
}

/// v1alpha1 -> v1beta1.
pub fn to_v1beta1(c: &v1alpha1::Canary) -> Result<v1beta1::Canary, Error> {
    let mut metadata = c.metadata.clone();
    let residual = match metadata.annotations.as_mut().and_then(|a| a.remove(SPILL_ANNOTATION)) {
        Some(json) => serde_json::from_str(&json).map_err(Error::Spill)?,
        None => Value::Object(Map::new()),
    };
    if metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        metadata.annotations = None;
    }
    let spec = expand(&c.spec, residual)?;
    Ok(v1beta1::Canary { metadata, spec, status: c.status.clone() })
}

/// The first built-in metric of that name (a metric with a templateRef is custom).
fn builtin_index(metrics: &[Value], name: &str) -> Option<usize> {
    metrics.iter().position(|m| m["name"] == name && m.get("templateRef").is_none())
}

/// A P99 bound in ms as a duration string, only when it converts back exactly.
fn ms_to_duration(ms: f64) -> Option<String> {
    if !(ms.is_finite() && ms >= 0.0) || ms * 1e6 > u64::MAX as f64 {
        return None;
    }
    let s = duration::Display(std::time::Duration::from_nanos((ms * 1e6).round() as u64)).to_string();
    (duration_to_ms(&s) == Some(ms)).then_some(s)
}

fn duration_to_ms(s: &str) -> Option<f64> {
    duration::parse(s).ok().map(|d| d.as_nanos() as f64 / 1e6)
}

/// The fields v1alpha1 can hold, each only when it can hold it exactly.
fn flatten(spec: &v1beta1::CanarySpec) -> v1alpha1::CanarySpec {
    let a = &spec.analysis;
    let metric = |name: &str| a.metrics.iter().find(|m| m.name == name && m.template_ref.is_none());
    v1alpha1::CanarySpec {
        target: spec.target_ref.name.clone(),
        route: spec.route_ref.as_ref().map(|r| r.name.clone()),
        service: spec.service.as_ref().and_then(|s| s.name.clone()),
        port: spec.service.as_ref().and_then(|s| s.port),
        step_weight: a.step_weight,
        step_weights: a.step_weights.clone(),
        step_weight_promotion: a.step_weight_promotion,
        max_weight: a.max_weight,
        interval: a.interval.clone(),
        threshold: a.threshold,
        min_success_rate: metric(REQUEST_SUCCESS_RATE).and_then(|m| m.threshold_range.as_ref()?.min),
        max_request_duration: metric(REQUEST_DURATION)
            .and_then(|m| m.threshold_range.as_ref()?.max)
            .and_then(ms_to_duration),
        progress_deadline_seconds: spec.progress_deadline_seconds,
        skip_analysis: spec.skip_analysis,
        suspend: spec.suspend,
    }
}

fn remove(v: &mut Value, parent: &str, key: &str) {
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(key);
    }
}

/// Removes the object at `parent/key` if it is empty.
fn prune(v: &mut Value, parent: &str, key: &str) {
    let empty = v
        .pointer(&format!("{parent}/{key}"))
        .is_some_and(|x| x.as_object().is_some_and(Map::is_empty) || x.as_array().is_some_and(Vec::is_empty));
    if empty {
        remove(v, parent, key);
    }
}

fn remove_if(v: &mut Value, parent: &str, key: &str, equals: &str) {
    if v.pointer(&format!("{parent}/{key}")).and_then(Value::as_str) == Some(equals) {
        remove(v, parent, key);
    }
}

/// The spec without what `flat` holds. With `drop_bare`, built-in metrics left with
/// nothing but their name are dropped too (the expansion re-creates them).
fn minimal_residual(spec: &Value, flat: &v1alpha1::CanarySpec, drop_bare: bool) -> Value {
    let mut r = spec.clone();
    remove(&mut r, "/targetRef", "name");
    remove_if(&mut r, "/targetRef", "apiVersion", TARGET_API_VERSION);
    remove_if(&mut r, "/targetRef", "kind", TARGET_KIND);
    prune(&mut r, "", "targetRef");
    if flat.route.is_some() {
        remove(&mut r, "/routeRef", "name");
        remove_if(&mut r, "/routeRef", "apiVersion", apisix_route::API_VERSION);
        remove_if(&mut r, "/routeRef", "kind", apisix_route::KIND);
        prune(&mut r, "", "routeRef");
    }
    if flat.service.is_some() {
        remove(&mut r, "/service", "name");
    }
    if flat.port.is_some() {
        remove(&mut r, "/service", "port");
    }
    prune(&mut r, "", "service");
    let analysis = [
        ("interval", flat.interval.is_some()),
        ("threshold", flat.threshold.is_some()),
        ("maxWeight", flat.max_weight.is_some()),
        ("stepWeight", flat.step_weight.is_some()),
        ("stepWeights", flat.step_weights.is_some()),
        ("stepWeightPromotion", flat.step_weight_promotion.is_some()),
    ];
    for (key, held) in analysis {
        if held {
            remove(&mut r, "/analysis", key);
        }
    }
    let top = [
        ("progressDeadlineSeconds", flat.progress_deadline_seconds.is_some()),
        ("skipAnalysis", flat.skip_analysis.is_some()),
        ("suspend", flat.suspend.is_some()),
    ];
    for (key, held) in top {
        if held {
            remove(&mut r, "", key);
        }
    }
    let bounds = [
        (REQUEST_SUCCESS_RATE, "min", flat.min_success_rate.is_some()),
        (REQUEST_DURATION, "max", flat.max_request_duration.is_some()),
    ];
    let mut bare = Vec::new();
    if let Some(Value::Array(metrics)) = r.pointer_mut("/analysis/metrics") {
        for (name, bound, held) in bounds {
            let Some(i) = builtin_index(metrics, name).filter(|_| held) else { continue };
            if let Some(Value::Object(range)) = metrics[i].get_mut("thresholdRange") {
                range.remove(bound);
                if range.is_empty() {
                    metrics[i].as_object_mut().map(|m| m.remove("thresholdRange"));
                }
            }
            if metrics[i].as_object().is_some_and(|m| m.len() == 1) {
                bare.push(i);
            }
        }
        if drop_bare {
            bare.sort_unstable();
            for i in bare.into_iter().rev() {
                metrics.remove(i);
            }
        }
    }
    prune(&mut r, "/analysis", "metrics");
    prune(&mut r, "", "analysis");
    r
}

fn object<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = v.as_object_mut().expect("residuals are objects");
    let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("just made an object")
}

/// Lays `flat` over a residual and reads the result as a v1beta1 spec.
fn expand(flat: &v1alpha1::CanarySpec, residual: Value) -> Result<v1beta1::CanarySpec, Error> {
    let mut v = if residual.is_object() { residual } else { json!({}) };
    let target = object(&mut v, "targetRef");
    target.insert("name".into(), json!(flat.target));
    target.entry("apiVersion").or_insert_with(|| json!(TARGET_API_VERSION));
    target.entry("kind").or_insert_with(|| json!(TARGET_KIND));
    if let Some(route) = &flat.route {
        let r = object(&mut v, "routeRef");
        r.insert("name".into(), json!(route));
        r.entry("apiVersion").or_insert_with(|| json!(apisix_route::API_VERSION));
        r.entry("kind").or_insert_with(|| json!(apisix_route::KIND));
    }
    if let Some(service) = &flat.service {
        object(&mut v, "service").insert("name".into(), json!(service));
    }
    if let Some(port) = flat.port {
        object(&mut v, "service").insert("port".into(), json!(port));
    }
    let set = |v: &mut Value, key: &str, value: Option<Value>| {
        if let Some(x) = value {
            v.as_object_mut().expect("residuals are objects").insert(key.to_owned(), x);
        }
    };
    set(&mut v, "progressDeadlineSeconds", flat.progress_deadline_seconds.map(Value::from));
    set(&mut v, "skipAnalysis", flat.skip_analysis.map(Value::from));
    set(&mut v, "suspend", flat.suspend.map(Value::from));
    let analysis = object(&mut v, "analysis");
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(x) = value {
            analysis.insert(key.to_owned(), x);
        }
    };
    put("interval", flat.interval.clone().map(Value::from));
    put("threshold", flat.threshold.map(Value::from));
    put("maxWeight", flat.max_weight.map(Value::from));
    put("stepWeight", flat.step_weight.map(Value::from));
    put("stepWeights", flat.step_weights.clone().map(Value::from));
    put("stepWeightPromotion", flat.step_weight_promotion.map(Value::from));
    let duration_ms = match &flat.max_request_duration {
        Some(d) => Some(duration_to_ms(d).ok_or_else(|| Error::Duration(d.clone()))?),
        None => None,
    };
    let bounds = [(REQUEST_SUCCESS_RATE, "min", flat.min_success_rate), (REQUEST_DURATION, "max", duration_ms)];
    for (name, bound, value) in bounds {
        let Some(value) = value else { continue };
        let metrics = analysis.entry("metrics").or_insert_with(|| json!([]));
        let Some(list) = metrics.as_array_mut() else { continue };
        let i = match builtin_index(list, name) {
            Some(i) => i,
            None => {
                list.push(json!({"name": name}));
                list.len() - 1
            }
        };
        object(&mut list[i], "thresholdRange").insert(bound.to_owned(), json!(value));
    }
    serde_json::from_value(v).map_err(Error::Expand)
}
