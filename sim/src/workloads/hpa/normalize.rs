//! From the metrics' proposal to the replicas an autoscaler sets, as kube's
//! `normalizeDesiredReplicas` (no `behavior`: scale down to the highest recommendation of
//! the last 5 minutes, scale up at most to twice the replicas or 4) and
//! `normalizeDesiredReplicasWithBehaviors` (the behavior's stabilization windows and
//! rate policies over the scale events of their periods) decide it, within the bounds.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// `--horizontal-pod-autoscaler-downscale-stabilization`'s default, in seconds.
pub const DOWNSCALE_STABILIZATION: i64 = 300;

/// What kube-controller-manager remembers of one autoscaler between syncs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Unstabilized recommendations: (when, replicas).
    recommendations: Vec<(Timestamp, i32)>,
    /// Rescales up and down: (when, replicas changed).
    ups: Vec<(Timestamp, i32)>,
    downs: Vec<(Timestamp, i32)>,
}

/// A condition to set: (status, reason, message).
pub type Condition = (bool, &'static str, &'static str);

/// The normalized replicas and the `AbleToScale` and `ScalingLimited` conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Condition,
    pub scaling_limited: Condition,
}

const READY: Condition = (true, "ReadyForNewScale", "recommended size matches current size");
const UP_STABILIZED: Condition = (
    true,
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DOWN_STABILIZED: Condition = (
    true,
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const WITHIN: (&str, &str) = ("DesiredWithinRange", "the desired count is within the acceptable range");
const TOO_FEW: (&str, &str) = ("TooFewReplicas", "the desired replica count is less than the minimum replica count");
const TOO_MANY: (&str, &str) = ("TooManyReplicas", "the desired replica count is more than the maximum replica count");
const UP_LIMIT: (&str, &str) =
    ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate");
const DOWN_LIMIT: (&str, &str) =
    ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate");

/// One direction's scaling rules of a `behavior`, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub window: i64,
    /// `Max`, `Min` or `Disabled`.
    pub select: String,
    /// (`Pods` or `Percent`, value, periodSeconds).
    pub policies: Vec<(String, i64, i64)>,
}

impl Rules {
    /// `behavior.scaleUp` or `.scaleDown` (defaulted by the API server).
    pub fn of(rules: &Value, default_window: i64) -> Self {
        let policies = rules.get("policies").and_then(Value::as_array).into_iter().flatten();
        Self {
            window: rules.get("stabilizationWindowSeconds").and_then(Value::as_i64).unwrap_or(default_window),
            select: rules.get("selectPolicy").and_then(Value::as_str).unwrap_or("Max").to_owned(),
            policies: policies
                .map(|p| {
                    let int = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0);
                    (p["type"].as_str().unwrap_or_default().to_owned(), int("value"), int("periodSeconds"))
                })
                .collect(),
        }
    }

    fn longest_period(&self) -> i64 {
        self.policies.iter().map(|(_, _, period)| *period).max().unwrap_or(0)
    }
}

/// Both directions of a `behavior`.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

impl Behavior {
    pub fn of(behavior: &Value) -> Self {
        let rules = |key: &str, window| Rules::of(behavior.get(key).unwrap_or(&Value::Null), window);
        Self { up: rules("scaleUp", 0), down: rules("scaleDown", DOWNSCALE_STABILIZATION) }
    }
}

fn since(now: Timestamp, seconds: i64) -> Timestamp {
    now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(seconds)).unwrap_or(now)
}

