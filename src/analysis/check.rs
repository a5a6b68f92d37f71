//! The judgement of one built-in metric's value against its bounds, in Flagger's words
//! (its `scheduler_metrics.go`), so the events read the same as users know them.

use std::time::Duration;

use super::prometheus::QueryError;
use crate::api::duration::Display;
use crate::release::plan::{Metric, MetricSource, NoData};

/// The metrics provider named in "no values found" messages.
pub const PROVIDER: &str = "apisix";

/// Which built-in metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Percent of non-5xx responses.
    SuccessRate,
    /// P99 request duration, in milliseconds.
    Duration,
}

/// A metric of the plan that this module judges: built-in only. `MetricTemplate`s are
/// evaluated elsewhere, so they cannot be made into one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuiltinMetric<'a> {
    pub name: &'a str,
    pub kind: Builtin,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub interval: Duration,
    pub on_no_data: NoData,
    /// `compare: baseline`'s margin (`maxDelta`).
    pub baseline: Option<f64>,
    /// Requests of the canary before it is judged; 0 is off.
    pub min_requests: u64,
}

impl<'a> BuiltinMetric<'a> {
    /// `None` for a template or an inline-query metric.
    pub fn new(m: &'a Metric) -> Option<Self> {
        let kind = match m.source {
            MetricSource::RequestSuccessRate => Builtin::SuccessRate,
            MetricSource::RequestDuration => Builtin::Duration,
            MetricSource::Template { .. } | MetricSource::Query { .. } => return None,
        };
        let (min, max, interval) = (m.min, m.max, m.interval);
        let (on_no_data, baseline, min_requests) = (m.on_no_data, m.baseline, m.min_requests);
        Some(Self { name: &m.name, kind, min, max, interval, on_no_data, baseline, min_requests })
    }
}

/// Whom the messages name: Flagger names the Canary in "Halt `<canary>.<ns>` ..." and
/// the target Deployment in "probably `<target>.<ns>` is not receiving traffic".
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub canary: &'a str,
    pub target: &'a str,
    pub namespace: &'a str,
}

/// The outcome of one metric at one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within bounds. Success rate in percent, duration in milliseconds; `None` when
    /// there was no value and the metric passes without one (`onNoData: pass`).
    Pass { value: Option<f64> },
    /// A failed check: out of bounds, no values, or the query failed. `value` is the
    /// one measured, when there was one.
    Halt { message: String, value: Option<f64> },
    /// Not judged: the canary has not served `minRequests` yet. Not a failed check,
    /// yet no reason to advance either.
    Wait { message: String },
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass { .. })
    }
}

/// What no values means under `on_no_data`: a halt with `message`, or a pass.
pub fn no_data(on_no_data: NoData, message: String, value: Option<f64>) -> Verdict {
    match on_no_data {
        NoData::Fail => Verdict::Halt { message, value },
        NoData::Pass => Verdict::Pass { value },
    }
}

/// Whether the canary served enough requests for `metric` to be judged: `None` when it
/// did (or no minimum is set), a [`Verdict::Wait`] otherwise. `count` is the canary's
/// requests in the interval, `None` when it served none.
pub fn wait_for_traffic(
    metric: &str,
    min_requests: u64,
    interval: Duration,
    who: &Subject<'_>,
    count: Option<f64>,
) -> Option<Verdict> {
    // `increase()` extrapolates to fractions: only whole requests count.
    let got = count.filter(|c| c.is_finite()).map_or(0, |c| c.max(0.0).floor() as u64);
    (got < min_requests).then(|| Verdict::Wait {
        message: format!(
            "Halt {}.{} advancement waiting for traffic: {metric} needs {min_requests} requests of the canary in {}, \
             got {got}",
            who.canary,
            who.namespace,
            Display(interval)
        ),
    })
}

/// Judges what the query of `metric` gave against its fixed bounds: `Ok(None)` is "no
/// values found".
pub fn judge(metric: &BuiltinMetric<'_>, who: &Subject<'_>, result: Result<Option<f64>, &QueryError>) -> Verdict {
    let value = match result {
        Err(e) => return Verdict::Halt { message: format!("Prometheus query failed: {e}"), value: None },
        Ok(None) => return no_data(metric.on_no_data, no_values(metric, who), None),
        Ok(Some(v)) => v,
    };
    let out_of_bounds = match metric.kind {
        Builtin::SuccessRate => success_rate(metric, who, value),
        Builtin::Duration => request_duration(metric, who, value),
    };
    match out_of_bounds {
        Some(message) => Verdict::Halt { message, value: Some(value) },
        None => Verdict::Pass { value: Some(value) },
    }
}

fn no_values(metric: &BuiltinMetric<'_>, who: &Subject<'_>) -> String {
    let (name, target, ns) = (metric.name, who.target, who.namespace);
    let base = format!(
        "Halt advancement no values found for {PROVIDER} metric {name} probably {target}.{ns} is not receiving traffic"
    );
    match metric.kind {
        // Flagger appends its error to this one only; the duration message has none.
        Builtin::SuccessRate => format!("{base}: running query failed: no values found"),
        Builtin::Duration => base,
    }
}

