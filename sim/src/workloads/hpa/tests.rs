//! The autoscaler's decisions, table-driven: bounds, tolerance, a target at zero or
//! missing, metrics without a metrics API, the stand-in, stabilization and behaviors.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::metrics::{milli_quantity, parse_milli};
use super::*;

/// Flagger's podinfo autoscaler: 2..4 replicas, CPU at 99% of the request.
fn podinfo() -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}}}]},
    })
}

fn pod(n: usize, state: PodState) -> Pod {
    Pod { name: format!("podinfo-{n}"), state, cpu_request: Ok(100) }
}

/// `replicas` ready pods of 100m each, at `utilization` percent (the stand-in).
fn observed(replicas: i32, utilization: Option<i64>) -> Observed {
    let pods = (0..usize::try_from(replicas).unwrap()).map(|n| pod(n, PodState::Ready)).collect();
    Observed { target: Ok(Scale { replicas, selector: "app=podinfo".into() }), pods, utilization }
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = status["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?, c["reason"].as_str()?))
}

fn run(hpa: &Value, observed: &Observed) -> Decision {
    reconcile(hpa, observed, &mut History::default(), Timestamp::now())
}

#[test]
fn bounds_tolerance_and_the_stand_in_decide_the_replicas() {
    let cpu = "cpu resource utilization (percentage of request)";
    // (replicas now, stand-in utilization, rescaled to, reason)
    let cases: &[(i32, Option<i64>, Option<i32>, &str)] = &[
        (1, None, Some(2), "Current number of replicas below Spec.MinReplicas"),
        (1, Some(500), Some(2), "Current number of replicas below Spec.MinReplicas"),
        (7, None, Some(4), "Current number of replicas above Spec.MaxReplicas"),
        (0, Some(500), None, ""),
        (2, None, None, ""),
        (2, Some(99), None, ""),
        // Within 10% of the target either way: nothing.
        (2, Some(108), None, ""),
        (3, Some(90), None, ""),
        (2, Some(150), Some(4), &format!("{cpu} above target")),
        (2, Some(120), Some(3), &format!("{cpu} above target")),
        (2, Some(1000), Some(4), &format!("{cpu} above target")),
        // Not down yet: the first sync remembers the replicas it found, and scaling down
        // waits for the highest recommendation of 5 minutes (see below).
        (4, Some(10), None, ""),
        (4, Some(60), None, ""),
    ];
    for (current, utilization, to, reason) in cases {
        let d = run(&podinfo(), &observed(*current, *utilization));
        let got = d.rescale.as_ref().map(|r| (r.to, r.reason.as_str()));
        assert_eq!(got, to.map(|to| (to, *reason)), "{current} replicas at {utilization:?}%");
        // Without a metric in bounds, the last desired replicas stay (none yet).
        let desired = to.unwrap_or(if utilization.is_some() { *current } else { 0 });
        assert_eq!(d.status["desiredReplicas"], desired, "{current} at {utilization:?}: {}", d.status);
        if let Some(to) = to {
            assert_eq!(d.rescaled().unwrap().message, format!("New size: {to}; reason: {reason}"));
            assert!(d.status["lastScaleTime"].is_string());
            assert_eq!(condition(&d.status, "AbleToScale"), Some(("True", "SucceededRescale")));
        }
    }
}

#[test]
fn a_target_at_zero_replicas_is_not_scaled() {
    let d = run(&podinfo(), &observed(0, Some(500)));
    assert_eq!(d.rescale, None);
    assert_eq!(condition(&d.status, "ScalingActive"), Some(("False", "ScalingDisabled")));
    assert_eq!(d.status, json!({"desiredReplicas": 0, "conditions": d.status["conditions"]}));
}

#[test]
fn a_missing_target_is_failed_get_scale() {
    let missing =
        Observed { target: Err("deployments.apps \"podinfo\" not found".into()), pods: vec![], utilization: None };
    let d = run(&podinfo(), &missing);
    assert_eq!(d.rescale, None);
    assert_eq!(d.events, [Event::warning("FailedGetScale", "deployments.apps \"podinfo\" not found".into())]);
    let c = &d.status["conditions"][0];
    assert_eq!(
        (c["type"].as_str(), c["status"].as_str(), c["reason"].as_str()),
        (Some("AbleToScale"), Some("False"), Some("FailedGetScale"))
    );
    assert_eq!(
        c["message"],
        "the HPA controller was unable to get the target's current scale: deployments.apps \"podinfo\" not found"
    );
    assert!(d.status.get("desiredReplicas").is_none(), "the status is otherwise untouched");
}

#[test]
fn without_a_metrics_api_cpu_is_unknown_as_in_a_cluster_without_metrics_server() {
    let d = run(&podinfo(), &observed(2, None));
    assert_eq!(d.rescale, None);
    let error = "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from \
                 resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";
    assert_eq!(
        d.events,
        [
            Event::warning("FailedGetResourceMetric", error.into()),
            Event::warning(
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: {error}"
                )
            ),
        ]
    );
    assert_eq!(condition(&d.status, "ScalingActive"), Some(("False", "FailedGetResourceMetric")));
    assert_eq!(
        d.status["conditions"][1]["message"],
        format!("the HPA was unable to compute the replica count: {error}")
    );
    assert_eq!(d.status["currentMetrics"], json!([{"type": ""}]));
    assert_eq!((d.status["currentReplicas"].as_i64(), d.status["desiredReplicas"].as_i64()), (Some(2), Some(0)));
    assert!(condition(&d.status, "ScalingLimited").is_none());
}

