//! `compare: baseline`: a built-in metric of the canary judged against the stable
//! version's, measured over the same window through the same generated route, within
//! `maxDelta`. Beyond Flagger, so the messages follow its style: `Halt podinfo.test
//! advancement success rate 94.00% < 98.50% (the stable's 99.50% - 1)`.
//!
//! A fixed bound says what is good enough in general; the stable's value says what is
//! good enough today: a dependency failing both versions' requests does not fail the
//! canary, and a canary slower than a fast stable does.

use std::time::Duration;

use super::check::{self, Builtin, BuiltinMetric, Subject, Verdict};
use super::prometheus::QueryError;
use crate::api::duration::Display;

/// Judges the canary's value against the stable's, after the metric's written bounds
/// (absolute, still in force). The canary's no values and failed queries read as in
/// [`check::judge`]; the stable's name the stable version. Without a margin on
/// `metric`, this is [`check::judge`].
pub fn judge(
    metric: &BuiltinMetric<'_>,
    who: &Subject<'_>,
    canary: Result<Option<f64>, &QueryError>,
    stable: Result<Option<f64>, &QueryError>,
) -> Verdict {
    let Some(delta) = metric.baseline else { return check::judge(metric, who, canary) };
    let value = match canary {
        Ok(Some(v)) => v,
        Err(_) | Ok(None) => return check::judge(metric, who, canary),
    };
    let absolute = check::judge(metric, who, Ok(Some(value)));
    if !absolute.passed() {
        return absolute;
    }
    let stable = match stable {
        Ok(Some(s)) => s,
        Err(e) => {
            let message = format!("Prometheus query failed for the stable version: {e}");
            return Verdict::Halt { message, value: Some(value) };
        }
        Ok(None) => {
            let (name, target, ns) = (metric.name, who.target, who.namespace);
            let message = format!(
                "Halt advancement no values found for the stable version of apisix metric {name}: probably \
                 {target}.{ns} is not receiving traffic"
            );
            return check::no_data(metric.on_no_data, message, Some(value));
        }
    };
    let worse = match metric.kind {
        Builtin::SuccessRate => success_rate(who, value, stable, delta),
        Builtin::Duration => request_duration(who, value, stable, delta),
    };
    match worse {
        Some(message) => Verdict::Halt { message, value: Some(value) },
        None => Verdict::Pass { value: Some(value) },
    }
}

/// Fails below `stable - delta`, in percent.
fn success_rate(who: &Subject<'_>, v: f64, stable: f64, delta: f64) -> Option<String> {
    let bound = stable - delta;
    (v < bound).then(|| {
        format!(
            "Halt {}.{} advancement success rate {v:.2}% < {bound:.2}% (the stable's {stable:.2}% - {delta})",
            who.canary, who.namespace
        )
    })
}

