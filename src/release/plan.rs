//! The typed analysis of a release: what a Canary or an opted-in Deployment's
//! annotations ask for, parsed once, checked once, defaults applied.
//!
//! ```text
//!  annotations ──Plan::from_annotations──┐
//!  Canary v1beta1 ──Plan::from_canary────┼──▶ Ok((Plan, warnings)) ──▶ controller
//!  Canary v1alpha1 ──Plan::from_v1alpha1─┘    Err(ErrorList)        ──▶ admission denial
//! ```
//!
//! The webhooks report the errors and warnings of these parsers and nothing else; the
//! controller reads only the [`Plan`]. A value is never parsed twice.

mod annotations;
mod canary;
mod judge;

use std::collections::BTreeMap;
use std::time::Duration;

pub use self::annotations::OptIn;
pub use self::canary::matches::MatchExpr;
use crate::api::field::{ErrorList, FieldError, Findings, Path, Shown};

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
    /// The range of a metric's query when it names none (Flagger's default).
    pub const METRIC_INTERVAL: Duration = Duration::from_secs(60);
    /// How long a webhook call may take when it names no timeout (Flagger's default).
    pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
    /// Percent of the canary's pods available before it is judged ready (Flagger's).
    pub const CANARY_READY_THRESHOLD: u32 = 100;
    /// `judge: sequential`'s confidence, in percent: at most 1 % of healthy releases
    /// rolled back by the test.
    pub const CONFIDENCE: f64 = 99.0;
}

/// A legal but risky value, with the path it is about; sent as an admission warning.
pub type Warning = (Path, String);

/// One release's analysis, every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The Deployment released.
    pub target: String,
    /// The ApisixRoute whose rule serves the target.
    pub route: String,
    /// The route backend's Service, when it is not the one the route names.
    pub service: Option<String>,
    pub port: Option<u16>,
    /// How to generate that Service when it does not exist (a Canary's `spec.service`
    /// with a port, as Flagger generates its apex Service).
    pub apex: Option<super::apex::ApexService>,
    /// Time between two steps.
    pub interval: Duration,
    /// Failed checks, counted over the whole release, that roll it back.
    pub threshold: u32,
    /// The canary weights visited in order; the last one is `max_weight`'s step.
    pub steps: Vec<u32>,
    pub max_weight: u32,
    pub step_weight_promotion: Option<u32>,
    /// How long the canary may take to become ready.
    pub progress_deadline: Duration,
    pub skip_analysis: bool,
    pub suspend: bool,
    pub metrics: Vec<Metric>,
    pub webhooks: Vec<Webhook>,
    pub alerts: Vec<Alert>,
    /// `spec.metricsServer`: the Prometheus of the built-in and inline-query metrics,
    /// instead of serve's `--prometheus-url`.
    pub metrics_server: Option<String>,
    /// `spec.ingressRef`'s name, which `{{ ingress }}` renders (else the target's name).
    pub ingress: Option<String>,
    /// Percent (0-100) of the canary's pods that must be available before it is ready.
    pub canary_ready_threshold: u32,
    /// How the built-in metrics are judged.
    pub judge: Judge,
    /// An A/B release (`match` with `iterations`): the matching requests go to the
    /// canary alone (its weight is 100 % of them), for `iterations` intervals.
    pub ab: Option<AbTest>,
    /// A sticky release (`sessionAffinity`): a client stays on the version that first
    /// answered it while the weight moves.
    pub sticky: Option<Sticky>,
}

/// Session affinity, as Flagger's `sessionAffinity`: one cookie names the version that
/// answered a client (see `route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    pub cookie: String,
    /// The cookie's `Set-Cookie` attributes after its value: `Max-Age=86400; Path=/`, ...
    pub attributes: String,
}

/// An A/B release, as Flagger's `match` and `iterations`.
#[derive(Debug, Clone, PartialEq)]
pub struct AbTest {
    /// One rule of the generated route per `match` entry: the APISIX exprs that all hold.
    pub rules: Vec<Vec<MatchExpr>>,
    /// Intervals of checks on the matching requests before promotion.
    pub iterations: u32,
}

