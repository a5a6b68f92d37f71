//! Canary v1beta1 <-> v1alpha1, losslessly: the pure conversion of the two shapes, used
//! by the conversion webhook ([`crate::conversion`]) and by the release plan, which reads
//! a v1alpha1 Canary through its v1beta1 expansion.
//!
//! v1alpha1 holds the flat fields it can express exactly. The rest of the v1beta1 spec
//! (the "residual") rides as JSON in the annotation [`SPILL_ANNOTATION`]; on the way
//! back the residual is the base and the flat fields are laid over it, so an edit made
//! at v1alpha1 wins and nothing else is lost. Each residual is verified by expanding it
//! again; when a smaller one does not reproduce the spec exactly, the whole spec is kept.

use serde_json::{Map, Value, json};

use super::flat::{self, FLAT_FIELDS, FlatField, METRICS, Place, Unit};
use super::v1alpha1::{self, SPILL_ANNOTATION};
use super::{V1ALPHA1, V1BETA1, v1beta1};
use crate::api::duration;

/// On a v1beta1 object: how its v1alpha1 form spelled `maxRequestDuration` when that
/// differs from the canonical spelling (`1000ms` for `1s`), so it comes back as written.
pub const SPELLING_ANNOTATION: &str = "apisix-canary.dev/v1alpha1-max-request-duration";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported apiVersion {0:?}: Canary is served as {V1BETA1} and {V1ALPHA1}")]
    UnknownVersion(String),
    #[error("annotation {SPILL_ANNOTATION} is not a v1beta1 spec: {0}")]
    Spill(String),
    #[error("cannot express the v1alpha1 spec as v1beta1: {0}")]
    Expand(serde_json::Error),
    #[error("spec.{field}: {value:?} is not {expected}")]
    Bound { field: &'static str, value: String, expected: &'static str },
    #[error("malformed {api_version} Canary: {source}")]
    Malformed { api_version: &'static str, source: serde_json::Error },
}

/// A whole Canary object (either served version) at `desired`; one already there is
/// returned unchanged.
pub fn object_to(object: Value, desired: &str) -> Result<Value, Error> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    for version in [api_version, desired] {
        if version != V1BETA1 && version != V1ALPHA1 {
            return Err(Error::UnknownVersion(version.to_owned()));
        }
    }
    if api_version == desired {
        return Ok(object);
    }
    if desired == V1ALPHA1 { object_to_v1alpha1(object) } else { object_to_v1beta1(object) }
}

/// A v1beta1 spec as v1alpha1: the flat spec and the residual JSON, if any. `spelling`
/// is the remembered v1alpha1 spelling of `maxRequestDuration`.
pub fn spec_to_v1alpha1(spec: &v1beta1::CanarySpec, spelling: Option<&str>) -> (v1alpha1::CanarySpec, Option<String>) {
    let spec_json = serde_json::to_value(spec).unwrap_or(Value::Null);
    let mut flat = flatten(spec, &spec_json);
    if let (Some(canonical), Some(written)) = (&flat.max_request_duration, spelling)
        && duration_to_ms(canonical) == duration_to_ms(written)
    {
        flat.max_request_duration = Some(written.to_owned());
    }
    let flat_json = serde_json::to_value(&flat).unwrap_or(Value::Null);
    let residual = [minimal_residual(&spec_json, &flat_json, true), minimal_residual(&spec_json, &flat_json, false)]
        .into_iter()
        .find(|r| expand(&flat_json, r.clone()).is_ok_and(|s| s == *spec))
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
    let spec = expand(&serde_json::to_value(flat).map_err(Error::Expand)?, residual)?;
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

/// A v1beta1 metric bound as v1alpha1 writes it, when v1alpha1 can write it exactly.
fn bound_to_flat(unit: Unit, v: &Value) -> Option<Value> {
    match unit {
        Unit::Number => v.is_number().then(|| v.clone()),
        Unit::Millis => v.as_f64().and_then(ms_to_duration).map(Value::from),
    }
}

/// A flat metric bound as the number v1beta1 holds, or an error naming the field.
fn bound_from_flat(f: &FlatField, unit: Unit, v: &Value) -> Result<f64, Error> {
    let (value, expected) = match unit {
        Unit::Number => (v.as_f64(), "a number"),
        Unit::Millis => (v.as_str().and_then(duration_to_ms), "a duration"),
    };
    value.ok_or_else(|| Error::Bound {
        field: f.name,
        value: v.as_str().map_or_else(|| v.to_string(), str::to_owned),
        expected,
    })
}

/// The bound of the first built-in metric of that name in a v1beta1 spec.
fn metric_bound<'a>(spec: &'a Value, metric: &str, bound: &str) -> Option<&'a Value> {
    let metrics = spec.pointer(METRICS)?.as_array()?;
    let i = flat::builtin_index(metrics, metric)?;
    metrics[i].get("thresholdRange")?.get(bound).filter(|v| !v.is_null())
}

