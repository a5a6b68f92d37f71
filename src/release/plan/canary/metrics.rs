//! The metrics of a v1beta1 Canary: built-in or template, their bounds, and our
//! additions to Flagger's (`scope`, `onNoData`, `compare`/`maxDelta`, `minRequests`).

use std::collections::BTreeSet;

use super::super::{Compare, Metric, MetricScope, MetricSource, NoData, defaults};
use super::unique_name;
use crate::api::canary::{REQUEST_DURATION, REQUEST_SUCCESS_RATE, v1beta1};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::rules;

pub(super) fn metrics(list: &[v1beta1::Metric], p: &Path, f: &mut Findings) -> Vec<Metric> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mp = p.index(i);
        unique_name(&m.name, "a metric", &mp, &mut seen, f);
        let source = match &m.template_ref {
            Some(t) => {
                f.push(rules::object_name(&mp.child("templateRef").child("name"), &t.name));
                Some(MetricSource::Template {
                    name: t.name.clone(),
                    namespace: t.namespace.clone(),
                    variables: m.template_variables.clone().unwrap_or_default(),
                })
            }
            None if m.name == REQUEST_SUCCESS_RATE => Some(MetricSource::RequestSuccessRate),
            None if m.name == REQUEST_DURATION => Some(MetricSource::RequestDuration),
            None => {
                if !m.name.is_empty() {
                    let detail = format!(
                        "must be a built-in metric ({REQUEST_SUCCESS_RATE}, {REQUEST_DURATION}) or set templateRef"
                    );
                    f.errors.push(FieldError::invalid(&mp.child("name"), &m.name, detail));
                }
                None
            }
        };
        let range = m.threshold_range.as_ref().filter(|r| r.min.is_some() || r.max.is_some());
        let rp = mp.child("thresholdRange");
        let (min, max) = match range {
            // With compare: baseline the stable's value is the bound; a range is optional.
            None if m.compare.is_some() => (None, None),
            None => {
                f.errors.push(FieldError::required(&rp, "set min, max or both"));
                (None, None)
            }
            Some(r) => {
                if let (Some(min), Some(max)) = (r.min, r.max)
                    && min > max
                {
                    let detail = format!("must not exceed max ({max})");
                    f.errors.push(FieldError::invalid(&rp.child("min"), Shown::bare(min), detail));
                }
                if source == Some(MetricSource::RequestSuccessRate) {
                    for (key, v) in [("min", r.min), ("max", r.max)] {
                        if let Some(v) = v {
                            f.push(rules::success_rate(&rp.child(key), &Shown::bare(v), Some(v)));
                        }
                    }
                }
                if let (Some(MetricSource::RequestDuration), Some(ms)) = (&source, r.max) {
                    f.push(rules::request_duration_ms(&rp.child("max"), ms));
                }
                (r.min, r.max)
            }
        };
        let interval = match &m.interval {
            Some(raw) => rules::interval(&mp.child("interval"), raw).map_err(|e| f.errors.push(e)).ok(),
            None => None,
        };
        let scope = match m.scope.as_deref() {
            None => Some(MetricScope::Canary),
            Some(s) => MetricScope::parse(s).or_else(|| {
                f.errors.push(FieldError::not_supported(&mp.child("scope"), s, MetricScope::NAMES));
                None
            }),
        };
        if let (Some(MetricSource::Template { .. }), Some(_)) = (&source, &m.scope) {
            let why = "only built-in metrics have a scope: a MetricTemplate's query says whose traffic it counts";
            f.errors.push(FieldError::forbidden(&mp.child("scope"), why));
        }
        let on_no_data = match m.on_no_data.as_deref() {
            None => Some(NoData::default()),
            Some(v) => NoData::parse(v).or_else(|| {
                f.errors.push(FieldError::not_supported(&mp.child("onNoData"), v, NoData::NAMES));
                None
            }),
        };
        let baseline = baseline(m, &mp, source.as_ref(), scope, f);
        let min_requests = match m.min_requests {
            Some(v) => rules::min_requests(&mp.child("minRequests"), v).map_err(|e| f.errors.push(e)).ok(),
            None => Some(0),
        };
        if let (Some(source), Some(scope), Some(on_no_data), Some(min_requests)) =
            (source, scope, on_no_data, min_requests)
        {
            let interval = interval.unwrap_or(defaults::METRIC_INTERVAL);
            out.push(Metric {
                name: m.name.clone(),
                source,
                min,
                max,
                interval,
                scope,
                on_no_data,
                baseline,
                min_requests,
            });
        }
    }
    out
}

/// `compare` and `maxDelta`: the margin of a metric judged against the stable version,
/// `None` when it is judged against its fixed bounds only (or either field is invalid).
fn baseline(
    m: &v1beta1::Metric,
    mp: &Path,
    source: Option<&MetricSource>,
    scope: Option<MetricScope>,
    f: &mut Findings,
) -> Option<f64> {
    let (cp, dp) = (mp.child("compare"), mp.child("maxDelta"));
    let Some(written) = m.compare.as_deref() else {
        if m.max_delta.is_some() {
            f.errors.push(FieldError::forbidden(&dp, "only with compare: baseline, whose margin it is"));
        }
        return None;
    };
    let compare = Compare::parse(written);
    if compare.is_none() {
        f.errors.push(FieldError::not_supported(&cp, written, Compare::NAMES));
    }
    let mut ok = compare.is_some();
    if let Some(MetricSource::Template { .. }) = source {
        let why = format!(
            "only the built-in metrics ({REQUEST_SUCCESS_RATE}, {REQUEST_DURATION}) compare with the baseline: \
             a MetricTemplate's query says whose traffic it counts"
        );
        f.errors.push(FieldError::forbidden(&cp, why));
        ok = false;
    }
    if scope == Some(MetricScope::Route) {
        let why = "not with scope: route: a query that blends the stable's and the canary's traffic cannot be split";
        f.errors.push(FieldError::forbidden(&cp, why));
        ok = false;
    }
    let delta = match m.max_delta {
        None => {
            let why = "how much worse than the stable version the canary may be, with compare: baseline";
            f.errors.push(FieldError::required(&dp, why));
            None
        }
        Some(v) => {
            let percent = source == Some(&MetricSource::RequestSuccessRate);
            rules::max_delta(&dp, v, percent).map_err(|e| f.errors.push(e)).ok()
        }
    };
    delta.filter(|_| ok)
}
