//! The replica count each metric of an autoscaler proposes, as kube's
//! `computeReplicasForMetrics` and `ReplicaCalculator` compute it, over the sim's
//! stand-in for a metrics pipeline: every ready pod of the target uses the autoscaler's
//! stand-in utilization (a percent) of its CPU request; no other metric exists, so
//! those fail with the errors of a cluster without the metrics APIs.

use serde_json::{Value, json};

use super::{Event, Observed, PodState, TOLERANCE};

/// What the resource metrics API answers in a cluster without metrics-server.
fn no_resource_metrics(resource: &str) -> String {
    format!(
        "unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: \
         the server could not find the requested resource (get pods.metrics.k8s.io)"
    )
}

const NO_CUSTOM_METRICS: &str =
    "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";
const NO_EXTERNAL_METRICS: &str =
    "unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered";

/// (usage, request) of one pod, in millicores.
type Sample = (i64, i64);
/// How far a set of pods is from the target: 1.0 is on it.
type Ratio = dyn Fn(&[Sample]) -> f64;

fn usage(pods: &[Sample]) -> i64 {
    pods.iter().map(|(u, _)| u).sum()
}

/// A metric that gave no proposal: the `ScalingActive` reason (also the Event's), the
/// error as the Event says it, and as `computeReplicasForMetrics` wraps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    pub error: String,
    pub wrapped: String,
}

/// All metrics' proposals (`computeReplicasForMetrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposals {
    /// The highest proposal, and the metric it came from; `None` when none proposed.
    pub best: Option<(i32, String)>,
    /// One per metric, in order; `{"type": ""}` for a metric that failed.
    pub statuses: Vec<Value>,
    pub failures: Vec<Failure>,
}

impl Proposals {
    /// kube's `invalid metrics (N invalid out of M), first error is: ...`.
    pub fn error(&self) -> Option<String> {
        let first = self.failures.first()?;
        Some(format!(
            "invalid metrics ({} invalid out of {}), first error is: {}",
            self.failures.len(),
            self.statuses.len(),
            first.wrapped
        ))
    }

    /// The failures' Events (`FailedGetResourceMetric`, ...), as each metric records one.
    pub fn events(&self) -> Vec<Event> {
        self.failures.iter().map(|f| Event::warning(f.reason, f.error.clone())).collect()
    }
}

pub fn propose(metrics: &[Value], current: i32, observed: &Observed) -> Proposals {
    let mut out = Proposals { best: None, statuses: Vec::new(), failures: Vec::new() };
    for spec in metrics {
        match one(spec, current, observed) {
            Ok((replicas, name, status)) => {
                if out.best.as_ref().is_none_or(|(best, _)| replicas > *best) {
                    out.best = Some((replicas, name));
                }
                out.statuses.push(status);
            }
            Err(failure) => {
                out.statuses.push(json!({"type": ""}));
                out.failures.push(failure);
            }
        }
    }
    out
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// One metric's proposal: replicas, the metric's name, its status.
fn one(spec: &Value, current: i32, observed: &Observed) -> Result<(i32, String, Value), Failure> {
    let failure = |reason: &'static str, kind: &str, error: String| Failure {
        reason,
        wrapped: format!("failed to get {kind} metric value: {error}"),
        error,
    };
    match str_at(spec, "/type") {
        "Resource" => {
            let name = str_at(spec, "/resource/name");
            let target = spec.pointer("/resource/target").cloned().unwrap_or_default();
            resource(name, &target, current, observed)
                .map_err(|error| failure("FailedGetResourceMetric", &format!("{name} resource"), error))
        }
        "ContainerResource" => {
            let name = str_at(spec, "/containerResource/name");
            let error = format!("failed to get {name} utilization: {}", no_resource_metrics(name));
            Err(failure("FailedGetContainerResourceMetric", &format!("{name} container resource"), error))
        }
        "Pods" => {
            let error = format!("unable to get metric {}: {NO_CUSTOM_METRICS}", str_at(spec, "/pods/metric/name"));
            Err(failure("FailedGetPodsMetric", "pods", error))
        }
        "Object" => {
            let error = format!("unable to get metric {}: {NO_CUSTOM_METRICS}", str_at(spec, "/object/metric/name"));
            Err(failure("FailedGetObjectMetric", "object", error))
        }
        "External" => {
            let error = format!(
                "unable to get external metric {}: {NO_EXTERNAL_METRICS}",
                str_at(spec, "/external/metric/name")
            );
            Err(failure("FailedGetExternalMetric", "external", error))
        }
        other => Err(Failure {
            reason: "InvalidMetricSourceType",
            error: format!("unknown metric source type {other:?}"),
            wrapped: format!("unknown metric source type {other:?}"),
        }),
    }
}

