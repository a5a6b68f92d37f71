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
use crate::api::canary::{REQUEST_DURATION, REQUEST_SUCCESS_RATE, V1ALPHA1, V1BETA1, v1beta1};
use crate::api::duration;

const TARGET_API_VERSION: &str = "apps/v1";
const TARGET_KIND: &str = "Deployment";

/// On a v1beta1 object: how its v1alpha1 form spelled `maxRequestDuration` when that
/// differs from the canonical spelling (`1000ms` for `1s`), so it comes back as written.
pub const SPELLING_ANNOTATION: &str = "apisix-canary.dev/v1alpha1-max-request-duration";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("annotation {SPILL_ANNOTATION} is not a v1beta1 spec: {0}")]
    Spill(String),
    #[error("cannot express the v1alpha1 spec as v1beta1: {0}")]
    Expand(serde_json::Error),
    #[error("spec.maxRequestDuration: {0:?} is not a duration")]
    Duration(String),
    #[error("malformed {api_version} Canary: {source}")]
    Malformed { api_version: &'static str, source: serde_json::Error },
}

/// A v1beta1 spec as v1alpha1: the flat spec and the residual JSON, if any. `spelling`
/// is the remembered v1alpha1 spelling of `maxRequestDuration`.
pub fn spec_to_v1alpha1(spec: &v1beta1::CanarySpec, spelling: Option<&str>) -> (v1alpha1::CanarySpec, Option<String>) {
    let mut flat = flatten(spec);
    if let (Some(canonical), Some(written)) = (&flat.max_request_duration, spelling)
        && duration_to_ms(canonical) == duration_to_ms(written)
    {
        flat.max_request_duration = Some(written.to_owned());
    }
    let spec_json = serde_json::to_value(spec).unwrap_or(Value::Null);
    let residual = [minimal_residual(&spec_json, &flat, true), minimal_residual(&spec_json, &flat, false)]
        .into_iter()
        .find(|r| expand(&flat, r.clone()).is_ok_and(|s| s == *spec))
        .unwrap_or(spec_json);
    let spill = (!residual.as_object().is_some_and(Map::is_empty)).then(|| residual.to_string());
    (flat, spill)
}

/// A v1alpha1 spec and its residual as v1beta1, and the spelling of
/// `maxRequestDuration` to remember when it is not the canonical one.
pub fn spec_to_v1beta1(
    flat: &v1alpha1::CanarySpec,
    spill: Option<&str>,
) -> Result<(v1beta1::CanarySpec, Option<String>), Error> {
    let residual = match spill {
        Some(json) => serde_json::from_str(json).map_err(|e| Error::Spill(e.to_string()))?,
        None => Value::Object(Map::new()),
    };
    let spec = expand(flat, residual)?;
    let spelling = flat.max_request_duration.as_ref().filter(|written| {
        let canonical = duration_to_ms(written).and_then(ms_to_duration);
        canonical.as_deref() != Some(written.as_str())
    });
    Ok((spec, spelling.cloned()))
}

fn annotations_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let meta = object.get_mut("metadata")?.as_object_mut()?;
    meta.entry("annotations").or_insert_with(|| json!({})).as_object_mut()
}

