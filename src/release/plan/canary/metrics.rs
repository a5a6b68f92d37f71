//! The metrics of a v1beta1 Canary: built-in, template or inline query, their bounds
//! (`thresholdRange`, or Flagger's legacy `threshold`), and our additions to Flagger's
//! (`scope`, `onNoData`, `compare`/`maxDelta`, `minRequests`).

use std::collections::BTreeSet;

use super::super::{Compare, Metric, MetricScope, MetricSource, NoData, defaults};
use super::flagger::reference;
use super::unique_name;
use crate::api::canary::{REQUEST_DURATION, REQUEST_SUCCESS_RATE, v1beta1};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::{metric_template, rules};

pub(super) fn metrics(list: &[v1beta1::Metric], p: &Path, f: &mut Findings) -> Vec<Metric> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mp = p.index(i);
        unique_name(&m.name, "a metric", &mp, &mut seen, f);
        let source = source(m, &mp, f);
        let range = m.threshold_range.as_ref().filter(|r| r.min.is_some() || r.max.is_some());
        let rp = mp.child("thresholdRange");
        if let (Some(_), Some(_)) = (range, m.threshold) {
            let why = "ignored: thresholdRange is set and takes precedence (as in Flagger)";
            f.warnings.push((mp.child("threshold"), why.to_owned()));
        }
        let (min, max) = match range {
            // Flagger's single bound: a minimum for the success rate, else a maximum.
            None if m.threshold.is_some() => legacy_threshold(m, &mp, source.as_ref(), f),
            // With compare: baseline the stable's value is the bound; a range is optional.
            None if m.compare.is_some() => (None, None),
            None => {
                f.errors.push(FieldError::required(&rp, "set min, max or both, or threshold"));
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
        if let (Some(source @ (MetricSource::Template { .. } | MetricSource::Query { .. })), Some(_)) =
            (&source, &m.scope)
        {
            let why = format!("only built-in metrics have a scope: {}", counts_itself(source));
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
    if let Some(source @ (MetricSource::Template { .. } | MetricSource::Query { .. })) = source {
        let why = format!(
            "only the built-in metrics ({REQUEST_SUCCESS_RATE}, {REQUEST_DURATION}) compare with the baseline: {}",
            counts_itself(source)
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

/// Where the metric's value comes from: `templateRef`, an inline `query`, or a built-in
/// name. Flagger runs a built-in check for a built-in name whatever else the metric
/// says, and both a template and a query when both are set: refused here, so a metric is
/// always one check.
fn source(m: &v1beta1::Metric, mp: &Path, f: &mut Findings) -> Option<MetricSource> {
    let builtin = [REQUEST_SUCCESS_RATE, REQUEST_DURATION].contains(&m.name.as_str());
    let variables = || m.template_variables.clone().unwrap_or_default();
    match (&m.template_ref, &m.query) {
        (Some(_), Some(_)) => {
            let why = "a metric is a MetricTemplate (templateRef) or an inline query, not both: Flagger would run both";
            f.errors.push(FieldError::forbidden(&mp.child("query"), why));
            None
        }
        (Some(_), None) | (None, Some(_)) if builtin => {
            let why = format!(
                "{} is a built-in metric, which Flagger would run besides the {}: give this one another name",
                m.name,
                if m.query.is_some() { "query" } else { "template" }
            );
            f.errors.push(FieldError::invalid(&mp.child("name"), &m.name, why));
            None
        }
        (Some(t), None) => {
            reference(t, "MetricTemplate", &mp.child("templateRef"), f);
            Some(MetricSource::Template {
                name: t.name.clone(),
                namespace: t.namespace.clone(),
                variables: variables(),
            })
        }
        (None, Some(query)) => {
            let qp = mp.child("query");
            if query.trim().is_empty() {
                f.errors.push(FieldError::required(&qp, "a PromQL query"));
                return None;
            }
            if let Err(e) = metric_template::variables(query) {
                f.errors.push(FieldError::invalid(&qp, query, e.to_string()));
                return None;
            }
            Some(MetricSource::Query { query: query.clone(), variables: variables() })
        }
        (None, None) if m.name == REQUEST_SUCCESS_RATE => Some(MetricSource::RequestSuccessRate),
        (None, None) if m.name == REQUEST_DURATION => Some(MetricSource::RequestDuration),
        (None, None) => {
            if !m.name.is_empty() {
                let detail = format!(
                    "must be a built-in metric ({REQUEST_SUCCESS_RATE}, {REQUEST_DURATION}) or set templateRef or query"
                );
                f.errors.push(FieldError::invalid(&mp.child("name"), &m.name, detail));
            }
            None
        }
    }
}

/// Flagger's `threshold`, read as its scheduler reads it without a thresholdRange: the
/// success rate halts below it, every other metric above it (milliseconds for the
/// request duration).
fn legacy_threshold(
    m: &v1beta1::Metric,
    mp: &Path,
    source: Option<&MetricSource>,
    f: &mut Findings,
) -> (Option<f64>, Option<f64>) {
    let Some(t) = m.threshold else { return (None, None) };
    let tp = mp.child("threshold");
    match source {
        Some(MetricSource::RequestSuccessRate) => {
            f.push(rules::success_rate(&tp, &Shown::bare(t), Some(t)));
            (Some(t), None)
        }
        Some(MetricSource::RequestDuration) => {
            f.push(rules::request_duration_ms(&tp, t));
            (None, Some(t))
        }
        _ => (None, Some(t)),
    }
}

/// Why a query written by the user has no scope or baseline of ours.
fn counts_itself(source: &MetricSource) -> &'static str {
    match source {
        MetricSource::Query { .. } => "an inline query says whose traffic it counts",
        _ => "a MetricTemplate's query says whose traffic it counts",
    }
}
