//! HorizontalPodAutoscaler as kube-apiserver serves it: stored as autoscaling/v2, served
//! as v1 too, converted as kube's `pkg/apis/autoscaling/v1/conversion.go` does (v1's
//! `targetCPUUtilizationPercentage` is v2's first `Resource` cpu `Utilization` metric;
//! what v1 cannot say rides in the `autoscaling.alpha.kubernetes.io/*` annotations and
//! comes back), defaulted per version and validated as kube validates it.
//!
//! ```text
//!  v1 write ──to_v2──▶ store (v2) ──to_v1──▶ v1 read (annotations: metrics, current-metrics,
//!                                                     conditions, behavior)
//! ```

mod metrics;

use serde_json::{Map, Value, json};

pub use self::metrics::go_json;

pub const GROUP: &str = "autoscaling";
pub const KIND: &str = "HorizontalPodAutoscaler";

/// v2 metrics other than the CPU utilization target, on a v1 object.
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// v2 `status.currentMetrics`, on a v1 object.
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// v2 `status.conditions`, on a v1 object.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// v2 `spec.behavior` (in kube's internal form), on a v1 object.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP: [&str; 4] =
    [METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION];

/// The CPU utilization an autoscaler targets when it names no metric (`DefaultCPUUtilization`).
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

pub fn is_autoscaler(group: &str, kind: &str) -> bool {
    group == GROUP && kind == KIND
}

/// `object` (at either version) at `api_version`; `None` for a version not served.
pub fn convert(object: &Value, api_version: &str) -> Option<Value> {
    let from = object.get("apiVersion").and_then(Value::as_str);
    match api_version {
        _ if from == Some(api_version) => Some(object.clone()),
        "autoscaling/v1" => Some(to_v1(&to_v2(object))),
        "autoscaling/v2" => Some(to_v2(object)),
        _ => None,
    }
}

/// Whether a v2 metric is the one v1 says with `targetCPUUtilizationPercentage`.
fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m.pointer("/resource/name") == Some(&json!("cpu"))
        && m.pointer("/resource/target/averageUtilization").is_some_and(|u| !u.is_null())
}

fn cpu_metric(utilization: Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}})
}

fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Copies the fields `keys` of `from` that are set into `to`.
fn copy(from: &Value, to: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if let Some(v) = from.get(*k).filter(|v| !v.is_null()) {
            to.insert((*k).to_owned(), v.clone());
        }
    }
}

/// `metadata` without the round-trip annotations, and those annotations.
fn split_metadata(object: &Value) -> (Value, Map<String, Value>) {
    let mut meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut taken = Map::new();
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        for key in ROUND_TRIP {
            if let Some(v) = annotations.remove(key) {
                taken.insert(key.to_owned(), v);
            }
        }
        if annotations.is_empty() {
            meta.as_object_mut().map(|m| m.remove("annotations"));
        }
    }
    (meta, taken)
}