/// Fails above `stable + delta`, both P99s cut to whole milliseconds first, as the
/// fixed bound does (and Flagger).
fn request_duration(who: &Subject<'_>, v: f64, stable: f64, delta: f64) -> Option<String> {
    let whole_ms = |x: f64| Duration::from_millis(x.max(0.0) as u64);
    let shown = |x: f64| if x.is_infinite() { "+Inf".to_owned() } else { Display(whole_ms(x)).to_string() };
    let margin = Duration::from_micros((delta.max(0.0) * 1e3).round() as u64);
    // +Inf: the quantile fell in the last bucket. A stable there bounds nothing.
    let worse = !stable.is_infinite() && (v.is_infinite() || whole_ms(v) > whole_ms(stable) + margin);
    worse.then(|| {
        let bound = whole_ms(stable) + margin;
        format!(
            "Halt {}.{} advancement request duration {} > {} (the stable's {} + {})",
            who.canary,
            who.namespace,
            shown(v),
            Display(bound),
            shown(stable),
            Display(margin)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::plan::NoData;

    const WHO: Subject<'static> = Subject { canary: "podinfo", target: "podinfo", namespace: "test" };

    fn metric(kind: Builtin, delta: f64) -> BuiltinMetric<'static> {
        let name = match kind {
            Builtin::SuccessRate => "request-success-rate",
            Builtin::Duration => "request-duration",
        };
        let interval = Duration::from_secs(60);
        let on_no_data = NoData::Fail;
        BuiltinMetric { name, kind, min: None, max: None, interval, on_no_data, baseline: Some(delta), min_requests: 0 }
    }

    fn halt(message: &str, value: f64) -> Verdict {
        Verdict::Halt { message: message.to_owned(), value: Some(value) }
    }

    fn pass(value: f64) -> Verdict {
        Verdict::Pass { value: Some(value) }
    }

    #[test]
    fn success_rate_against_the_stable() {
        let rate = metric(Builtin::SuccessRate, 1.0);
        let cases = [
            (99.9, 99.5, pass(99.9)),
            // At the edge: stable - maxDelta exactly passes.
            (98.5, 99.5, pass(98.5)),
            (
                98.49,
                99.5,
                halt("Halt podinfo.test advancement success rate 98.49% < 98.50% (the stable's 99.50% - 1)", 98.49),
            ),
            (
                94.0,
                99.5,
                halt("Halt podinfo.test advancement success rate 94.00% < 98.50% (the stable's 99.50% - 1)", 94.0),
            ),
            // Both failing alike is the stable's trouble, not the canary's.
            (60.0, 60.5, pass(60.0)),
        ];
        for (canary, stable, want) in cases {
            assert_eq!(judge(&rate, &WHO, Ok(Some(canary)), Ok(Some(stable))), want, "{canary} vs {stable}");
        }
        let half = metric(Builtin::SuccessRate, 0.5);
        assert_eq!(
            judge(&half, &WHO, Ok(Some(90.0)), Ok(Some(95.0))),
            halt("Halt podinfo.test advancement success rate 90.00% < 94.50% (the stable's 95.00% - 0.5)", 90.0)
        );
    }

    #[test]
    fn request_duration_against_the_stable() {
        let dur = metric(Builtin::Duration, 100.0);
        let cases = [
            (450.0, 500.0, pass(450.0)),
            // At the edge: stable + maxDelta exactly passes, after both are cut to whole ms.
            (600.0, 500.0, pass(600.0)),
            (600.9, 500.2, pass(600.9)),
            (
                601.0,
                500.0,
                halt(
                    "Halt podinfo.test advancement request duration 601ms > 600ms (the stable's 500ms + 100ms)",
                    601.0,
                ),
            ),
            (
                1200.0,
                500.0,
                halt(
                    "Halt podinfo.test advancement request duration 1.2s > 600ms (the stable's 500ms + 100ms)",
                    1200.0,
                ),
            ),
            (
                f64::INFINITY,
                500.0,
                halt(
                    "Halt podinfo.test advancement request duration +Inf > 600ms (the stable's 500ms + 100ms)",
                    f64::INFINITY,
                ),
            ),
            (f64::INFINITY, f64::INFINITY, pass(f64::INFINITY)),
        ];
        for (canary, stable, want) in cases {
            assert_eq!(judge(&dur, &WHO, Ok(Some(canary)), Ok(Some(stable))), want, "{canary} vs {stable}");
        }
        let zero = metric(Builtin::Duration, 0.0);
        assert_eq!(
            judge(&zero, &WHO, Ok(Some(41.0)), Ok(Some(40.0))),
            halt("Halt podinfo.test advancement request duration 41ms > 40ms (the stable's 40ms + 0s)", 41.0)
        );
    }

    #[test]
    fn written_bounds_still_apply() {
        let rate = BuiltinMetric { min: Some(90.0), ..metric(Builtin::SuccessRate, 5.0) };
        // Within the margin of a failing stable, but under the floor.
        assert_eq!(
            judge(&rate, &WHO, Ok(Some(85.0)), Ok(Some(86.0))),
            halt("Halt podinfo.test advancement success rate 85.00% < 90%", 85.0)
        );
        let dur = BuiltinMetric { max: Some(1000.0), ..metric(Builtin::Duration, 500.0) };
        assert_eq!(
            judge(&dur, &WHO, Ok(Some(1100.0)), Ok(Some(900.0))),
            halt("Halt podinfo.test advancement request duration 1.1s > 1s", 1100.0)
        );
    }

    #[test]
    fn a_stable_without_values_follows_on_no_data() {
        let fail = metric(Builtin::SuccessRate, 1.0);
        let want = "Halt advancement no values found for the stable version of apisix metric request-success-rate: \
                    probably podinfo.test is not receiving traffic";
        assert_eq!(judge(&fail, &WHO, Ok(Some(99.0)), Ok(None)), halt(want, 99.0));
        let pass_ = BuiltinMetric { on_no_data: NoData::Pass, ..fail };
        assert_eq!(judge(&pass_, &WHO, Ok(Some(99.0)), Ok(None)), pass(99.0));
        // The written floor still holds without a stable to compare with.
        let floor = BuiltinMetric { min: Some(99.5), ..pass_ };
        assert!(!judge(&floor, &WHO, Ok(Some(99.0)), Ok(None)).passed());
        // The canary without values reads as Flagger's, whatever the stable has.
        let Verdict::Halt { message, value: None } = judge(&fail, &WHO, Ok(None), Ok(Some(99.0))) else { panic!() };
        assert!(message.ends_with("podinfo.test is not receiving traffic: running query failed: no values found"));
        assert_eq!(judge(&pass_, &WHO, Ok(None), Ok(None)), Verdict::Pass { value: None });
        let e = QueryError::NotVector("scalar");
        assert_eq!(
            judge(&pass_, &WHO, Ok(Some(99.0)), Err(&e)),
            halt("Prometheus query failed for the stable version: query returned a scalar, not a vector", 99.0)
        );
    }

    #[test]
    fn without_a_margin_it_is_the_fixed_bound() {
        let rate = BuiltinMetric { min: Some(99.0), baseline: None, ..metric(Builtin::SuccessRate, 0.0) };
        assert_eq!(judge(&rate, &WHO, Ok(Some(98.0)), Ok(Some(98.0))), check::judge(&rate, &WHO, Ok(Some(98.0))));
        assert!(!judge(&rate, &WHO, Ok(Some(98.0)), Ok(None)).passed());
    }
}
