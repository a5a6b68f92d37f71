//! The Deployment annotations under `apisix-canary.dev/`: opt-in, inline analysis
//! settings and the release lock. Keys are defined here once; [`parse`] turns them into
//! [`Settings`] or an [`ErrorList`] naming every bad key.

use std::collections::BTreeMap;
use std::time::Duration;

use super::field::{ErrorList, FieldError, Path, Shown};
use super::rules;

pub const PREFIX: &str = "apisix-canary.dev/";

/// Opt-in: the ApisixRoute whose rule serves this Deployment.
pub const ROUTE: &str = "apisix-canary.dev/route";
/// Opt-in: a `Canary` resource that holds the analysis.
pub const CANARY: &str = "apisix-canary.dev/canary";

pub const STEP_WEIGHT: &str = "apisix-canary.dev/step-weight";
pub const STEP_WEIGHTS: &str = "apisix-canary.dev/step-weights";
pub const STEP_WEIGHT_PROMOTION: &str = "apisix-canary.dev/step-weight-promotion";
pub const MAX_WEIGHT: &str = "apisix-canary.dev/max-weight";
pub const INTERVAL: &str = "apisix-canary.dev/interval";
pub const THRESHOLD: &str = "apisix-canary.dev/threshold";
pub const MIN_SUCCESS_RATE: &str = "apisix-canary.dev/min-success-rate";
pub const MAX_REQUEST_DURATION: &str = "apisix-canary.dev/max-request-duration";
pub const PROGRESS_DEADLINE_SECONDS: &str = "apisix-canary.dev/progress-deadline-seconds";
pub const SKIP_ANALYSIS: &str = "apisix-canary.dev/skip-analysis";

/// The lock: present while a release holds the Deployment. Removing it releases control.
pub const STABLE_REVISION: &str = "apisix-canary.dev/stable-revision";
/// The revision under analysis (equal to [`FAILED_REVISION`] after a rollback).
pub const CANARY_REVISION: &str = "apisix-canary.dev/canary-revision";
/// The last revision that failed its analysis; it is not released again unless retried.
pub const FAILED_REVISION: &str = "apisix-canary.dev/failed-revision";
/// Set to a failed revision to release it once more.
pub const RETRY: &str = "apisix-canary.dev/retry";
/// Written by the controller with the write that promotes: the revision it promotes.
/// It is how the webhook tells a promotion from a write that merely dropped the lock.
pub const PROMOTED_REVISION: &str = "apisix-canary.dev/promoted-revision";

/// The analysis settings that may be written inline on the Deployment.
pub const ANALYSIS_KEYS: &[&str] = &[
    STEP_WEIGHT,
    STEP_WEIGHTS,
    STEP_WEIGHT_PROMOTION,
    MAX_WEIGHT,
    INTERVAL,
    THRESHOLD,
    MIN_SUCCESS_RATE,
    MAX_REQUEST_DURATION,
    PROGRESS_DEADLINE_SECONDS,
    SKIP_ANALYSIS,
];

/// Every key we understand; anything else under [`PREFIX`] is a typo.
pub const KNOWN_KEYS: &[&str] = &[
    ROUTE,
    CANARY,
    STEP_WEIGHT,
    STEP_WEIGHTS,
    STEP_WEIGHT_PROMOTION,
    MAX_WEIGHT,
    INTERVAL,
    THRESHOLD,
    MIN_SUCCESS_RATE,
    MAX_REQUEST_DURATION,
    PROGRESS_DEADLINE_SECONDS,
    SKIP_ANALYSIS,
    STABLE_REVISION,
    CANARY_REVISION,
    FAILED_REVISION,
    RETRY,
    PROMOTED_REVISION,
];

/// Defaults for settings left out, in one place. They follow Flagger's documented
/// examples so a ported setup behaves the same.
pub mod defaults {
    use std::time::Duration;

    pub const STEP_WEIGHT: u32 = 10;
    pub const MAX_WEIGHT: u32 = 50;
    pub const INTERVAL: Duration = Duration::from_secs(60);
    pub const THRESHOLD: u32 = 5;
    pub const MIN_SUCCESS_RATE: f64 = 99.0;
    pub const MAX_REQUEST_DURATION: Duration = Duration::from_millis(500);
    pub const PROGRESS_DEADLINE_SECONDS: u32 = 600;
}

/// What the annotations say, parsed and range-checked. `None` means "not written".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub route: Option<String>,
    pub canary: Option<String>,
    pub step_weight: Option<u32>,
    pub step_weights: Option<Vec<u32>>,
    pub step_weight_promotion: Option<u32>,
    pub max_weight: Option<u32>,
    pub interval: Option<Duration>,
    pub threshold: Option<u32>,
    pub min_success_rate: Option<f64>,
    pub max_request_duration: Option<Duration>,
    pub progress_deadline_seconds: Option<u32>,
    pub skip_analysis: Option<bool>,
}

impl Settings {
    /// Whether the Deployment opted in to canary releases.
    pub fn opted_in(&self) -> bool {
        self.route.is_some() || self.canary.is_some()
    }
}

/// Whether these annotations opt a Deployment in, without validating anything.
pub fn opted_in(annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(ROUTE) || annotations.contains_key(CANARY)
}

/// Whether two annotation maps differ in any key of ours.
pub fn ours_differ(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    let ours = |m: &'_ BTreeMap<String, String>| {
        m.iter().filter(|(k, _)| k.starts_with(PREFIX)).map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
    };
    ours(a) != ours(b)
}

