//! The Deployment annotations under `apisix-canary.dev/`: opt-in, inline analysis
//! settings and the release lock. Keys are defined here once; `release::Plan`
//! parses the settings and `release::lock` the lock.

use std::collections::BTreeMap;

use super::field::Path;

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
/// How the built-in metrics are judged: `interval` (Flagger's rule, the default) or
/// `sequential` (the anytime-valid test).
pub const JUDGE: &str = "apisix-canary.dev/judge";
/// `sequential`'s confidence in percent (default 99).
pub const CONFIDENCE: &str = "apisix-canary.dev/confidence";
pub const PROGRESS_DEADLINE_SECONDS: &str = "apisix-canary.dev/progress-deadline-seconds";
pub const SKIP_ANALYSIS: &str = "apisix-canary.dev/skip-analysis";
/// `true`: stop acting on the release, keeping its state (`apisix-canary pause`).
pub const SUSPEND: &str = "apisix-canary.dev/suspend";

/// On a Canary, set to the revision under release: roll it back now (`apisix-canary abort`).
pub const ABORT: &str = "apisix-canary.dev/abort";
/// On a Canary, set to the revision under release: promote it once the current check
/// passes, skipping the remaining steps and gates (`apisix-canary promote`).
pub const PROMOTE: &str = "apisix-canary.dev/promote";
/// On a Canary, set to the revision under release: promote it now, without a check
/// (`apisix-canary promote --force`).
pub const PROMOTE_NOW: &str = "apisix-canary.dev/promote-now";

/// On a Canary made from a Deployment's annotations (annotation mode): the digest of the
/// spec the controller wrote (`release::mirror::digest`). A Canary whose spec no longer
/// has it was written by someone else and is never the controller's to rewrite or delete.
pub const MIRROR_DIGEST: &str = "apisix-canary.dev/mirror-digest";

/// The annotation `kubectl apply` keeps its last applied configuration in: the whole
/// object again, as a string.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
    JUDGE,
    CONFIDENCE,
    PROGRESS_DEADLINE_SECONDS,
    SKIP_ANALYSIS,
    SUSPEND,
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
    JUDGE,
    CONFIDENCE,
    PROGRESS_DEADLINE_SECONDS,
    SKIP_ANALYSIS,
    SUSPEND,
    STABLE_REVISION,
    CANARY_REVISION,
    FAILED_REVISION,
    RETRY,
    PROMOTED_REVISION,
];

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