#[test]
fn the_stand_in_reports_utilization_and_usage() {
    let d = run(&podinfo(), &observed(2, Some(150)));
    assert_eq!(
        d.status["currentMetrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
        "current": {"averageUtilization": 150, "averageValue": "150m"}}}])
    );
    assert_eq!(condition(&d.status, "ScalingActive"), Some(("True", "ValidMetricFound")));
    assert_eq!(condition(&d.status, "ScalingLimited"), Some(("False", "DesiredWithinRange")));
    let d = run(&podinfo(), &observed(2, Some(500)));
    assert_eq!(condition(&d.status, "ScalingLimited"), Some(("True", "TooManyReplicas")));
    // A pod without a CPU request has no utilization.
    let mut o = observed(2, Some(150));
    o.pods[1].cpu_request = Err("sidecar".into());
    let d = run(&podinfo(), &o);
    assert_eq!(d.rescale, None);
    assert!(
        d.events[0].message.ends_with("missing request for cpu in container sidecar of Pod podinfo-1"),
        "{:?}",
        d.events
    );
    // Pods not ready count as using nothing on a scale up: 1 of 2 at 300% asks for 4.
    let mut o = observed(2, Some(300));
    o.pods[1].state = PodState::Unready;
    assert_eq!(run(&podinfo(), &o).rescale.map(|r| r.to), Some(4));
    // No ready pod, no metric.
    o.pods[0].state = PodState::Unready;
    let d = run(&podinfo(), &o);
    assert!(d.events[0].message.ends_with("did not receive metrics for targeted pods (pods might be unready)"));
    // A metric other than CPU has no source; the CPU one still scales up.
    let mut hpa = podinfo();
    hpa["spec"]["metrics"].as_array_mut().unwrap().insert(0, json!({"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}));
    let d = run(&hpa, &observed(2, Some(150)));
    assert_eq!(d.rescale.map(|r| r.to), Some(4));
    assert_eq!(d.events.iter().map(|e| e.reason).collect::<Vec<_>>(), ["FailedGetPodsMetric"]);
    assert_eq!(d.status["currentMetrics"][0], json!({"type": ""}));
    // ... but not down: a failing metric might have asked for more.
    assert_eq!(run(&hpa, &observed(4, Some(10))).rescale, None);
}

#[test]
fn scaling_up_is_limited_to_twice_the_replicas_or_four() {
    let mut hpa = podinfo();
    hpa["spec"]["minReplicas"] = json!(1);
    hpa["spec"]["maxReplicas"] = json!(20);
    for (current, to) in [(1, 4), (3, 6), (8, 16)] {
        let d = run(&hpa, &observed(current, Some(1000)));
        assert_eq!(d.rescale.map(|r| r.to), Some(to), "from {current}");
        assert_eq!(condition(&d.status, "ScalingLimited"), Some(("True", "ScaleUpLimit")));
    }
}

#[test]
fn scaling_down_waits_for_the_highest_recommendation_of_five_minutes() {
    let mut history = History::default();
    let t0 = Timestamp::now();
    let at = |s: i64| t0.checked_add(SignedDuration::from_secs(s)).unwrap();
    let d = reconcile(&podinfo(), &observed(4, Some(99)), &mut history, at(0));
    assert_eq!(d.rescale, None);
    let d = reconcile(&podinfo(), &observed(4, Some(10)), &mut history, at(15));
    assert_eq!(d.rescale, None, "4 was recommended 15 s ago");
    assert_eq!(condition(&d.status, "AbleToScale"), Some(("True", "ScaleDownStabilized")));
    let d = reconcile(&podinfo(), &observed(4, Some(10)), &mut history, at(316));
    assert_eq!(d.rescale.map(|r| r.to), Some(2));
}

#[test]
fn behaviors_stabilize_and_limit_each_direction() {
    let mut hpa = podinfo();
    hpa["spec"]["maxReplicas"] = json!(10);
    hpa["spec"]["behavior"] = json!({
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
        "scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
    });
    let mut history = History::default();
    let t0 = Timestamp::now();
    let at = |s: i64| t0.checked_add(SignedDuration::from_secs(s)).unwrap();
    let d = reconcile(&hpa, &observed(2, Some(500)), &mut history, at(0));
    assert_eq!(d.rescale.map(|r| r.to), Some(3), "one pod per minute");
    assert_eq!(condition(&d.status, "ScalingLimited"), Some(("True", "ScaleUpLimit")));
    let d = reconcile(&hpa, &observed(3, Some(500)), &mut history, at(15));
    assert_eq!(d.rescale, None, "the minute's pod is spent");
    let d = reconcile(&hpa, &observed(3, Some(500)), &mut history, at(61));
    assert_eq!(d.rescale.map(|r| r.to), Some(4));
    let d = reconcile(&hpa, &observed(8, Some(10)), &mut history, at(200));
    assert_eq!(d.rescale.map(|r| r.to), Some(4), "half per minute");
    assert_eq!(condition(&d.status, "ScalingLimited"), Some(("True", "ScaleDownLimit")));
    hpa["spec"]["behavior"]["scaleUp"]["selectPolicy"] = json!("Disabled");
    assert_eq!(reconcile(&hpa, &observed(3, Some(500)), &mut history, at(400)).rescale, None);
}

#[test]
fn a_failed_rescale_keeps_the_last_desired_replicas() {
    let mut hpa = podinfo();
    hpa["status"] = json!({"desiredReplicas": 2, "currentReplicas": 2});
    let d = run(&hpa, &observed(1, None));
    let (status, event) = d.failed("deployments.apps \"podinfo\" is forbidden");
    assert_eq!(condition(&status, "AbleToScale"), Some(("False", "FailedUpdateScale")));
    assert_eq!((status["desiredReplicas"].as_i64(), status["currentReplicas"].as_i64()), (Some(2), Some(1)));
    assert!(status.get("lastScaleTime").is_none());
    assert_eq!(
        event.message,
        "New size: 2; reason: Current number of replicas below Spec.MinReplicas; error: deployments.apps \"podinfo\" is forbidden"
    );
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let mut hpa = podinfo();
    let old = "2026-01-01T00:00:00Z";
    hpa["status"] = json!({"desiredReplicas": 2, "conditions": [
        {"type": "AbleToScale", "status": "True", "lastTransitionTime": old, "reason": "ReadyForNewScale", "message": "m"},
        {"type": "ScalingActive", "status": "True", "lastTransitionTime": old, "reason": "ValidMetricFound", "message": "m"}]});
    let d = run(&hpa, &observed(2, None));
    assert_eq!(d.status["conditions"][0]["lastTransitionTime"], old);
    assert_eq!(d.status["conditions"][0]["reason"], "SucceededGetScale");
    assert_ne!(d.status["conditions"][1]["lastTransitionTime"], old, "ScalingActive turned False");
}

#[test]
fn quantities_read_and_print_as_kube_does() {
    for (q, milli) in [("100m", 100), ("0.5", 500), ("2", 2000), ("1.0005", 1001), ("1k", 1_000_000)] {
        assert_eq!(parse_milli(q), Some(milli), "{q}");
    }
    assert_eq!(parse_milli("x"), None);
    for (milli, q) in [(150, "150m"), (1000, "1"), (1500, "1500m"), (0, "0"), (2_000_000, "2k")] {
        assert_eq!(milli_quantity(milli), q);
    }
    let annotated = |v: &str| json!({"metadata": {"annotations": {UTILIZATION_ANNOTATION: v}}});
    assert_eq!(stand_in_utilization(&annotated("150")), Some(150));
    assert_eq!(stand_in_utilization(&annotated("40%")), Some(40));
    assert_eq!(stand_in_utilization(&annotated("lots")), None);
    assert_eq!(stand_in_utilization(&podinfo()), None);
}
