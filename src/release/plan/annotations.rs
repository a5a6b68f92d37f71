//! [`Plan`] from a Deployment's annotations under `apisix-canary.dev/`: every key
//! parsed and range-checked, unknown keys named with a did-you-mean, all problems in
//! one list.

use std::collections::BTreeMap;
use std::time::Duration;

use super::judge::{self, JudgeSettings};
use super::{Metric, MetricScope, MetricSource, NoData, Parsed, Plan, StepSettings, defaults, finish};
use crate::api::annotations::*;
use crate::api::canary::{REQUEST_DURATION, REQUEST_SUCCESS_RATE};
use crate::api::field::{FieldError, Findings, Path, Shown};
use crate::api::rules;
use crate::release::revision::Revision;

/// How a Deployment opted in, as its annotations say.
// A Plan is parsed, matched and moved on once per review or reconcile, never kept in
// bulk: boxing it would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum OptIn {
    /// Neither `route` nor `canary` is set: not ours.
    Out,
    /// `route` is set: the analysis is the inline annotations, with defaults.
    Inline(Plan),
    /// `canary` is set: the Canary of that name holds the analysis.
    Canary(String),
}

/// What the keys hold, before defaults: `None` means "not written or not valid".
#[derive(Default)]
struct Written {
    route: Option<String>,
    canary: Option<String>,
    step_weight: Option<u32>,
    step_weights: Option<Vec<u32>>,
    step_weight_promotion: Option<u32>,
    max_weight: Option<u32>,
    interval: Option<Duration>,
    threshold: Option<u32>,
    min_success_rate: Option<f64>,
    max_request_duration: Option<Duration>,
    /// The judge's name as written, checked with the confidence.
    judge: Option<String>,
    /// The confidence as parsed (`None`: not a number), when the key is present.
    confidence: Option<Option<f64>>,
    progress_deadline_seconds: Option<u32>,
    skip_analysis: Option<bool>,
    suspend: Option<bool>,
}

impl Plan {
    /// Parses the annotations of the Deployment `name`.
    pub fn from_annotations(name: &str, annotations: &BTreeMap<String, String>) -> Parsed<OptIn> {
        let mut f = Findings::default();
        let w = parse_keys(annotations, &mut f);
        consistency(annotations, &mut f);
        if let Some(warning) = w.interval.and_then(rules::interval_warning) {
            f.warnings.push((path(INTERVAL), warning));
        }
        if let Some(warning) = w.threshold.and_then(rules::threshold_warning) {
            f.warnings.push((path(THRESHOLD), warning));
        }
        let raw = |key: &str| Shown::from(annotations.get(key).map(String::as_str).unwrap_or_default());
        let (steps, max_weight) = StepSettings {
            step_weight: w.step_weight.map(|s| (s, raw(STEP_WEIGHT))),
            step_weights: w.step_weights.as_deref().map(|s| (s, raw(STEP_WEIGHTS))),
            max_weight: w.max_weight,
            max_invalid: annotations.contains_key(MAX_WEIGHT) && w.max_weight.is_none(),
            step_weight_path: path(STEP_WEIGHT),
            step_weights_path: path(STEP_WEIGHTS),
            names: (STEP_WEIGHTS, "max-weight"),
        }
        .resolve(&mut f);
        let metrics = builtin_metrics(&w);
        let judge = JudgeSettings {
            judge: w.judge.as_deref(),
            confidence: w.confidence.map(|c| (c, raw(CONFIDENCE))),
            judge_path: path(JUDGE),
            confidence_path: path(CONFIDENCE),
            judge_name: JUDGE,
        }
        .resolve(&mut f);
        let opt_in = match (w.route, w.canary) {
            (Some(route), _) => OptIn::Inline(Plan {
                target: name.to_owned(),
                route,
                service: None,
                port: None,
                apex: None,
                interval: w.interval.unwrap_or(defaults::INTERVAL),
                threshold: w.threshold.unwrap_or(defaults::THRESHOLD),
                steps,
                max_weight,
                step_weight_promotion: w.step_weight_promotion,
                progress_deadline: Duration::from_secs(
                    w.progress_deadline_seconds.unwrap_or(defaults::PROGRESS_DEADLINE_SECONDS).into(),
                ),
                skip_analysis: w.skip_analysis.unwrap_or(false),
                suspend: w.suspend.unwrap_or(false),
                metrics,
                webhooks: Vec::new(),
                alerts: Vec::new(),
                metrics_server: None,
                ingress: None,
                canary_ready_threshold: defaults::CANARY_READY_THRESHOLD,
                judge,
                ab: None,
                sticky: None,
            }),
            (None, Some(canary)) => OptIn::Canary(canary),
            (None, None) => OptIn::Out,
        };
        if let OptIn::Inline(plan) = &opt_in {
            judge::bucket_warnings(plan, |_| Some(path(MAX_REQUEST_DURATION)), &mut f);
        }
        finish(f, opt_in)
    }
}

/// Inline analysis always checks both built-in metrics, at the written or default bounds.
fn builtin_metrics(w: &Written) -> Vec<Metric> {
    let duration = w.max_request_duration.unwrap_or(defaults::MAX_REQUEST_DURATION);
    vec![
        Metric {
            name: REQUEST_SUCCESS_RATE.to_owned(),
            source: MetricSource::RequestSuccessRate,
            min: Some(w.min_success_rate.unwrap_or(defaults::MIN_SUCCESS_RATE)),
            max: None,
            interval: defaults::METRIC_INTERVAL,
            scope: MetricScope::Canary,
            on_no_data: NoData::Fail,
            baseline: None,
            min_requests: 0,
        },
        Metric {
            name: REQUEST_DURATION.to_owned(),
            source: MetricSource::RequestDuration,
            min: None,
            max: Some(duration.as_secs_f64() * 1e3),
            interval: defaults::METRIC_INTERVAL,
            scope: MetricScope::Canary,
            on_no_data: NoData::Fail,
            baseline: None,
            min_requests: 0,
        },
    ]
}

