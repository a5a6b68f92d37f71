//! The checks of a release as the analysis judged them (`status.checks`), one series per
//! metric of the analysis with its bounds, and what the stable's values at the same
//! times say about them, pure.
//!
//! Every number charted here is one a check recorded: its value, at the time it was
//! judged. The only other numbers are the stable's, measured with the check's own PromQL
//! and window at the check's time ([`Judged::stable`]), never a line of another window.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::analysis::sequential::Evidence;
use crate::api::canary::{CheckRecord, CheckResult};
use crate::api::duration::Display;
use crate::release::plan::{MetricScope, MetricSource, Plan};

/// What a metric measures, which says its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `request-success-rate`: percent of non-5xx answers.
    SuccessRate,
    /// `request-duration`: P99, milliseconds.
    Duration,
    /// A MetricTemplate or an inline query: its value as the query returned it.
    Query,
    /// Checked but not in the analysis now (edited since, or a check that failed before
    /// any metric ran, such as reading the canary's endpoints).
    Other,
}

impl Kind {
    /// The unit after a value, with its space (`" %"`, `" ms"`), or nothing.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::SuccessRate => " %",
            Kind::Duration => " ms",
            Kind::Query | Kind::Other => "",
        }
    }

    pub fn builtin(self) -> bool {
        matches!(self, Kind::SuccessRate | Kind::Duration)
    }
}

/// One metric of the analysis and its checks, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricChecks {
    /// The metric's name in the analysis (`request-success-rate`, `404s percentage`).
    pub name: String,
    pub kind: Kind,
    /// Its `thresholdRange` (or Flagger's `threshold`), as the analysis judged it.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The range of its query; `None` for [`Kind::Other`].
    pub interval: Option<Duration>,
    /// `compare: baseline`'s `maxDelta`, when the metric already compares with the stable.
    pub baseline: Option<f64>,
    pub scope: MetricScope,
    pub checks: Vec<Judged>,
}

/// One check of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub at: Timestamp,
    /// The canary's value the check judged; `None` when it had none.
    pub value: Option<f64>,
    pub result: CheckResult,
    /// Why it failed or waited: the Event's words.
    pub message: Option<String>,
    /// The stable's value over the same window at `at`, with the check's PromQL
    /// (built-in metrics only, when the stable's nodes are known).
    pub stable: Option<f64>,
    /// `judge: sequential`: the test's evidence at `at` and its boundary, as recorded.
    pub evidence: Option<Evidence>,
    /// The test's rejection between intervals: the share of failing requests it counted
    /// since the release began, in percent, which the record holds as its value (so
    /// `value` is `None`: it is no success rate or P99).
    pub rejected_share: Option<f64>,
}

/// What a rejection of the sequential test says, within its message: "Rolling back
/// podinfo.test: canary 5xx share 30.0 % > 1 % (sequential test, 99 % confidence, ...".
const REJECTION: &str = "(sequential test, ";

impl MetricChecks {
    /// A value with its unit, rounded as the Events round it.
    pub fn shown(&self, v: f64) -> String {
        match self.kind {
            Kind::SuccessRate => format!("{v:.2} %"),
            Kind::Duration if v.is_infinite() => "+Inf ms".to_owned(),
            Kind::Duration => format!("{v:.0} ms"),
            Kind::Query | Kind::Other => format!("{v:.2}"),
        }
    }

    /// `min 99`, `max 500`, `min 1 max 5`, or nothing.
    pub fn bounds(&self) -> String {
        let bound = |name: &str, v: Option<f64>| v.map(|v| format!("{name} {v}"));
        [bound("min", self.min), bound("max", self.max)].into_iter().flatten().collect::<Vec<_>>().join(" ")
    }

    /// The sequential test judged this metric: some check recorded its evidence.
    pub fn tested(&self) -> bool {
        self.checks.iter().any(|c| c.evidence.is_some())
    }
}

/// The metrics of `plan` in its order, each with its records from `records`, then those
/// recorded for a metric `plan` does not have (or for every metric, when the analysis
/// does not parse), in the order first checked. A metric never checked has no checks.
pub fn metrics(plan: Option<&Plan>, records: &[CheckRecord]) -> Vec<MetricChecks> {
    let mut out: Vec<MetricChecks> = plan
        .into_iter()
        .flat_map(|p| &p.metrics)
        .map(|m| MetricChecks {
            name: m.name.clone(),
            kind: match m.source {
                MetricSource::RequestSuccessRate => Kind::SuccessRate,
                MetricSource::RequestDuration => Kind::Duration,
                MetricSource::Template { .. } | MetricSource::Query { .. } => Kind::Query,
            },
            min: m.min,
            max: m.max,
            interval: Some(m.interval),
            baseline: m.baseline,
            scope: m.scope,
            checks: Vec::new(),
        })
        .collect();
    for r in records {
        let evidence = r
            .evidence
            .zip(r.boundary)
            .filter(|(e, b)| e.is_finite() && b.is_finite())
            .map(|(log_e, boundary)| Evidence { log_e, boundary });
        let value = r.value.filter(|v| !v.is_nan());
        let rejection = r.result == CheckResult::Failed
            && evidence.is_some_and(|e| e.rejects())
            && r.message.as_deref().is_some_and(|m| m.contains(REJECTION));
        let judged = Judged {
            at: r.time.0,
            value: if rejection { None } else { value },
            result: r.result,
            message: r.message.clone(),
            stable: None,
            evidence,
            rejected_share: if rejection { value } else { None },
        };
        match out.iter_mut().find(|m| m.name == r.metric) {
            Some(m) => m.checks.push(judged),
            None => out.push(MetricChecks {
                name: r.metric.clone(),
                kind: Kind::Other,
                min: None,
                max: None,
                interval: None,
                baseline: None,
                scope: MetricScope::Canary,
                checks: vec![judged],
            }),
        }
    }
    for m in &mut out {
        m.checks.sort_by_key(|c| c.at);
    }
    out
}