/// A `Resource` metric against the stand-in: a utilization target compares the pods'
/// usage with their requests, an average value target with the value.
fn resource(name: &str, target: &Value, current: i32, observed: &Observed) -> Result<(i32, String, Value), String> {
    let utilization = target.get("averageUtilization").and_then(Value::as_i64);
    let average = target.get("averageValue").and_then(Value::as_str);
    let what = match (utilization, average) {
        (_, Some(_)) => "usage",
        (Some(_), None) => "utilization",
        (None, None) => {
            return Err("invalid resource metric source: neither an average utilization target nor an average \
                        value (usage) target was set"
                .into());
        }
    };
    let fail = |e: String| format!("failed to get {name} {what}: {e}");
    let Some(percent) = observed.utilization.filter(|_| name == "cpu") else {
        return Err(fail(no_resource_metrics(name)));
    };
    if observed.pods.is_empty() {
        return Err(fail("no pods returned by selector while calculating replica count".into()));
    }
    if what == "utilization"
        && let Some((container, pod)) =
            observed.pods.iter().find_map(|p| p.cpu_request.as_ref().err().map(|c| (c, &p.name)))
    {
        return Err(fail(format!("missing request for cpu in container {container} of Pod {pod}")));
    }
    // (usage, request) in millicores of the pods with a metric, and of the unready ones.
    let sample = |state: PodState| -> Vec<Sample> {
        let pods = observed.pods.iter().filter(|p| p.state == state);
        pods.map(|p| p.cpu_request.clone().unwrap_or(0)).map(|request| (request * percent / 100, request)).collect()
    };
    let (ready, unready) = (sample(PodState::Ready), sample(PodState::Unready));
    if ready.is_empty() {
        return Err(fail("did not receive metrics for targeted pods (pods might be unready)".into()));
    }
    let raw = usage(&ready) / ready.len() as i64;
    let (ratio, status, metric): (Box<Ratio>, Value, String) = match (utilization, average) {
        (Some(target_percent), None) => {
            if target_percent <= 0 {
                return Err(fail("the target utilization must be above 0".into()));
            }
            // `GetResourceUtilizationRatio`: a whole percent first, as kube rounds it.
            let percent_of = |pods: &[Sample]| {
                let requests: i64 = pods.iter().map(|(_, r)| r).sum();
                if requests == 0 { 0 } else { usage(pods) * 100 / requests }
            };
            let now = percent_of(&ready);
            let status = json!({"type": "Resource", "resource": {"name": name,
                "current": {"averageUtilization": now, "averageValue": milli_quantity(raw)}}});
            let ratio = move |pods: &[Sample]| percent_of(pods) as f64 / target_percent as f64;
            (Box::new(ratio), status, format!("{name} resource utilization (percentage of request)"))
        }
        (_, Some(value)) => {
            let target_milli =
                parse_milli(value).filter(|t| *t > 0).ok_or_else(|| fail(format!("invalid target {value:?}")))?;
            let status = json!({"type": "Resource", "resource": {"name": name, "current": {"averageValue": milli_quantity(raw)}}});
            // `GetMetricUsageRatio`: the average in whole millicores first.
            let ratio = move |pods: &[Sample]| (usage(pods) / pods.len() as i64) as f64 / target_milli as f64;
            (Box::new(ratio), status, format!("{name} resource"))
        }
        (None, None) => unreachable!("refused above"),
    };
    Ok((replicas(current, &ready, &unready, &*ratio), metric, status))
}

/// The replicas a usage ratio asks for (`GetResourceReplicas`' arithmetic): none within
/// the tolerance; on a scale up, unready pods count as using nothing, and a change of
/// direction that this causes cancels the scaling.
pub fn replicas(current: i32, ready: &[Sample], unready: &[Sample], ratio: &Ratio) -> i32 {
    let within = |r: f64| (1.0 - TOLERANCE..=1.0 + TOLERANCE).contains(&r);
    let first = ratio(ready);
    if unready.is_empty() || first <= 1.0 {
        return if within(first) { current } else { (first * ready.len() as f64).ceil() as i32 };
    }
    let all: Vec<Sample> = ready.iter().copied().chain(unready.iter().map(|(_, request)| (0, *request))).collect();
    let second = ratio(&all);
    if within(second) || second < 1.0 {
        return current;
    }
    let proposed = (second * all.len() as f64).ceil() as i32;
    if proposed < current { current } else { proposed }
}

/// A CPU quantity in millicores, rounded up as `MilliValue` does: `100m`, `0.5`, `2`.
pub fn parse_milli(q: &str) -> Option<i64> {
    let (number, scale) = match q.strip_suffix('m') {
        Some(n) => (n, 1.0),
        None => match q.strip_suffix('k') {
            Some(n) => (n, 1_000_000.0),
            None => (q, 1000.0),
        },
    };
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Some((value * scale).ceil() as i64)
}

/// Millicores as `resource.NewMilliQuantity(n, DecimalSI)` prints them.
pub fn milli_quantity(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut n = milli / 1000;
    for suffix in ["", "k", "M", "G", "T", "P"] {
        if n == 0 || n % 1000 != 0 {
            return format!("{n}{suffix}");
        }
        n /= 1000;
    }
    format!("{n}E")
}