fn parse_keys(annotations: &BTreeMap<String, String>, f: &mut Findings) -> Written {
    let mut w = Written::default();
    let int = |raw: &str| raw.trim().parse::<i64>().ok();
    for (key, raw) in annotations.range(PREFIX.to_owned()..).take_while(|(k, _)| k.starts_with(PREFIX)) {
        let p = path(key);
        let shown = Shown::from(raw);
        let raw = raw.as_str();
        let result: Result<(), FieldError> = match key.as_str() {
            ROUTE => rules::object_name(&p, raw).map(|()| w.route = Some(raw.to_owned())),
            CANARY => rules::object_name(&p, raw).map(|()| w.canary = Some(raw.to_owned())),
            STEP_WEIGHT => rules::weight(&p, &shown, int(raw)).map(|v| w.step_weight = Some(v)),
            STEP_WEIGHT_PROMOTION => rules::weight(&p, &shown, int(raw)).map(|v| w.step_weight_promotion = Some(v)),
            MAX_WEIGHT => rules::weight(&p, &shown, int(raw)).map(|v| w.max_weight = Some(v)),
            STEP_WEIGHTS => {
                let values: Vec<Option<i64>> =
                    if raw.trim().is_empty() { Vec::new() } else { raw.split(',').map(int).collect() };
                rules::step_weights(&p, &shown, &values).map(|v| w.step_weights = Some(v))
            }
            INTERVAL => rules::interval(&p, raw).map(|v| w.interval = Some(v)),
            THRESHOLD => rules::threshold(&p, &shown, int(raw)).map(|v| w.threshold = Some(v)),
            MIN_SUCCESS_RATE => {
                let value = raw.trim().parse::<f64>().ok();
                rules::success_rate(&p, &shown, value).map(|v| w.min_success_rate = Some(v))
            }
            MAX_REQUEST_DURATION => rules::request_duration(&p, raw).map(|v| w.max_request_duration = Some(v)),
            // Checked together, once all keys are read: a confidence depends on the judge.
            JUDGE => {
                w.judge = Some(raw.to_owned());
                Ok(())
            }
            CONFIDENCE => {
                w.confidence = Some(raw.trim().parse::<f64>().ok());
                Ok(())
            }
            PROGRESS_DEADLINE_SECONDS => {
                rules::progress_deadline_seconds(&p, &shown, int(raw)).map(|v| w.progress_deadline_seconds = Some(v))
            }
            SKIP_ANALYSIS | SUSPEND => match raw {
                "true" | "false" => {
                    let value = Some(raw == "true");
                    if key.as_str() == SKIP_ANALYSIS {
                        w.skip_analysis = value
                    } else {
                        w.suspend = value
                    }
                    Ok(())
                }
                _ => Err(FieldError::not_supported(&p, raw, &["false", "true"])),
            },
            STABLE_REVISION | CANARY_REVISION | FAILED_REVISION | RETRY | PROMOTED_REVISION => revision_value(&p, raw),
            // Past the errors a message shows, a hint would only cost time.
            _ if f.errors.len() >= crate::api::field::SHOWN_ERRORS => {
                Err(FieldError::forbidden(&p, "unknown annotation"))
            }
            unknown => Err(unknown_key(&p, unknown)),
        };
        f.push(result);
    }
    w
}

fn revision_value(p: &Path, raw: &str) -> Result<(), FieldError> {
    match Revision::parse(raw) {
        Some(_) => Ok(()),
        None => Err(FieldError::invalid(p, raw, "must be a revision: 10 lowercase hexadecimal characters")),
    }
}

fn unknown_key(p: &Path, key: &str) -> FieldError {
    // Two keys are at least their difference in length apart: the distance, quadratic
    // in the key's length, is only computed where it can be within reach.
    let chars = key.chars().count();
    let best = KNOWN_KEYS
        .iter()
        .filter(|k| k.len().abs_diff(chars) <= 3)
        .map(|k| (strsim::damerau_levenshtein(k, key), *k))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    match best {
        Some((_, suggestion)) => FieldError::forbidden(p, format!("unknown annotation; did you mean {suggestion}?")),
        None => {
            let names: Vec<&str> = KNOWN_KEYS.iter().map(|k| &k[PREFIX.len()..]).collect();
            FieldError::forbidden(p, format!("unknown annotation; known keys under {PREFIX}: {}", names.join(", ")))
        }
    }
}

/// The opt-in modes exclude each other, and inline settings need the route.
fn consistency(annotations: &BTreeMap<String, String>, f: &mut Findings) {
    let inline: Vec<&str> = ANALYSIS_KEYS.iter().copied().filter(|k| annotations.contains_key(*k)).collect();
    if annotations.contains_key(ROUTE) && annotations.contains_key(CANARY) {
        f.errors.push(FieldError::forbidden(
            &path(CANARY),
            format!("may not be set together with {ROUTE}: the Canary's spec.routeRef names the route"),
        ));
    } else if annotations.contains_key(CANARY) {
        for key in &inline {
            f.errors.push(FieldError::forbidden(
                &path(key),
                format!("the analysis is defined by the Canary named in {CANARY}; set it there"),
            ));
        }
    } else if !annotations.contains_key(ROUTE)
        && let Some(first) = inline.first()
    {
        f.errors.push(FieldError::required(&path(ROUTE), format!("{first} has no effect without {ROUTE}")));
    }
}