/// Sets or removes an annotation; an emptied annotation map is removed, as the API
/// server stores no empty maps.
fn annotate(object: &mut Value, key: &str, value: Option<String>) {
    if let Some(annotations) = annotations_mut(object) {
        match value {
            Some(v) => {
                annotations.insert(key.to_owned(), Value::String(v));
            }
            None => {
                annotations.remove(key);
            }
        }
        if annotations.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/annotations")?.get(key)?.as_str()
}

/// A whole v1beta1 object as v1alpha1. Only `apiVersion`, `spec` and our annotations
/// change: metadata and status travel as the exact JSON they came in.
pub fn object_to_v1alpha1(mut object: Value) -> Result<Value, Error> {
    let spec: v1beta1::CanarySpec = serde_json::from_value(object.get("spec").cloned().unwrap_or(json!({})))
        .map_err(|source| Error::Malformed { api_version: V1BETA1, source })?;
    let spelling = annotation(&object, SPELLING_ANNOTATION).map(str::to_owned);
    let (flat, spill) = spec_to_v1alpha1(&spec, spelling.as_deref());
    object["apiVersion"] = json!(V1ALPHA1);
    object["spec"] = serde_json::to_value(flat).map_err(|source| Error::Malformed { api_version: V1ALPHA1, source })?;
    annotate(&mut object, SPELLING_ANNOTATION, None);
    annotate(&mut object, SPILL_ANNOTATION, spill);
    Ok(object)
}

/// A whole v1alpha1 object as v1beta1; metadata and status as they came.
pub fn object_to_v1beta1(mut object: Value) -> Result<Value, Error> {
    let flat: v1alpha1::CanarySpec = serde_json::from_value(object.get("spec").cloned().unwrap_or(json!({})))
        .map_err(|source| Error::Malformed { api_version: V1ALPHA1, source })?;
    let spill = annotation(&object, SPILL_ANNOTATION).map(str::to_owned);
    let (spec, spelling) = spec_to_v1beta1(&flat, spill.as_deref())?;
    object["apiVersion"] = json!(V1BETA1);
    object["spec"] = serde_json::to_value(spec).map_err(|source| Error::Malformed { api_version: V1BETA1, source })?;
    annotate(&mut object, SPILL_ANNOTATION, None);
    annotate(&mut object, SPELLING_ANNOTATION, spelling);
    Ok(object)
}

/// Typed v1beta1 -> v1alpha1 (through the same JSON path the webhook uses).
pub fn to_v1alpha1(c: &v1beta1::Canary) -> Result<v1alpha1::Canary, Error> {
    let value = serde_json::to_value(c).map_err(|source| Error::Malformed { api_version: V1BETA1, source })?;
    serde_json::from_value(object_to_v1alpha1(value)?)
        .map_err(|source| Error::Malformed { api_version: V1ALPHA1, source })
}

/// Typed v1alpha1 -> v1beta1.
pub fn to_v1beta1(c: &v1alpha1::Canary) -> Result<v1beta1::Canary, Error> {
    let value = serde_json::to_value(c).map_err(|source| Error::Malformed { api_version: V1ALPHA1, source })?;
    serde_json::from_value(object_to_v1beta1(value)?)
        .map_err(|source| Error::Malformed { api_version: V1BETA1, source })
}

/// The first built-in metric of that name (a metric with a templateRef is custom).
fn builtin_index(metrics: &[Value], name: &str) -> Option<usize> {
    metrics.iter().position(|m| m["name"] == name && m.get("templateRef").is_none_or(Value::is_null))
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

/// The object at `key`, created when absent; a value of another type is an error (it
/// would otherwise be silently replaced and lost).
fn object<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>, Error> {
    let map = v.as_object_mut().ok_or_else(|| Error::Spill(format!("expected an object around {key:?}")))?;
    let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry.as_object_mut().ok_or_else(|| Error::Spill(format!("{key:?} must be an object")))
}

/// Lays `flat` over a residual and reads the result as a v1beta1 spec.
fn expand(flat: &v1alpha1::CanarySpec, residual: Value) -> Result<v1beta1::CanarySpec, Error> {
    if !residual.is_object() {
        return Err(Error::Spill(format!("expected a JSON object, got {residual}")));
    }
    let mut v = residual;
    let target = object(&mut v, "targetRef")?;
    target.insert("name".into(), json!(flat.target));
    target.entry("apiVersion").or_insert_with(|| json!(TARGET_API_VERSION));
    target.entry("kind").or_insert_with(|| json!(TARGET_KIND));
    if let Some(route) = &flat.route {
        let r = object(&mut v, "routeRef")?;
        r.insert("name".into(), json!(route));
        r.entry("apiVersion").or_insert_with(|| json!(apisix_route::API_VERSION));
        r.entry("kind").or_insert_with(|| json!(apisix_route::KIND));
    }
    if let Some(service) = &flat.service {
        object(&mut v, "service")?.insert("name".into(), json!(service));
    }
    if let Some(port) = flat.port {
        object(&mut v, "service")?.insert("port".into(), json!(port));
    }
    let top = [
        ("progressDeadlineSeconds", flat.progress_deadline_seconds.map(Value::from)),
        ("skipAnalysis", flat.skip_analysis.map(Value::from)),
        ("suspend", flat.suspend.map(Value::from)),
    ];
    for (key, value) in top {
        if let Some(x) = value {
            v.as_object_mut().expect("checked above").insert(key.to_owned(), x);
        }
    }
    let analysis = object(&mut v, "analysis")?;
    let scalars = [
        ("interval", flat.interval.clone().map(Value::from)),
        ("threshold", flat.threshold.map(Value::from)),
        ("maxWeight", flat.max_weight.map(Value::from)),
        ("stepWeight", flat.step_weight.map(Value::from)),
        ("stepWeights", flat.step_weights.clone().map(Value::from)),
        ("stepWeightPromotion", flat.step_weight_promotion.map(Value::from)),
    ];
    for (key, value) in scalars {
        if let Some(x) = value {
            analysis.insert(key.to_owned(), x);
        }
    }
    let duration_ms = match &flat.max_request_duration {
        Some(d) => Some(duration_to_ms(d).ok_or_else(|| Error::Duration(d.clone()))?),
        None => None,
    };
    let bounds = [(REQUEST_SUCCESS_RATE, "min", flat.min_success_rate), (REQUEST_DURATION, "max", duration_ms)];
    for (name, bound, value) in bounds {
        let Some(value) = value else { continue };
        let metrics = analysis.entry("metrics").or_insert_with(|| json!([]));
        let list = metrics.as_array_mut().ok_or_else(|| Error::Spill("analysis.metrics must be a list".into()))?;
        let i = match builtin_index(list, name) {
            Some(i) => i,
            None => {
                list.push(json!({"name": name}));
                list.len() - 1
            }
        };
        object(&mut list[i], "thresholdRange")?.insert(bound.to_owned(), json!(value));
    }
    serde_json::from_value(v).map_err(Error::Expand)
}