/// A v2 object as v1 (`Convert_autoscaling_HorizontalPodAutoscaler_To_v1_...`).
pub fn to_v1(v2: &Value) -> Value {
    let (mut meta, _) = split_metadata(v2);
    let spec = v2.get("spec").cloned().unwrap_or_default();
    let metrics = list(spec.get("metrics"));
    let mut out_spec = Map::new();
    copy(&spec, &mut out_spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    out_spec.entry("maxReplicas").or_insert(json!(0));
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        out_spec
            .insert("targetCPUUtilizationPercentage".into(), cpu["resource"]["target"]["averageUtilization"].clone());
    }
    let status = v2.get("status").cloned().unwrap_or_default();
    let current = list(status.get("currentMetrics"));
    let mut out_status = Map::new();
    copy(&status, &mut out_status, &["observedGeneration", "lastScaleTime"]);
    out_status.insert("currentReplicas".into(), status.get("currentReplicas").cloned().unwrap_or(json!(0)));
    out_status.insert("desiredReplicas".into(), status.get("desiredReplicas").cloned().unwrap_or(json!(0)));
    let cpu_now = current.iter().rev().find_map(|m| {
        (m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")))
            .then(|| m.pointer("/resource/current/averageUtilization").filter(|u| !u.is_null()))
            .flatten()
    });
    if let Some(u) = cpu_now {
        out_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
    }
    let mut annotations = Map::new();
    let others: Vec<Value> = metrics.iter().filter(|m| !is_cpu_utilization(m)).map(metrics::spec_to_v1).collect();
    if !others.is_empty() {
        annotations.insert(METRICS_ANNOTATION.into(), json!(go_json(&Value::Array(others))));
    }
    if !current.is_empty() {
        let current: Vec<Value> = current.iter().map(metrics::status_to_v1).collect();
        annotations.insert(CURRENT_METRICS_ANNOTATION.into(), json!(go_json(&Value::Array(current))));
    }
    if let Some(behavior) = spec.get("behavior").filter(|b| b.is_object()) {
        annotations.insert(BEHAVIOR_ANNOTATION.into(), json!(go_json(&metrics::behavior_to_internal(behavior))));
    }
    let conditions = list(status.get("conditions"));
    if !conditions.is_empty() {
        annotations.insert(CONDITIONS_ANNOTATION.into(), json!(go_json(&Value::Array(conditions.to_vec()))));
    }
    if !annotations.is_empty() {
        let m = meta.as_object_mut().expect("metadata is an object");
        let existing = m.entry("annotations").or_insert_with(|| json!({}));
        if let Some(existing) = existing.as_object_mut() {
            existing.extend(annotations);
        }
    }
    json!({"apiVersion": "autoscaling/v1", "kind": KIND, "metadata": meta, "spec": out_spec, "status": out_status})
}

/// A round-trip annotation's JSON list, if it is one.
fn annotated_list(taken: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    let text = taken.get(key)?.as_str()?;
    serde_json::from_str::<Vec<Value>>(text).ok()
}

/// A v1 (or v2) object as v2 (`Convert_v1_HorizontalPodAutoscaler_To_autoscaling_...`),
/// with v2's defaults.
pub fn to_v2(object: &Value) -> Value {
    if object.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v2") {
        let mut v2 = object.clone();
        defaults(&mut v2);
        return v2;
    }
    let (meta, taken) = split_metadata(object);
    let spec = object.get("spec").cloned().unwrap_or_default();
    let mut out_spec = Map::new();
    copy(&spec, &mut out_spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    let mut metrics: Vec<Value> =
        spec.get("targetCPUUtilizationPercentage").cloned().map(cpu_metric).into_iter().collect();
    if let Some(others) = annotated_list(&taken, METRICS_ANNOTATION) {
        // The CPU target, if any, comes after the others.
        metrics.splice(0..0, others.iter().map(metrics::spec_to_v2));
    }
    if !metrics.is_empty() {
        out_spec.insert("metrics".into(), Value::Array(metrics));
    }
    let behavior = taken.get(BEHAVIOR_ANNOTATION).and_then(Value::as_str);
    if let Some(behavior) = behavior.and_then(|b| serde_json::from_str::<Value>(b).ok()) {
        out_spec.extend(metrics::behavior_from_internal(&behavior).map(|b| ("behavior".to_owned(), b)));
    }
    let mut out = json!({"apiVersion": "autoscaling/v2", "kind": KIND, "metadata": meta, "spec": out_spec});
    if let Some(status) = object.get("status").filter(|s| s.is_object()) {
        let mut out_status = Map::new();
        copy(status, &mut out_status, &["observedGeneration", "lastScaleTime"]);
        if let Some(n) = status.get("currentReplicas").filter(|n| n.as_i64().is_some_and(|n| n != 0)) {
            out_status.insert("currentReplicas".into(), n.clone());
        }
        out_status.insert("desiredReplicas".into(), status.get("desiredReplicas").cloned().unwrap_or(json!(0)));
        // The annotation has more to say than the CPU utilization: it wins.
        let current = match annotated_list(&taken, CURRENT_METRICS_ANNOTATION) {
            Some(current) => current.iter().map(metrics::status_to_v2).collect(),
            None => status
                .get("currentCPUUtilizationPercentage")
                .map(|u| json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}))
                .into_iter()
                .collect::<Vec<_>>(),
        };
        if !current.is_empty() {
            out_status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(conditions) = annotated_list(&taken, CONDITIONS_ANNOTATION) {
            out_status.insert("conditions".into(), Value::Array(conditions));
        }
        out["status"] = Value::Object(out_status);
    }
    defaults(&mut out);
    out
}

