//! `judge` and `confidence`, whichever way they were written (a Canary's
//! `spec.analysis` or a Deployment's annotations), as one [`Judge`].

use super::{Judge, defaults};
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