/// How the built-in metrics are judged (`analysis.judge`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judge {
    /// Flagger's rule: each interval, each metric over its window; `threshold` failed
    /// checks roll the release back.
    Interval,
    /// `analysis::sequential`'s test of the canary's requests since its first traffic,
    /// looked at whenever Prometheus may have new counts: a rejection rolls back at once,
    /// at most `100 - confidence` percent of healthy releases rolled back by it.
    Sequential { confidence: f64 },
}

/// A check run at every step.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub source: MetricSource,
    /// The check fails below `min` or above `max`.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The range of the query.
    pub interval: Duration,
    /// Whose traffic a built-in metric counts.
    pub scope: MetricScope,
    /// What an empty result (no values, or NaN) means.
    pub on_no_data: NoData,
    /// `compare: baseline`: the stable version's value, measured over the same window
    /// and route, is the bound, within this margin (`maxDelta`: success-rate points or
    /// milliseconds of P99). `min`/`max` still apply as absolute bounds. Built-in only.
    pub baseline: Option<f64>,
    /// Requests the canary must have served in `interval` before the metric is judged;
    /// 0 judges at once.
    pub min_requests: u64,
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// Built in: percent of non-5xx responses of the canary.
    RequestSuccessRate,
    /// Built in: P99 request duration of the canary, in milliseconds.
    RequestDuration,
    /// A `MetricTemplate` (in the Canary's namespace unless named).
    Template { name: String, namespace: Option<String>, variables: BTreeMap<String, String> },
    /// Flagger's inline `query`: PromQL with a template's variables, sent to the
    /// release's Prometheus (`metricsServer`, else serve's).
    Query { query: String, variables: BTreeMap<String, String> },
}

/// A call made at a point of the release.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub kind: HookKind,
    pub url: http::Uri,
    pub timeout: Duration,
    pub metadata: BTreeMap<String, String>,
    /// Attempts after the first when a call fails to connect, times out, or gets a 429
    /// or a 5xx other than 501.
    pub retries: u32,
    /// A gate's "waiting for approval" alert is not sent (Flagger's `muteAlert`).
    pub mute_alert: bool,
    /// The hook's TLS certificate is not verified (Flagger's `disableTLS`).
    pub disable_tls: bool,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];
            /// Every name, in order, as written in a spec.
            pub const NAMES: &[&str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Webhook types, in the order they run during a release (Flagger's names).
    HookKind {
        ConfirmRollout = "confirm-rollout",
        PreRollout = "pre-rollout",
        Rollout = "rollout",
        ConfirmTrafficIncrease = "confirm-traffic-increase",
        ConfirmPromotion = "confirm-promotion",
        PostRollout = "post-rollout",
        Rollback = "rollback",
        Event = "event",
    }
}

named_enum! {
    /// Whose traffic a built-in metric counts: the canary's own (the default), or the
    /// whole generated route as Flagger's queries do (stable and canary blended).
    MetricScope {
        Canary = "canary",
        Route = "route",
    }
}

named_enum! {
    /// What a metric without values (an empty result, or NaN) means.
    #[derive(Default)]
    NoData {
        /// A failed check, in Flagger's words (the default).
        #[default]
        Fail = "fail",
        /// The check passes without a value: for services with little traffic.
        Pass = "pass",
    }
}

named_enum! {
    /// What a built-in metric may be compared with, besides its fixed bounds.
    Compare {
        /// The stable version, over the same window and route.
        Baseline = "baseline",
    }
}

named_enum! {
    /// Alert severities, most verbose first: an alert receives its severity and above.
    Severity {
        Info = "info",
        Warn = "warn",
        Error = "error",
    }
}

/// Where to post the release's events.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: String,
    pub severity: Severity,
    pub provider: String,
    pub provider_namespace: Option<String>,
}

/// How the steps are written, before they become [`Plan::steps`]: the values that
/// parsed, how each was shown, and the names messages use for them.
pub(crate) struct StepSettings<'a> {
    pub step_weight: Option<(u32, Shown)>,
    pub step_weights: Option<(&'a [u32], Shown)>,
    pub max_weight: Option<u32>,
    /// A maximum was written but did not parse: the step is not checked against it.
    pub max_invalid: bool,
    pub step_weight_path: Path,
    pub step_weights_path: Path,
    /// How the fields are named in messages: (`step-weights`, `max-weight`) or
    /// (`stepWeights`, `maxWeight`).
    pub names: (&'a str, &'a str),
}

