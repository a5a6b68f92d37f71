//! Conversion, defaults and validation of HorizontalPodAutoscalers, against what
//! kube-apiserver 1.33 answers for the same objects.

use serde_json::{Value, json};

use super::*;

/// Flagger's podinfo autoscaler (`kustomize/podinfo/hpa.yaml`), as stored.
fn podinfo() -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 99}}}],
        },
    })
}

#[test]
fn a_cpu_target_is_v1s_target_cpu_utilization_percentage() {
    let v1 = to_v1(&podinfo());
    assert_eq!(
        v1,
        json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 99},
            "status": {"currentReplicas": 0, "desiredReplicas": 0},
        })
    );
    let mut back = to_v2(&v1);
    back.as_object_mut().unwrap().remove("status");
    assert_eq!(back, podinfo());
}

#[test]
fn what_v1_cannot_say_rides_in_annotations_and_comes_back() {
    let mut v2 = podinfo();
    v2["metadata"]["annotations"] = json!({"team": "a"});
    v2["spec"]["metrics"] = json!([
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
        {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}}},
    ]);
    v2["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}});
    defaults(&mut v2);
    v2["status"] = json!({
        "currentReplicas": 2, "desiredReplicas": 3, "lastScaleTime": "2026-01-01T00:00:00Z",
        "currentMetrics": [
            {"type": ""},
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "40m"}}},
        ],
        "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z",
            "reason": "SucceededGetScale", "message": "the HPA controller was able to get the target's current scale"}],
    });
    let v1 = to_v1(&v2);
    let annotations = &v1["metadata"]["annotations"];
    assert_eq!(
        annotations[METRICS_ANNOTATION],
        r#"[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"64Mi"}},{"type":"Pods","pods":{"metricName":"rps","targetAverageValue":"10"}}]"#
    );
    assert_eq!(
        annotations[CURRENT_METRICS_ANNOTATION],
        r#"[{"type":""},{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":40,"currentAverageValue":"40m"}}]"#
    );
    assert_eq!(
        annotations[CONDITIONS_ANNOTATION],
        r#"[{"type":"AbleToScale","status":"True","lastTransitionTime":"2026-01-01T00:00:00Z","reason":"SucceededGetScale","message":"the HPA controller was able to get the target's current scale"}]"#
    );
    assert_eq!(
        annotations[BEHAVIOR_ANNOTATION],
        r#"{"ScaleUp":{"StabilizationWindowSeconds":0,"SelectPolicy":"Max","Policies":[{"Type":"Pods","Value":4,"PeriodSeconds":15},{"Type":"Percent","Value":100,"PeriodSeconds":15}],"Tolerance":null},"ScaleDown":{"StabilizationWindowSeconds":60,"SelectPolicy":"Max","Policies":[{"Type":"Pods","Value":1,"PeriodSeconds":30}],"Tolerance":null}}"#
    );
    assert_eq!(annotations["team"], "a");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 99);
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
    assert_eq!(v1["status"]["lastScaleTime"], "2026-01-01T00:00:00Z");
    // Back as it was: the CPU target last, the annotations gone.
    assert_eq!(to_v2(&v1), v2);
    // A v1 object read again as v1 carries the same annotations, not twice.
    assert_eq!(convert(&to_v1(&to_v2(&v1)), "autoscaling/v1").unwrap(), v1);
}

#[test]
fn a_v1_object_without_a_target_gets_kubes_default_of_80_percent() {
    let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "a"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 3}});
    let v2 = to_v2(&v1);
    assert_eq!(v2["spec"]["minReplicas"], 1);
    assert_eq!(v2["spec"]["metrics"], json!([cpu_metric(json!(80))]));
    assert_eq!(to_v1(&v2)["spec"]["targetCPUUtilizationPercentage"], 80);
    assert!(v2.get("status").is_none());
}

#[test]
fn v2_defaults_fill_a_behavior_given() {
    let mut v2 = podinfo();
    v2["spec"].as_object_mut().unwrap().remove("minReplicas");
    v2["spec"]["behavior"] = json!({"scaleUp": {"selectPolicy": "Disabled"}});
    defaults(&mut v2);
    assert_eq!(v2["spec"]["minReplicas"], 1);
    assert_eq!(
        v2["spec"]["behavior"],
        json!({
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Disabled",
                "policies": [policy("Pods", 4, 15), policy("Percent", 100, 15)]},
            "scaleDown": {"selectPolicy": "Max", "policies": [policy("Percent", 100, 15)]},
        })
    );
}

#[test]
fn validation_names_fields_as_kube_does() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = podinfo();
        f(&mut v);
        validate(&v)
    };
    let problem = |field: &str, message: &str| vec![(field.to_owned(), message.to_owned())];
    assert_eq!(with(&|_| {}), []);
    assert_eq!(
        with(&|v| v["spec"]["minReplicas"] = json!(0)),
        problem("spec.minReplicas", "Invalid value: 0: must be greater than or equal to 1")
    );
    assert_eq!(
        with(&|v| v["spec"]["maxReplicas"] = json!(1)),
        problem("spec.maxReplicas", "Invalid value: 1: must be greater than or equal to `minReplicas`")
    );
    assert_eq!(
        with(&|v| v["spec"]["scaleTargetRef"] = json!({"kind": "Deployment"})),
        problem("spec.scaleTargetRef.name", "Required value")
    );
    assert_eq!(
        with(&|v| v["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = json!(0)),
        problem("spec.metrics[0].resource.target.averageUtilization", "Invalid value: 0: must be greater than 0")
    );
    assert_eq!(with(&|v| v["spec"]["metrics"][0]["type"] = json!("Pods")).len(), 1);
    // v1 is validated as the v2 object it is stored as.
    let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "a"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 0, "targetCPUUtilizationPercentage": 0}});
    let fields: Vec<String> = validate(&v1).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["spec.maxReplicas", "spec.maxReplicas", "spec.metrics[0].resource.target.averageUtilization"]);
}