/// The fields v1alpha1 can hold, each only when it can hold it exactly.
fn flatten(spec: &v1beta1::CanarySpec, spec_json: &Value) -> v1alpha1::CanarySpec {
    let mut flat = Map::new();
    for f in FLAT_FIELDS {
        let value = match f.place {
            Place::Field { parent, key, .. } => {
                spec_json.pointer(parent).and_then(|p| p.get(key)).filter(|v| !v.is_null()).cloned()
            }
            Place::Bound { metric, bound, unit } => {
                metric_bound(spec_json, metric, bound).and_then(|v| bound_to_flat(unit, v))
            }
        };
        if let Some(v) = value {
            flat.insert(f.name.to_owned(), v);
        }
    }
    // Each row's value has its v1alpha1 field's type (tests/flat_table.rs checks every
    // row). Were one wrong, the spec would still convert losslessly: all of it spilled.
    serde_json::from_value(Value::Object(flat))
        .unwrap_or_else(|_| v1alpha1::CanarySpec { target: spec.target_ref.name.clone(), ..Default::default() })
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

/// The spec without what `flat` (v1alpha1 JSON) holds. With `drop_bare`, built-in
/// metrics left with nothing but their name are dropped too (the expansion re-creates
/// them).
fn minimal_residual(spec: &Value, flat: &Value, drop_bare: bool) -> Value {
    let mut r = spec.clone();
    let held: Vec<&FlatField> = FLAT_FIELDS.iter().filter(|f| f.value_in(flat).is_some()).collect();
    for f in &held {
        if let Place::Field { parent, key, defaults } = f.place {
            remove(&mut r, parent, key);
            for (key, default) in defaults {
                remove_if(&mut r, parent, key, default);
            }
        }
    }
    let mut bare = Vec::new();
    if let Some(Value::Array(metrics)) = r.pointer_mut(METRICS) {
        for f in &held {
            let Place::Bound { metric, bound, .. } = f.place else { continue };
            let Some(i) = flat::builtin_index(metrics, metric) else { continue };
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
    // Objects left empty go, the innermost first (the metrics before the analysis): the
    // expansion re-creates those it needs.
    let mut containers: Vec<&str> = FLAT_FIELDS
        .iter()
        .map(|f| match f.place {
            Place::Field { parent, .. } => parent,
            Place::Bound { .. } => METRICS,
        })
        .collect();
    containers.sort_unstable_by_key(|p| (std::cmp::Reverse(p.matches('/').count()), *p));
    containers.dedup();
    for (parent, key) in containers.iter().filter_map(|p| p.rsplit_once('/')) {
        prune(&mut r, parent, key);
    }
    r
}

/// The object at `key` of a map, created when absent; a value of another type is an
/// error (it would otherwise be silently replaced and lost).
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Map<String, Value>, Error> {
    let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    if entry.is_null() {
        *entry = json!({});
    }
    entry.as_object_mut().ok_or_else(|| Error::Spill(format!("{key:?} must be an object")))
}

/// The object at `key` of an object, as [`child`].
fn object<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Map<String, Value>, Error> {
    let map = v.as_object_mut().ok_or_else(|| Error::Spill(format!("expected an object around {key:?}")))?;
    child(map, key)
}

/// The object at a JSON pointer, each object on the way created when absent.
fn object_at<'a>(v: &'a mut Value, pointer: &str) -> Result<&'a mut Map<String, Value>, Error> {
    match pointer.rsplit_once('/') {
        Some((parent, key)) => child(object_at(v, parent)?, key),
        None => v.as_object_mut().ok_or_else(|| Error::Spill("expected a JSON object".to_owned())),
    }
}

/// Lays `flat` (v1alpha1 JSON) over a residual and reads the result as a v1beta1 spec.
fn expand(flat: &Value, residual: Value) -> Result<v1beta1::CanarySpec, Error> {
    if !residual.is_object() {
        return Err(Error::Spill(format!("expected a JSON object, got {residual}")));
    }
    let mut v = residual;
    for f in FLAT_FIELDS {
        let (Place::Field { parent, key, defaults }, Some(value)) = (f.place, f.value_in(flat)) else { continue };
        let object = object_at(&mut v, parent)?;
        object.insert(key.to_owned(), value.clone());
        for (key, default) in defaults {
            object.entry(*key).or_insert_with(|| json!(default));
        }
    }
    // The metrics' parent (`analysis`) is there even with no bound written flat: a
    // spill's null there stands for an empty one, and any other non-object is an error.
    let (parent, key) = METRICS.rsplit_once('/').unwrap_or_default();
    let parent = object_at(&mut v, parent)?;
    let mut bounds = Vec::new();
    for f in FLAT_FIELDS {
        let (Place::Bound { metric, bound, unit }, Some(value)) = (f.place, f.value_in(flat)) else { continue };
        bounds.push((metric, bound, bound_from_flat(f, unit, value)?));
    }
    for (metric, bound, value) in bounds {
        let metrics = parent.entry(key).or_insert_with(|| json!([]));
        let list = metrics.as_array_mut().ok_or_else(|| {
            Error::Spill(format!("{} must be a list", METRICS.trim_start_matches('/').replace('/', ".")))
        })?;
        let i = match flat::builtin_index(list, metric) {
            Some(i) => i,
            None => {
                list.push(json!({"name": metric}));
                list.len() - 1
            }
        };
        object(&mut list[i], "thresholdRange")?.insert(bound.to_owned(), json!(value));
    }
    serde_json::from_value(v).map_err(Error::Expand)
}