/// `(type, value, periodSeconds)` of a scaling policy.
fn policy(type_: &str, value: i64, period: i64) -> Value {
    json!({"type": type_, "value": value, "periodSeconds": period})
}

/// The defaults of either version (`SetDefaults_HorizontalPodAutoscaler`): one replica at
/// least; in v2 a CPU utilization target of 80% when no metric is named and, for a
/// behavior given, the scaling rules it leaves out.
pub fn defaults(object: &mut Value) {
    let v2 = object.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v2");
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    let spec = &mut object["spec"];
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec["minReplicas"] = json!(1);
    }
    if !v2 {
        return;
    }
    if list(spec.get("metrics")).is_empty() {
        spec["metrics"] = json!([cpu_metric(json!(DEFAULT_CPU_UTILIZATION))]);
    }
    let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) else { return };
    let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
        "policies": [policy("Pods", 4, 15), policy("Percent", 100, 15)]});
    let down = json!({"selectPolicy": "Max", "policies": [policy("Percent", 100, 15)]});
    for (key, default) in [("scaleUp", up), ("scaleDown", down)] {
        let rules = behavior.get_mut(key).filter(|r| r.is_object());
        match rules.and_then(Value::as_object_mut) {
            Some(rules) => {
                for (k, v) in default.as_object().into_iter().flatten() {
                    if rules.get(k).is_none_or(Value::is_null) {
                        rules.insert(k.clone(), v.clone());
                    }
                }
            }
            None => behavior[key] = default,
        }
    }
}

/// What kube-apiserver refuses of an autoscaler (`ValidateHorizontalPodAutoscaler`), on
/// its v2 form: the replica bounds, the target named, each metric's source given and a
/// utilization target above zero. `(field, message)` per problem.
pub fn validate(object: &Value) -> Vec<(String, String)> {
    let v2 = to_v2(object);
    let spec = &v2["spec"];
    let mut problems = Vec::new();
    let int = |p: &str| spec.pointer(p).and_then(Value::as_i64);
    let (min, max) = (int("/minReplicas").unwrap_or(1), int("/maxReplicas").unwrap_or(0));
    if min < 1 {
        problems.push(("spec.minReplicas".into(), format!("Invalid value: {min}: must be greater than or equal to 1")));
    }
    if max < 1 {
        problems.push(("spec.maxReplicas".into(), format!("Invalid value: {max}: must be greater than 0")));
    }
    if max < min {
        problems.push((
            "spec.maxReplicas".into(),
            format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
        ));
    }
    let mut reference = Vec::new();
    for field in ["kind", "name"] {
        if spec.pointer(&format!("/scaleTargetRef/{field}")).and_then(Value::as_str).is_none_or(str::is_empty) {
            reference.push((format!("spec.scaleTargetRef.{field}"), "Required value".to_owned()));
        }
    }
    if !reference.is_empty() {
        problems.extend(reference);
        return problems;
    }
    for (i, m) in list(spec.get("metrics")).iter().enumerate() {
        let at = format!("spec.metrics[{i}]");
        let source = match m["type"].as_str().unwrap_or_default() {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            other => {
                let supported = "\"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"";
                problems.push((
                    format!("{at}.type"),
                    format!("Unsupported value: {other:?}: supported values: {supported}"),
                ));
                continue;
            }
        };
        if !m.get(source).is_some_and(Value::is_object) {
            problems.push((
                format!("{at}.{source}"),
                "Required value: must populate information for the given metric source".into(),
            ));
            continue;
        }
        if let Some(u) =
            m.pointer(&format!("/{source}/target/averageUtilization")).and_then(Value::as_i64).filter(|u| *u < 1)
        {
            problems.push((
                format!("{at}.{source}.target.averageUtilization"),
                format!("Invalid value: {u}: must be greater than 0"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests;
