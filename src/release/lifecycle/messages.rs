//! The words of the `Promoted` condition: Flagger's for each phase, and ours for what
//! Flagger has no phase for (refusals, cancellations, releases that slipped past).

use crate::api::canary::Phase;

pub const INITIALIZED: &str = "Deployment initialization completed.";
pub const PROGRESSING: &str = "New revision detected, progressing canary analysis.";
pub const PROMOTING: &str = "Canary analysis completed, starting primary rolling update.";
pub const FINALISING: &str = "Canary analysis completed, routing all traffic to primary.";
pub const SUCCEEDED: &str = "Canary analysis completed successfully, promotion finished.";
pub const FAILED: &str = "Canary analysis failed, Deployment scaled to zero.";
/// Waiting at confirm-rollout or confirm-promotion (Flagger's words for both).
pub const WAITING: &str = "Waiting for approval.";
/// Held at confirm-traffic-increase: the phase stays Progressing.
pub const WAITING_TRAFFIC: &str = "Waiting for approval to increase the canary weight.";
/// Held by a metric's minRequests until the canary has served enough requests.
pub const WAITING_FOR_TRAFFIC: &str = "Waiting for canary traffic: too few requests to judge the metrics.";
pub const SUSPENDED: &str = "Canary is suspended: nothing is acted on until spec.suspend is false.";
pub const REFUSED: &str = "Release refused:";
/// Initializing, and why not yet: no release of the target could be intercepted or run.
pub const NOT_INITIALIZED: &str = "Not initialized:";
pub const CANCELLED: &str = "Release cancelled: the template is back at the stable revision.";
pub const RELEASED: &str = "Release ended: the lock was removed; the Deployment stays paused until resumed.";
pub const NOT_INTERCEPTED: &str = "Release not intercepted:";

/// The status of the `Promoted` condition in a phase (Flagger's mapping).
pub fn promoted_condition(phase: Phase) -> &'static str {
    match phase {
        Phase::Initialized | Phase::Succeeded => "True",
        Phase::Failed => "False",
        _ => "Unknown",
    }
}