/// `Halt podinfo.test advancement success rate 26.76% < 99%` (`%.2f%%`, then `%v%%`).
fn success_rate(metric: &BuiltinMetric<'_>, who: &Subject<'_>, v: f64) -> Option<String> {
    let halt = |op: &str, bound: f64| {
        format!("Halt {}.{} advancement success rate {v:.2}% {op} {bound}%", who.canary, who.namespace)
    };
    match (metric.min, metric.max) {
        (Some(min), _) if v < min => Some(halt("<", min)),
        (_, Some(max)) if v > max => Some(halt(">", max)),
        _ => None,
    }
}

/// `Halt podinfo.test advancement request duration 1.2s > 500ms`. Like Flagger, the
/// P99 is cut to whole milliseconds before it is compared and shown.
fn request_duration(metric: &BuiltinMetric<'_>, who: &Subject<'_>, v: f64) -> Option<String> {
    let ms = |x: f64| Duration::from_micros((x.max(0.0) * 1e3).round() as u64);
    let measured = Duration::from_millis(v.max(0.0) as u64);
    // +Inf: the quantile fell in the last bucket (over 60 s), above any bound.
    let shown = if v.is_infinite() { "+Inf".to_owned() } else { Display(measured).to_string() };
    let halt = |op: &str, bound: Duration| {
        format!("Halt {}.{} advancement request duration {shown} {op} {}", who.canary, who.namespace, Display(bound))
    };
    match (metric.min.map(ms), metric.max.map(ms)) {
        (Some(min), _) if measured < min => Some(halt("<", min)),
        (_, Some(max)) if v.is_infinite() || measured > max => Some(halt(">", max)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: Subject<'static> = Subject { canary: "podinfo", target: "podinfo", namespace: "test" };

    fn metric(kind: Builtin, min: Option<f64>, max: Option<f64>) -> BuiltinMetric<'static> {
        let name = match kind {
            Builtin::SuccessRate => "request-success-rate",
            Builtin::Duration => "request-duration",
        };
        BuiltinMetric {
            name,
            kind,
            min,
            max,
            interval: Duration::from_secs(60),
            on_no_data: NoData::Fail,
            baseline: None,
            min_requests: 0,
        }
    }

    fn halt(message: &str, value: Option<f64>) -> Verdict {
        Verdict::Halt { message: message.to_owned(), value }
    }

    #[test]
    fn success_rate_table() {
        let rate = |min, max| metric(Builtin::SuccessRate, min, max);
        let cases: &[(BuiltinMetric, Option<f64>, Verdict)] = &[
            (rate(Some(99.0), None), Some(99.5), Verdict::Pass { value: Some(99.5) }),
            (rate(Some(99.0), None), Some(99.0), Verdict::Pass { value: Some(99.0) }),
            (
                rate(Some(99.0), None),
                Some(26.764_999),
                halt("Halt podinfo.test advancement success rate 26.76% < 99%", Some(26.764_999)),
            ),
            (
                rate(Some(99.5), None),
                Some(99.4),
                halt("Halt podinfo.test advancement success rate 99.40% < 99.5%", Some(99.4)),
            ),
            (
                rate(None, Some(5.0)),
                Some(7.125),
                halt("Halt podinfo.test advancement success rate 7.12% > 5%", Some(7.125)),
            ),
            (rate(Some(90.0), Some(100.0)), Some(100.0), Verdict::Pass { value: Some(100.0) }),
            (rate(None, None), Some(1.0), Verdict::Pass { value: Some(1.0) }),
            (
                rate(Some(99.0), None),
                None,
                halt(
                    "Halt advancement no values found for apisix metric request-success-rate probably \
                     podinfo.test is not receiving traffic: running query failed: no values found",
                    None,
                ),
            ),
        ];
        for (m, value, want) in cases {
            assert_eq!(&judge(m, &WHO, Ok(*value)), want, "{m:?} {value:?}");
        }
    }

    #[test]
    fn request_duration_table() {
        let dur = |min, max| metric(Builtin::Duration, min, max);
        let cases: &[(BuiltinMetric, Option<f64>, Verdict)] = &[
            (dur(None, Some(500.0)), Some(120.0), Verdict::Pass { value: Some(120.0) }),
            (
                dur(None, Some(500.0)),
                Some(1200.0),
                halt("Halt podinfo.test advancement request duration 1.2s > 500ms", Some(1200.0)),
            ),
            // Cut to whole milliseconds first, as Flagger does: 500.9 ms is 500ms.
            (dur(None, Some(500.0)), Some(500.9), Verdict::Pass { value: Some(500.9) }),
            (
                dur(None, Some(500.0)),
                Some(501.7),
                halt("Halt podinfo.test advancement request duration 501ms > 500ms", Some(501.7)),
            ),
            (
                dur(None, Some(1000.0)),
                Some(65_432.1),
                halt("Halt podinfo.test advancement request duration 1m5.432s > 1s", Some(65_432.1)),
            ),
            (
                dur(Some(10.0), None),
                Some(9.9),
                halt("Halt podinfo.test advancement request duration 9ms < 10ms", Some(9.9)),
            ),
            (
                dur(None, Some(500.0)),
                Some(f64::INFINITY),
                halt("Halt podinfo.test advancement request duration +Inf > 500ms", Some(f64::INFINITY)),
            ),
            (
                dur(None, Some(500.0)),
                None,
                halt(
                    "Halt advancement no values found for apisix metric request-duration probably \
                     podinfo.test is not receiving traffic",
                    None,
                ),
            ),
        ];
        for (m, value, want) in cases {
            assert_eq!(&judge(m, &WHO, Ok(*value)), want, "{m:?} {value:?}");
        }
    }

    #[test]
    fn messages_name_the_canary_or_the_target_as_flagger_does() {
        let who = Subject { canary: "web-release", target: "web", namespace: "shop" };
        let rate = metric(Builtin::SuccessRate, Some(99.0), None);
        let Verdict::Halt { message, .. } = judge(&rate, &who, Ok(Some(50.0))) else { panic!() };
        assert_eq!(message, "Halt web-release.shop advancement success rate 50.00% < 99%");
        let Verdict::Halt { message, .. } = judge(&rate, &who, Ok(None)) else { panic!() };
        assert!(message.contains("probably web.shop is not receiving traffic"), "{message}");
    }

    #[test]
    fn a_failed_query_is_a_failed_check() {
        let e = QueryError::Unreachable { url: "http://prometheus:9090".into(), reason: "connection refused".into() };
        let v = judge(&metric(Builtin::SuccessRate, Some(99.0), None), &WHO, Err(&e));
        let want = "Prometheus query failed: prometheus at http://prometheus:9090 unreachable: connection refused";
        assert_eq!(v, halt(want, None));
        assert!(!v.passed());
    }

    #[test]
    fn templates_are_not_builtin() {
        let m = Metric {
            name: "404s percentage".into(),
            source: MetricSource::Template { name: "not-found".into(), namespace: None, variables: Default::default() },
            min: None,
            max: Some(5.0),
            interval: Duration::from_secs(60),
            scope: crate::release::plan::MetricScope::Canary,
            on_no_data: NoData::Pass,
            baseline: None,
            min_requests: 0,
        };
        assert_eq!(BuiltinMetric::new(&m), None);
        let m = Metric { source: MetricSource::RequestDuration, name: "request-duration".into(), ..m };
        let m = Metric { baseline: Some(100.0), ..m };
        let b = BuiltinMetric::new(&m).unwrap();
        assert_eq!((b.kind, b.on_no_data, b.baseline), (Builtin::Duration, NoData::Pass, Some(100.0)));
    }

    #[test]
    fn no_values_pass_or_fail_as_asked() {
        for kind in [Builtin::SuccessRate, Builtin::Duration] {
            let fail = metric(kind, Some(1.0), Some(100.0));
            let Verdict::Halt { message, value: None } = judge(&fail, &WHO, Ok(None)) else { panic!("{kind:?}") };
            assert!(message.starts_with("Halt advancement no values found for apisix metric"), "{message}");
            let pass = BuiltinMetric { on_no_data: NoData::Pass, ..fail };
            assert_eq!(judge(&pass, &WHO, Ok(None)), Verdict::Pass { value: None }, "{kind:?}");
            // Only no values passes: a value out of bounds or a failed query still halts.
            assert!(!judge(&pass, &WHO, Ok(Some(0.5))).passed(), "{kind:?}");
            let e = QueryError::NotVector("scalar");
            assert!(!judge(&pass, &WHO, Err(&e)).passed(), "{kind:?}");
        }
    }

    #[test]
    fn min_requests_below_at_above() {
        let interval = Duration::from_secs(60);
        let wait = |count| wait_for_traffic("request-success-rate", 20, interval, &WHO, count);
        let waiting = |got: u64| {
            Some(Verdict::Wait {
                message: format!(
                    "Halt podinfo.test advancement waiting for traffic: request-success-rate needs 20 requests of \
                     the canary in 1m, got {got}"
                ),
            })
        };
        assert_eq!(wait(Some(3.0)), waiting(3));
        assert_eq!(wait(None), waiting(0), "no series: no request");
        assert_eq!(wait(Some(19.97)), waiting(19), "increase() extrapolates: whole requests only");
        assert_eq!(wait(Some(f64::NAN)), waiting(0));
        assert_eq!(wait(Some(20.0)), None);
        assert_eq!(wait(Some(20.4)), None);
        assert_eq!(wait(Some(1e6)), None);
        assert_eq!(wait_for_traffic("request-success-rate", 0, interval, &WHO, None), None, "0 is off");
    }
}
