//! kube-apiserver's printer for HorizontalPodAutoscalers (`printHorizontalPodAutoscaler`
//! and `formatHPAMetrics`): `kubectl get hpa`'s REFERENCE, TARGETS, MINPODS, MAXPODS
//! and REPLICAS, read from the v2 form whichever version was asked for.

use serde_json::{Value, json};

use super::builtin::Column;
use super::{age, text};

/// How many metrics TARGETS shows before `+ N more...`.
const SHOWN: usize = 2;

pub(super) fn columns() -> Vec<Column> {
    vec![
        ("Name", "string", 0),
        ("Reference", "string", 0),
        ("Targets", "string", 0),
        ("MinPods", "string", 0),
        ("MaxPods", "string", 0),
        ("Replicas", "string", 0),
        ("Age", "string", 0),
    ]
}

pub(super) fn cells(object: &Value) -> Vec<Value> {
    let o = crate::autoscaling::to_v2(object);
    let reference =
        format!("{}/{}", text(o.pointer("/spec/scaleTargetRef/kind")), text(o.pointer("/spec/scaleTargetRef/name")));
    let min = o.pointer("/spec/minReplicas").filter(|m| !m.is_null()).map_or("<unset>".to_owned(), |m| text(Some(m)));
    let int = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    vec![
        json!(text(o.pointer("/metadata/name"))),
        json!(reference),
        json!(targets(&o)),
        json!(min),
        json!(int("/spec/maxReplicas")),
        json!(int("/status/currentReplicas")),
        json!(age(object)),
    ]
}

/// `formatHPAMetrics`: each metric's current value (by position in the status) over
/// its target; `<unknown>` where no current value was reported.
fn targets(o: &Value) -> String {
    let specs = o.pointer("/spec/metrics").and_then(Value::as_array).cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = o.pointer("/status/currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let shown: Vec<String> =
        specs.iter().take(SHOWN).enumerate().map(|(i, spec)| target(spec, statuses.get(i))).collect();
    let joined = shown.join(", ");
    match specs.len().checked_sub(SHOWN).filter(|more| *more > 0) {
        Some(more) => format!("{joined} + {more} more..."),
        None => joined,
    }
}

/// One metric's `current/target`.
fn target(spec: &Value, status: Option<&Value>) -> String {
    let at = |v: Option<&Value>, p: &str| v.and_then(|v| v.pointer(p)).filter(|v| !v.is_null()).map(|v| text(Some(v)));
    let current = |source: &str, field: &str| {
        let found = status.and_then(|s| s.get(source)).filter(|s| !s.is_null());
        at(found, &format!("/current/{field}")).unwrap_or_else(|| "<unknown>".into())
    };
    let percent = |v: String| if v == "<unknown>" { v } else { format!("{v}%") };
    let source = |name: &str| spec.get(name).cloned().unwrap_or_default();
    match spec["type"].as_str().unwrap_or_default() {
        "External" | "Object" => {
            let key = if spec["type"] == "External" { "external" } else { "object" };
            let s = source(key);
            match at(Some(&s), "/target/averageValue") {
                Some(average) => format!("{}/{average} (avg)", current(key, "averageValue")),
                None => format!("{}/{}", current(key, "value"), at(Some(&s), "/target/value").unwrap_or_default()),
            }
        }
        "Pods" => format!(
            "{}/{}",
            current("pods", "averageValue"),
            at(Some(&source("pods")), "/target/averageValue").unwrap_or_default()
        ),
        kind @ ("Resource" | "ContainerResource") => {
            let key = if kind == "Resource" { "resource" } else { "containerResource" };
            let s = source(key);
            let name = at(Some(&s), "/name").unwrap_or_default();
            match at(Some(&s), "/target/averageValue") {
                Some(average) => format!("{name}: {}/{average}", current(key, "averageValue")),
                None => {
                    let target =
                        at(Some(&s), "/target/averageUtilization").map_or("<auto>".to_owned(), |t| format!("{t}%"));
                    format!("{name}: {}/{target}", percent(current(key, "averageUtilization")))
                }
            }
        }
        _ => "<unknown type>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_kubectl_get_hpa_shows_them() {
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}}});
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let hpa = |metrics: Value, current: Value| {
            json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "podinfo"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "podinfo"}, "minReplicas": 2, "maxReplicas": 4, "metrics": metrics},
                "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": current}})
        };
        let cpu_at = |u: i64| json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u, "averageValue": "40m"}}});
        for (metrics, current, want) in [
            (json!([cpu]), json!(null), "cpu: <unknown>/99%"),
            (json!([cpu]), json!([{"type": ""}]), "cpu: <unknown>/99%"),
            (json!([cpu]), json!([cpu_at(40)]), "cpu: 40%/99%"),
            (json!([memory, cpu]), json!([{"type": ""}, cpu_at(150)]), "memory: <unknown>/64Mi, cpu: 150%/99%"),
            (json!([memory, cpu, pods]), json!(null), "memory: <unknown>/64Mi, cpu: <unknown>/99% + 1 more..."),
            (json!([pods]), json!(null), "<unknown>/10"),
        ] {
            let cells = cells(&hpa(metrics, current));
            assert_eq!(cells[2], want);
            assert_eq!(&cells[..2], [json!("podinfo"), json!("Deployment/podinfo")]);
            assert_eq!(&cells[3..6], [json!("2"), json!(4), json!(2)]);
        }
        // A v1 object prints as its v2 form; no minimum prints as kube's default.
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "a"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 20}});
        assert_eq!(&cells(&v1)[2..6], [json!("cpu: 20%/50%"), json!("1"), json!(3), json!(1)]);
    }
}