/// `metadata.annotations[<key>]`
pub fn path(key: &str) -> Path {
    Path::new("metadata").child("annotations").key(key)
}

/// Parses and checks every annotation under [`PREFIX`]; all problems in one list.
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Settings, ErrorList> {
    let mut errs = ErrorList::new();
    let mut s = Settings::default();
    let int = |raw: &str| raw.trim().parse::<i64>().ok();

    for (key, raw) in annotations.range(PREFIX.to_owned()..).take_while(|(k, _)| k.starts_with(PREFIX)) {
        let p = path(key);
        let shown = Shown::from(raw);
        let raw = raw.as_str();
        let result: Result<(), FieldError> = match key.as_str() {
            ROUTE => rules::object_name(&p, raw).map(|()| s.route = Some(raw.to_owned())),
            CANARY => rules::object_name(&p, raw).map(|()| s.canary = Some(raw.to_owned())),
            STEP_WEIGHT => rules::weight(&p, &shown, int(raw)).map(|v| s.step_weight = Some(v)),
            STEP_WEIGHT_PROMOTION => rules::weight(&p, &shown, int(raw)).map(|v| s.step_weight_promotion = Some(v)),
            MAX_WEIGHT => rules::weight(&p, &shown, int(raw)).map(|v| s.max_weight = Some(v)),
            STEP_WEIGHTS => {
                let values: Vec<Option<i64>> =
                    if raw.trim().is_empty() { Vec::new() } else { raw.split(',').map(int).collect() };
                rules::step_weights(&p, &shown, &values).map(|v| s.step_weights = Some(v))
            }
            INTERVAL => rules::interval(&p, raw).map(|v| s.interval = Some(v)),
            THRESHOLD => rules::threshold(&p, &shown, int(raw)).map(|v| s.threshold = Some(v)),
            MIN_SUCCESS_RATE => {
                let value = raw.trim().parse::<f64>().ok();
                rules::success_rate(&p, &shown, value).map(|v| s.min_success_rate = Some(v))
            }
            MAX_REQUEST_DURATION => rules::request_duration(&p, raw).map(|v| s.max_request_duration = Some(v)),
            PROGRESS_DEADLINE_SECONDS => {
                rules::progress_deadline_seconds(&p, &shown, int(raw)).map(|v| s.progress_deadline_seconds = Some(v))
            }
            SKIP_ANALYSIS => match raw {
                "true" | "false" => {
                    s.skip_analysis = Some(raw == "true");
                    Ok(())
                }
                _ => Err(FieldError::not_supported(&p, raw, &["false", "true"])),
            },
            STABLE_REVISION | CANARY_REVISION | FAILED_REVISION | RETRY | PROMOTED_REVISION => revision_value(&p, raw),
            unknown => Err(unknown_key(&p, unknown)),
        };
        if let Err(e) = result {
            errs.push(e);
        }
    }
    consistency(&s, annotations, &mut errs);
    errs.into_result(s)
}

fn revision_value(p: &Path, raw: &str) -> Result<(), FieldError> {
    if crate::release::revision::Revision::parse(raw).is_some() {
        Ok(())
    } else {
        Err(FieldError::invalid(p, raw, "must be a revision: 10 lowercase hexadecimal characters"))
    }
}

fn unknown_key(p: &Path, key: &str) -> FieldError {
    let best = KNOWN_KEYS
        .iter()
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

/// Rules across keys: the opt-in modes exclude each other, and weights fit together.
fn consistency(s: &Settings, annotations: &BTreeMap<String, String>, errs: &mut ErrorList) {
    let inline: Vec<&str> = ANALYSIS_KEYS.iter().copied().filter(|k| annotations.contains_key(*k)).collect();
    if annotations.contains_key(ROUTE) && annotations.contains_key(CANARY) {
        errs.push(FieldError::forbidden(
            &path(CANARY),
            format!("may not be set together with {ROUTE}: the Canary's spec.routeRef names the route"),
        ));
    } else if annotations.contains_key(CANARY) {
        for key in &inline {
            errs.push(FieldError::forbidden(
                &path(key),
                format!("the analysis is defined by the Canary named in {CANARY}; set it there"),
            ));
        }
    } else if !annotations.contains_key(ROUTE)
        && let Some(first) = inline.first()
    {
        errs.push(FieldError::required(&path(ROUTE), format!("{first} has no effect without {ROUTE}")));
    }

    let (max, max_note) = match s.max_weight {
        Some(m) => (m, String::new()),
        None => (defaults::MAX_WEIGHT, ", the default".to_owned()),
    };
    // Cross-checks only between values that are valid on their own.
    let max_invalid = annotations.contains_key(MAX_WEIGHT) && s.max_weight.is_none();
    if let (Some(step), Some(raw), false) = (s.step_weight, annotations.get(STEP_WEIGHT), max_invalid)
        && step > max
    {
        errs.push(FieldError::invalid(
            &path(STEP_WEIGHT),
            raw,
            format!("must be less than or equal to max-weight ({max}{max_note})"),
        ));
    }
    if let (Some(weights), Some(m), Some(raw)) = (&s.step_weights, s.max_weight, annotations.get(STEP_WEIGHTS))
        && weights.last().is_some_and(|last| *last > m)
    {
        errs.push(FieldError::invalid(&path(STEP_WEIGHTS), raw, format!("must not go above max-weight ({m})")));
    }
}