impl StepSettings<'_> {
    /// The weights to visit and the maximum, checked against each other; with a
    /// warning when both forms are written (Flagger uses stepWeights, and so do we).
    pub fn resolve(self, f: &mut Findings) -> (Vec<u32>, u32) {
        let (weights_name, max_name) = self.names;
        if self.step_weight.is_some() && self.step_weights.is_some() {
            let w = format!("ignored: {weights_name} is set and takes precedence");
            f.warnings.push((self.step_weight_path.clone(), w));
        }
        let (max, note) = match self.max_weight {
            Some(m) => (m, ""),
            None => (defaults::MAX_WEIGHT, ", the default"),
        };
        if let Some((step, shown)) = &self.step_weight
            && *step > max
            && !self.max_invalid
        {
            let detail = format!("must be less than or equal to {max_name} ({max}{note})");
            f.errors.push(FieldError::invalid(&self.step_weight_path, shown, detail));
        }
        match self.step_weights.filter(|(w, _)| !w.is_empty()) {
            Some((weights, shown)) => {
                // Without a written maximum, the last entry is the maximum.
                let last = weights[weights.len() - 1];
                let max = self.max_weight.unwrap_or(last);
                if last > max {
                    let detail = format!("must not go above {max_name} ({max})");
                    f.errors.push(FieldError::invalid(&self.step_weights_path, shown, detail));
                }
                (weights.to_vec(), max)
            }
            None => {
                let step = self.step_weight.map_or(defaults::STEP_WEIGHT.min(max), |(s, _)| s);
                (linear_steps(step, max), max)
            }
        }
    }
}

/// `step, 2*step, ...` up to `max`, the last step landing on `max` exactly.
pub fn linear_steps(step: u32, max: u32) -> Vec<u32> {
    if step == 0 || max == 0 {
        return vec![max.max(1)];
    }
    let mut steps: Vec<u32> = (1..).map(|i| i * step).take_while(|w| *w < max).collect();
    steps.push(max);
    steps
}

impl Plan {
    /// The weight after `current`: the first step above it, or `None` at the top.
    pub fn next_weight(&self, current: u32) -> Option<u32> {
        self.steps.iter().copied().find(|w| *w > current)
    }

    /// How the release shares the traffic, as `status` and `report` say it: `weighted`,
    /// `A/B (x-canary, 5 iterations)`, `sticky (cookie canary)`.
    pub fn mode(&self) -> String {
        match (&self.ab, &self.sticky) {
            (Some(ab), _) => {
                let mut on: Vec<String> =
                    ab.rules.iter().flatten().map(|e| e.name.clone().unwrap_or(e.scope.to_lowercase())).collect();
                on.dedup();
                format!("A/B ({}, {} iterations)", on.join(", "), ab.iterations)
            }
            (None, Some(sticky)) => format!("sticky (cookie {})", sticky.cookie),
            (None, None) => "weighted".to_owned(),
        }
    }

    /// Whether `current` is the last step, where the release is promoted.
    pub fn at_max(&self, current: u32) -> bool {
        current >= self.max_weight || self.next_weight(current).is_none()
    }

    /// The webhooks of one kind, in the order written.
    pub fn hooks(&self, kind: HookKind) -> impl Iterator<Item = &Webhook> {
        self.webhooks.iter().filter(move |w| w.kind == kind)
    }
}

/// Parse results with their warnings, or every error at once.
pub type Parsed<T> = Result<(T, Vec<Warning>), ErrorList>;

fn finish<T>(f: Findings, value: T) -> Parsed<T> {
    f.errors.into_result((value, f.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_steps_land_on_max() {
        assert_eq!(linear_steps(10, 50), vec![10, 20, 30, 40, 50]);
        assert_eq!(linear_steps(30, 50), vec![30, 50]);
        assert_eq!(linear_steps(50, 50), vec![50]);
        assert_eq!(linear_steps(1, 3), vec![1, 2, 3]);
    }

    #[test]
    fn names_round_trip() {
        for k in HookKind::ALL {
            assert_eq!(HookKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(HookKind::NAMES.len(), 8);
        assert_eq!(Severity::parse("warn"), Some(Severity::Warn));
        assert!(Severity::Info < Severity::Error);
    }
}
