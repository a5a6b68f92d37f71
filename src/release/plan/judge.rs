//! `judge` and `confidence`, whichever way they were written (a Canary's
//! `spec.analysis` or a Deployment's annotations), as one [`Judge`].

use super::{Judge, MetricSource, Plan, defaults};
use crate::analysis::query::{LATENCY_BUCKETS_MS, bucket_for};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::rules;

/// Flagger's rule, the default.
pub const INTERVAL: &str = "interval";
/// The anytime-valid test of `analysis::sequential`.
pub const SEQUENTIAL: &str = "sequential";
/// Every judge's name, as written in a spec.
pub const NAMES: &[&str] = &[INTERVAL, SEQUENTIAL];

impl Judge {
    /// Its name as written in a spec.
    pub fn name(&self) -> &'static str {
        match self {
            Judge::Interval => INTERVAL,
            Judge::Sequential { .. } => SEQUENTIAL,
        }
    }
}

/// How the two settings are written: the values, where they are, and how messages name
/// the judge setting (`judge`, or `apisix-canary.dev/judge`).
pub(super) struct JudgeSettings<'a> {
    pub judge: Option<&'a str>,
    /// The confidence as parsed (`None`: not a number) and as shown in messages.
    pub confidence: Option<(Option<f64>, Shown)>,
    pub judge_path: Path,
    pub confidence_path: Path,
    pub judge_name: &'a str,
}

impl JudgeSettings<'_> {
    /// The judge, every value checked; a confidence the judge does not read is said to
    /// have no effect, as it would otherwise be a setting silently ignored.
    pub fn resolve(self, f: &mut Findings) -> Judge {
        let confidence = self.confidence.map(|(value, shown)| {
            let checked = rules::confidence(&self.confidence_path, &shown, value).map_err(|e| f.errors.push(e)).ok();
            (checked, shown)
        });
        match self.judge.unwrap_or(INTERVAL) {
            SEQUENTIAL => {
                Judge::Sequential { confidence: confidence.and_then(|(c, _)| c).unwrap_or(defaults::CONFIDENCE) }
            }
            INTERVAL => {
                if let Some((_, shown)) = confidence {
                    let why = format!(
                        "confidence {shown} has no effect without {}: {SEQUENTIAL} (the {INTERVAL} judge, the \
                         default, runs no test)",
                        self.judge_name
                    );
                    f.warnings.push((self.confidence_path, why));
                }
                Judge::Interval
            }
            other => {
                f.errors.push(FieldError::not_supported(&self.judge_path, other, NAMES));
                Judge::Interval
            }
        }
    }
}

/// Under the sequential judge a request-duration `max` is counted at one of APISIX's
/// latency buckets: one between buckets at the next one up, one beyond the last not at
/// all. Said at admission, at the `max` `path_of` finds for the metric's name.
pub(super) fn bucket_warnings(plan: &Plan, path_of: impl Fn(&str) -> Option<Path>, f: &mut Findings) {
    if !matches!(plan.judge, Judge::Sequential { .. }) {
        return;
    }
    let buckets = LATENCY_BUCKETS_MS.map(|b| b.to_string()).join(", ");
    for m in plan.metrics.iter().filter(|m| m.source == MetricSource::RequestDuration) {
        let (Some(max), Some(path)) = (m.max, path_of(&m.name)) else { continue };
        let why = match bucket_for(max) {
            Some(b) if b as f64 == max => continue,
            Some(b) => format!(
                "{} max {max}ms is judged by the sequential test at APISIX's {b}ms latency bucket, the next one up \
                 (the share of requests slower than {b}ms against 1 %); its buckets are {buckets} ms",
                m.name
            ),
            None => format!(
                "{} max {max}ms is beyond APISIX's last latency bucket: the sequential test does not judge it (its \
                 buckets are {buckets} ms); the interval checks still do",
                m.name
            ),
        };
        f.warnings.push((path, why));
    }
}