/// A built-in metric whose failed checks the stable failed too, at the same times over
/// the same window: the release failed on something both versions share.
#[derive(Debug, Clone, PartialEq)]
pub struct Alike {
    pub metric: String,
    pub kind: Kind,
    pub interval: Duration,
    /// The bound both versions missed (`min` of a success rate, `max` of a duration).
    pub bound: f64,
    /// Each failed check: when, the canary's value, the stable's.
    pub failed: Vec<(Timestamp, f64, f64)>,
    /// The smallest `maxDelta` with which `compare: baseline` passes every one of them.
    pub max_delta: f64,
    /// These were every failed check of the release: with `compare: baseline` in place
    /// of the bound, it would have gone on.
    pub whole_release: bool,
}

/// The built-in metrics (judged on the canary's own nodes, not yet against the
/// baseline) whose every failed check with a value had the stable beyond the same bound
/// at that time, over the same window.
pub fn failed_alike(metrics: &[MetricChecks]) -> Vec<Alike> {
    let failures = metrics.iter().flat_map(|m| &m.checks).filter(|c| c.result == CheckResult::Failed).count();
    let mut out = Vec::new();
    for m in metrics {
        let (Some(interval), None, MetricScope::Canary) = (m.interval, m.baseline, m.scope) else { continue };
        let bound = match m.kind {
            Kind::SuccessRate => m.min,
            Kind::Duration => m.max,
            Kind::Query | Kind::Other => None,
        };
        let Some(bound) = bound else { continue };
        let failed: Vec<&Judged> = m.checks.iter().filter(|c| c.result == CheckResult::Failed).collect();
        let beyond = |v: f64| if m.kind == Kind::SuccessRate { v < bound } else { v > bound };
        let both: Vec<(Timestamp, f64, f64)> = failed
            .iter()
            .filter_map(|c| Some((c.at, c.value?, c.stable?)))
            .filter(|(_, canary, stable)| beyond(*canary) && beyond(*stable))
            .collect();
        if both.is_empty() || both.len() != failed.iter().filter(|c| c.value.is_some()).count() {
            continue;
        }
        // How much worse than the stable the canary was, at worst: the margin to allow.
        let worse = both.iter().map(|(_, c, s)| if m.kind == Kind::SuccessRate { s - c } else { c - s });
        let max_delta = worse.fold(0.0, f64::max);
        out.push(Alike {
            metric: m.name.clone(),
            kind: m.kind,
            interval,
            bound,
            whole_release: both.len() == failures,
            failed: both,
            max_delta,
        });
    }
    out
}

impl Alike {
    /// What the page says: the stable's value at a failed check and what
    /// `compare: baseline` would have done.
    pub fn said(&self) -> String {
        let shown = |v: f64| match self.kind {
            Kind::Duration => format!("{v:.0} ms"),
            _ => format!("{v:.2} %"),
        };
        let (bound, what) = match self.kind {
            Kind::Duration => ("max", "P99"),
            _ => ("min", "success rate"),
        };
        let window = Display(self.interval);
        // The check that needs the widest margin: the one the maxDelta below is for.
        let worse = |(_, canary, stable): &(Timestamp, f64, f64)| match self.kind {
            Kind::Duration => canary - stable,
            _ => stable - canary,
        };
        let worst = self.failed.iter().max_by(|a, b| worse(a).total_cmp(&worse(b)));
        let (at, canary, stable) = worst.copied().unwrap_or((Timestamp::UNIX_EPOCH, 0.0, 0.0));
        let n = self.failed.len();
        let checks = if n == 1 { "its failed check".to_owned() } else { format!("each of its {n} failed checks") };
        // Up to the hundredth the Events show, not past it for a float's last bit.
        let hundredths = (self.max_delta * 100.0 - 1e-6).ceil();
        let delta = if hundredths > 0.0 { hundredths / 100.0 } else { 0.0 };
        let verdict = if self.whole_release {
            "would have held this release"
        } else {
            "would have passed these checks (other checks failed too)"
        };
        let margin = if delta > 0.0 {
            format!("(maxDelta {delta})")
        } else {
            "(any maxDelta: the canary did no worse than the stable)".to_owned()
        };
        format!(
            "{metric}: the stable failed alike. At {clock} the canary's {what} was {c} and the stable answered {s} in \
             the same {window} window; at {checks} the stable was beyond {bound} {b} too. `compare: baseline` \
             {margin} in place of {bound} {b} {verdict}.",
            metric = self.metric,
            clock = super::clock(at),
            c = shown(canary),
            s = shown(stable),
            b = self.bound,
        )
    }
}

#[cfg(test)]
mod tests;
