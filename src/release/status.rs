//! The lifecycle's [`Status`] as the Canary status subresource records it, with the
//! `Promoted` condition Flagger users read in `kubectl describe`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::lifecycle::{Check, Measured, Status, promoted_condition};
use crate::api::canary::{CanaryCondition, CanaryStatus, CheckRecord, CheckResult, Phase};

pub const PROMOTED: &str = "Promoted";

fn count(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

fn signed(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// What the status says, read back for the next decision.
pub fn from_canary(s: Option<&CanaryStatus>) -> Status {
    let Some(s) = s else { return Status::default() };
    let message = s.conditions.iter().flatten().find(|c| c.type_ == PROMOTED).and_then(|c| c.message.clone());
    Status {
        phase: s.phase,
        weight: count(s.canary_weight),
        failed_checks: count(s.failed_checks),
        iterations: count(s.iterations),
        applied: s.last_applied_spec.clone(),
        promoted: s.last_promoted_spec.clone(),
        failed: s.failed_revision.clone(),
        since: s.last_transition_time.as_ref().map(|t| t.0),
        held_since: s.held_since.as_ref().map(|t| t.0),
        started: s.analysis_started.as_ref().map(|t| t.0),
        message,
        checks: s.checks.iter().flatten().map(measured).collect(),
        metrics_server: s.metrics_server.clone(),
    }
}

fn measured(r: &CheckRecord) -> Measured {
    let (halt, wait) = match r.result {
        CheckResult::Passed => (None, None),
        CheckResult::Failed => (Some(r.message.clone().unwrap_or_default()), None),
        CheckResult::Waiting => (None, Some(r.message.clone().unwrap_or_default())),
    };
    let evidence = r.evidence.zip(r.boundary);
    Measured { at: r.time.0, check: Check { metric: r.metric.clone(), value: r.value, halt, wait }, evidence }
}

/// A check as `status.checks` records it; a value JSON cannot carry (NaN, infinite) is
/// recorded as none.
pub fn record(m: &Measured) -> CheckRecord {
    let c = &m.check;
    let (result, message) = match (&c.halt, &c.wait) {
        (Some(halt), _) => (CheckResult::Failed, Some(halt.clone())),
        (None, Some(wait)) => (CheckResult::Waiting, Some(wait.clone())),
        (None, None) => (CheckResult::Passed, None),
    };
    CheckRecord {
        time: Time(m.at),
        metric: c.metric.clone(),
        value: c.value.filter(|v| v.is_finite()),
        result,
        message,
        evidence: m.evidence.map(|e| e.0).filter(|v| v.is_finite()),
        boundary: m.evidence.map(|e| e.1).filter(|v| v.is_finite()),
    }
}

/// The status to write; the condition keeps its transition time while its status holds.
pub fn to_canary(s: &Status, previous: Option<&CanaryStatus>) -> CanaryStatus {
    let now = s.since.map(Time);
    let phase = s.phase.unwrap_or(Phase::Initializing);
    let status = promoted_condition(phase).to_owned();
    let old = previous.and_then(|p| p.conditions.iter().flatten().find(|c| c.type_ == PROMOTED));
    let transition = match old {
        Some(c) if c.status == status => c.last_transition_time.clone().or(now.clone()),
        _ => now.clone(),
    };
    let condition = CanaryCondition {
        type_: PROMOTED.to_owned(),
        status,
        last_update_time: now.clone(),
        last_transition_time: transition,
        reason: Some(format!("{phase:?}")),
        message: s.message.clone(),
    };
    CanaryStatus {
        phase: s.phase,
        canary_weight: Some(signed(s.weight)),
        failed_checks: Some(signed(s.failed_checks)),
        iterations: Some(signed(s.iterations)),
        last_applied_spec: s.applied.clone(),
        last_promoted_spec: s.promoted.clone(),
        held_since: s.held_since.map(Time),
        analysis_started: s.started.map(Time),
        failed_revision: s.failed.clone(),
        last_transition_time: now,
        conditions: Some(vec![condition]),
        checks: (!s.checks.is_empty()).then(|| s.checks.iter().map(record).collect()),
        metrics_server: s.metrics_server.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn round_trips_and_keeps_the_condition_transition_time() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let s = Status {
            phase: Some(Phase::Progressing),
            weight: 20,
            failed_checks: 1,
            iterations: 3,
            since: Some(t0),
            message: Some("New revision detected, progressing canary analysis.".into()),
            ..Status::default()
        };
        let written = to_canary(&s, None);
        assert_eq!(from_canary(Some(&written)), s);
        let later = to_canary(&Status { weight: 30, since: Some(t1), ..s.clone() }, Some(&written));
        let c = &later.conditions.as_ref().unwrap()[0];
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("Unknown", Some("Progressing")));
        assert_eq!(c.last_transition_time, Some(Time(t0)), "same condition status: transition time kept");
        assert_eq!(later.last_transition_time, Some(Time(t1)));
        let done = to_canary(&Status { phase: Some(Phase::Succeeded), since: Some(t1), ..s }, Some(&later));
        assert_eq!(done.conditions.as_ref().unwrap()[0].status, "True");
        assert_eq!(done.conditions.as_ref().unwrap()[0].last_transition_time, Some(Time(t1)));
    }
}