impl History {
    /// `recordInitialRecommendation`: the replicas when first seen.
    pub fn first_seen(&mut self, replicas: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push((now, replicas));
        }
    }

    /// Keeps `recommendation`, dropping those older than `keep` seconds.
    fn record(&mut self, recommendation: i32, now: Timestamp, keep: i64) {
        let cutoff = since(now, keep);
        self.recommendations.retain(|(at, _)| *at >= cutoff);
        self.recommendations.push((now, recommendation));
    }

    /// `storeScaleEvent`: only an autoscaler with a behavior remembers its rescales.
    pub fn rescaled(&mut self, behavior: Option<&Behavior>, from: i32, to: i32, now: Timestamp) {
        let Some(b) = behavior else { return };
        let (events, rules, change) =
            if to > from { (&mut self.ups, &b.up, to - from) } else { (&mut self.downs, &b.down, from - to) };
        let cutoff = since(now, rules.longest_period());
        events.retain(|(at, _)| *at > cutoff);
        events.push((now, change));
    }

    /// Replicas changed by the events of the last `period` seconds.
    fn changed(events: &[(Timestamp, i32)], now: Timestamp, period: i64) -> i32 {
        let cutoff = since(now, period);
        events.iter().filter(|(at, _)| *at > cutoff).map(|(_, n)| n).sum()
    }

    /// `normalizeDesiredReplicas`: without a behavior.
    pub fn normalize(&mut self, now: Timestamp, current: i32, desired: i32, min: i32, max: i32) -> Normalized {
        let cutoff = since(now, DOWNSCALE_STABILIZATION);
        let highest = self.recommendations.iter().filter(|(at, _)| *at >= cutoff).map(|(_, r)| *r).max();
        let stabilized = highest.map_or(desired, |h| h.max(desired));
        self.record(desired, now, DOWNSCALE_STABILIZATION);
        let able_to_scale = if stabilized != desired { DOWN_STABILIZED } else { READY };
        // `calculateScaleUpLimit`: twice the replicas, or 4.
        let up_limit = (2 * current).max(4);
        let (limit, why) = if max > up_limit { (up_limit, UP_LIMIT) } else { (max, TOO_MANY) };
        let (replicas, (reason, message)) = if stabilized < min {
            (min, TOO_FEW)
        } else if stabilized > limit {
            (limit, why)
        } else {
            (stabilized, WITHIN)
        };
        Normalized { replicas, able_to_scale, scaling_limited: (replicas != stabilized, reason, message) }
    }

    /// `normalizeDesiredReplicasWithBehaviors`.
    pub fn normalize_with(
        &mut self,
        b: &Behavior,
        now: Timestamp,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
    ) -> Normalized {
        // `stabilizeRecommendationWithBehaviors`: the lowest recommendation of the up
        // window and the highest of the down window bound the change.
        let (up_cutoff, down_cutoff) = (since(now, b.up.window), since(now, b.down.window));
        let mut up = desired;
        let mut down = desired;
        for (at, r) in &self.recommendations {
            if *at > up_cutoff {
                up = up.min(*r);
            }
            if *at > down_cutoff {
                down = down.max(*r);
            }
        }
        let stabilized = current.max(up).min(down);
        self.record(desired, now, b.up.window.max(b.down.window));
        let able_to_scale = match stabilized == desired {
            true => READY,
            false if desired >= current => UP_STABILIZED,
            false => DOWN_STABILIZED,
        };
        let (replicas, (reason, message)) = self.rate_limited(b, now, current, stabilized, min, max);
        Normalized { replicas, able_to_scale, scaling_limited: (replicas != stabilized, reason, message) }
    }

    /// `convertDesiredReplicasWithBehaviorRate`.
    fn rate_limited(
        &self,
        b: &Behavior,
        now: Timestamp,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
    ) -> (i32, (&'static str, &'static str)) {
        if desired > current {
            let limit = self.limit(&b.up, now, current, true).max(current);
            let (allowed, why) = if max > limit { (limit, UP_LIMIT) } else { (max, TOO_MANY) };
            if desired > allowed {
                return (allowed, why);
            }
        } else if desired < current {
            let limit = self.limit(&b.down, now, current, false).min(current);
            let (allowed, why) = if min < limit { (limit, DOWN_LIMIT) } else { (min, TOO_FEW) };
            if desired < allowed {
                return (allowed, why);
            }
        }
        (desired, WITHIN)
    }

    /// `calculateScaleUpLimitWithScalingRules` / `calculateScaleDownLimitWithBehaviors`:
    /// what the policies allow from the replicas at the start of their periods.
    fn limit(&self, rules: &Rules, now: Timestamp, current: i32, up: bool) -> i32 {
        if rules.select == "Disabled" {
            return current;
        }
        // Up: `Max` takes the largest change (the highest limit); down, the lowest limit.
        let largest_change = rules.select != "Min";
        let proposals = rules.policies.iter().map(|(type_, value, period)| {
            let start = current - Self::changed(&self.ups, now, *period) + Self::changed(&self.downs, now, *period);
            let start = f64::from(start);
            let value = *value as f64;
            let proposed = match (type_.as_str(), up) {
                ("Pods", true) => start + value,
                ("Pods", false) => start - value,
                (_, true) => (start * (1.0 + value / 100.0)).ceil(),
                (_, false) => (start * (1.0 - value / 100.0)).trunc(),
            };
            proposed.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        });
        let pick = if up == largest_change { Iterator::max } else { Iterator::min };
        pick(proposals).unwrap_or(if up == largest_change { i32::MIN } else { i32::MAX })
    }
}
