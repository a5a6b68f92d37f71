//! A Deployment's status as kube-controller-manager writes it: the counts from its
//! ReplicaSets and the `Available` and `Progressing` conditions with their reasons,
//! messages and timestamps (`calculateStatus`, `syncRolloutStatus`, paused conditions).

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::replicasets::Counts;
use super::rollout::Spec;
use super::{parse_time, stamp, str_at};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";

pub const MIN_AVAILABLE: (&str, &str) = ("MinimumReplicasAvailable", "Deployment has minimum availability.");
pub const MIN_UNAVAILABLE: (&str, &str) =
    ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.");
pub const PAUSED: (&str, &str) = ("DeploymentPaused", "Deployment is paused");
pub const RESUMED: (&str, &str) = ("DeploymentResumed", "Deployment is resumed");
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";

/// The status counts, read back the way Go reads omitted fields: as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatusCounts {
    pub replicas: i64,
    pub updated: i64,
    pub ready: i64,
    pub available: i64,
    pub observed_generation: i64,
}

impl StatusCounts {
    pub fn of(status: &Value) -> Self {
        let n = |k: &str| status.get(k).and_then(Value::as_i64).unwrap_or(0);
        Self {
            replicas: n("replicas"),
            updated: n("updatedReplicas"),
            ready: n("readyReplicas"),
            available: n("availableReplicas"),
            observed_generation: n("observedGeneration"),
        }
    }
}

/// A new condition; both times are now (`NewDeploymentCondition`).
pub fn condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> Value {
    let now = stamp(now);
    json!({"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
        "reason": reason, "message": message})
}

fn conditions(status: &mut Value) -> &mut Vec<Value> {
    if !status.is_object() {
        *status = json!({});
    }
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    match status.get_mut("conditions") {
        Some(Value::Array(list)) => list,
        _ => unreachable!("conditions was just made an array"),
    }
}

pub fn get_condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status.get("conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

pub fn remove_condition(status: &mut Value, type_: &str) {
    conditions(status).retain(|c| c["type"] != type_);
    if conditions(status).is_empty()
        && let Some(m) = status.as_object_mut()
    {
        m.remove("conditions");
    }
}

/// `SetDeploymentCondition`: nothing when status and reason are the same; keeps the
/// transition time when only the reason changes; the changed condition goes last.
pub fn set_condition(status: &mut Value, mut new: Value) {
    let type_ = new["type"].clone();
    if let Some(current) = get_condition(status, type_.as_str().unwrap_or_default()) {
        if current["status"] == new["status"] && current["reason"] == new["reason"] {
            return;
        }
        if current["status"] == new["status"] {
            new["lastTransitionTime"] = current["lastTransitionTime"].clone();
        }
    }
    let list = conditions(status);
    list.retain(|c| c["type"] != type_);
    list.push(new);
}

/// `calculateStatus`: counts of all ReplicaSets, the new one's as updated, and the
/// `Available` condition. Zero counts are omitted, as Go's `omitempty` does.
pub fn calculate(spec: &Spec, d_status: &Value, all: &[(i32, Counts)], new: Option<Counts>, now: Timestamp) -> Value {
    let available: i32 = all.iter().map(|(_, c)| c.available).sum();
    let total_spec: i32 = all.iter().map(|(s, _)| *s).sum();
    let counts = [
        ("observedGeneration", spec.generation),
        ("replicas", all.iter().map(|(_, c)| i64::from(c.replicas)).sum()),
        ("updatedReplicas", new.map_or(0, |c| c.replicas.into())),
        ("readyReplicas", all.iter().map(|(_, c)| i64::from(c.ready)).sum()),
        ("availableReplicas", available.into()),
        ("unavailableReplicas", (total_spec - available).max(0).into()),
    ];
    let mut status = Map::new();
    for (key, n) in counts.into_iter().filter(|(_, n)| *n != 0) {
        status.insert(key.into(), json!(n));
    }
    if let Some(collisions) = d_status.get("collisionCount") {
        status.insert("collisionCount".into(), collisions.clone());
    }
    if let Some(list) = d_status.get("conditions").filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
        status.insert("conditions".into(), list.clone());
    }
    let mut status = Value::Object(status);
    let (state, (reason, message)) =
        if available >= spec.min_available() { ("True", MIN_AVAILABLE) } else { ("False", MIN_UNAVAILABLE) };
    set_condition(&mut status, condition(AVAILABLE, state, reason, message, now));
    status
}

/// `checkPausedConditions`: `Progressing` Unknown while paused, and again on resume.
pub fn check_paused(spec: &Spec, status: &mut Value, now: Timestamp) {
    if spec.progress_deadline.is_none() {
        return;
    }
    let reason = get_condition(status, PROGRESSING).map(|c| str_at(c, "/reason").to_owned());
    if reason.as_deref() == Some(TIMED_OUT) {
        return;
    }
    let paused_recorded = reason.as_deref() == Some(PAUSED.0);
    let (reason, message) = match (spec.paused, paused_recorded) {
        (true, false) => PAUSED,
        (false, true) => RESUMED,
        _ => return,
    };
    set_condition(status, condition(PROGRESSING, "Unknown", reason, message, now));
}

/// `DeploymentComplete`: every replica updated and available, the spec observed.
pub fn complete(spec: &Spec, status: &Value) -> bool {
    let s = StatusCounts::of(status);
    let r = i64::from(spec.replicas);
    s.updated == r && s.replicas == r && s.available == r && s.observed_generation >= spec.generation
}

/// `DeploymentProgressing`: more updated, ready or available, or fewer old pods.
fn progressing(old: &Value, new: &Value) -> bool {
    let (o, n) = (StatusCounts::of(old), StatusCounts::of(new));
    n.updated > o.updated
        || n.replicas - n.updated < o.replicas - o.updated
        || n.ready > o.ready
        || n.available > o.available
}

/// `DeploymentTimedOut`: no progress recorded for progressDeadlineSeconds.
fn timed_out(spec: &Spec, status: &Value, now: Timestamp) -> bool {
    let (Some(deadline), Some(c)) = (spec.progress_deadline, get_condition(status, PROGRESSING)) else {
        return false;
    };
    match str_at(c, "/reason") {
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => parse_time(str_at(c, "/lastUpdateTime"))
            .and_then(|from| from.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(deadline.into())).ok())
            .is_some_and(|until| until < now),
    }
}

/// When a rollout with `status` times out unless it progresses first: what the
/// controllers wait for without an event. `None` when it cannot time out (paused,
/// complete, already timed out, no deadline).
pub fn deadline(spec: &Spec, status: &Value) -> Option<Timestamp> {
    let (Some(deadline), Some(c)) = (spec.progress_deadline, get_condition(status, PROGRESSING)) else {
        return None;
    };
    if spec.paused || matches!(str_at(c, "/reason"), NEW_RS_AVAILABLE | TIMED_OUT) {
        return None;
    }
    parse_time(str_at(c, "/lastUpdateTime"))?
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(deadline.into()))
        .ok()
}

/// `syncRolloutStatus`: the `Progressing` condition of a rollout on top of `new`
/// (from [`calculate`]); `old` is the status the sync started from.
pub fn rollout(spec: &Spec, old: &Value, mut new: Value, new_rs: Option<&str>, now: Timestamp) -> Value {
    let Some(_) = spec.progress_deadline else {
        remove_condition(&mut new, PROGRESSING);
        return new;
    };
    let current = get_condition(old, PROGRESSING);
    let n = StatusCounts::of(&new);
    let is_complete = n.replicas == n.updated && current.is_some_and(|c| c["reason"] == NEW_RS_AVAILABLE);
    if is_complete {
        return new;
    }
    let subject = |what: &str| match new_rs {
        Some(rs) => format!("ReplicaSet \"{rs}\" {what}"),
        None => format!("Deployment {what}"),
    };
    if complete(spec, &new) {
        let message = subject("has successfully progressed.");
        set_condition(&mut new, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &message, now));
    } else if progressing(old, &new) {
        let mut c = condition(PROGRESSING, "True", RS_UPDATED, &subject("is progressing."), now);
        // Same reason, new lastUpdateTime: progress is noticed even without a transition.
        if let Some(current) = current {
            if current["status"] == "True" {
                c["lastTransitionTime"] = current["lastTransitionTime"].clone();
            }
            remove_condition(&mut new, PROGRESSING);
        }
        set_condition(&mut new, c);
    } else if timed_out(spec, &new, now) {
        let message = subject("has timed out progressing.");
        set_condition(&mut new, condition(PROGRESSING, "False", TIMED_OUT, &message, now));
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(replicas: i32, generation: i64) -> Spec {
        Spec::of(&json!({"metadata": {"generation": generation},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}))
        .unwrap()
    }

    fn counts(replicas: i32, ready: i32) -> Counts {
        Counts { replicas, fully_labeled: replicas, ready, available: ready, terminating: 0 }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn types(status: &Value) -> Vec<(String, String, String)> {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (str_at(c, "/type").into(), str_at(c, "/status").into(), str_at(c, "/reason").into()))
            .collect()
    }

    #[test]
    fn a_first_rollout_ends_available_then_progressing() {
        let s = spec(3, 1);
        let mut d = json!({});
        set_condition(&mut d, condition(PROGRESSING, "True", NEW_RS_CREATED, "Created new replica set \"w-1\"", at(0)));
        // Pods exist, none ready.
        let calc = calculate(&s, &d, &[(3, counts(3, 0))], Some(counts(3, 0)), at(1));
        let s1 = rollout(&s, &d, calc, Some("w-1"), at(1));
        assert_eq!(s1["unavailableReplicas"], 3);
        assert!(s1.get("availableReplicas").is_none(), "zeros are omitted: {s1}");
        assert_eq!(get_condition(&s1, PROGRESSING).unwrap()["message"], "ReplicaSet \"w-1\" is progressing.");
        assert_eq!(get_condition(&s1, PROGRESSING).unwrap()["lastTransitionTime"], stamp(at(0)));
        assert_eq!(get_condition(&s1, PROGRESSING).unwrap()["lastUpdateTime"], stamp(at(1)));
        // All ready.
        let calc = calculate(&s, &s1, &[(3, counts(3, 3))], Some(counts(3, 3)), at(2));
        let s2 = rollout(&s, &s1, calc, Some("w-1"), at(2));
        assert_eq!(
            types(&s2),
            [
                ("Available".into(), "True".into(), "MinimumReplicasAvailable".into()),
                ("Progressing".into(), "True".into(), "NewReplicaSetAvailable".into())
            ]
        );
        assert_eq!(
            get_condition(&s2, PROGRESSING).unwrap()["message"],
            "ReplicaSet \"w-1\" has successfully progressed."
        );
        assert!(complete(&s, &s2));
        // A resync changes nothing.
        let calc = calculate(&s, &s2, &[(3, counts(3, 3))], Some(counts(3, 3)), at(9));
        assert_eq!(rollout(&s, &s2, calc, Some("w-1"), at(9)), s2);
    }

    #[test]
    fn paused_and_resumed_are_unknown() {
        let mut paused = spec(2, 3);
        paused.paused = true;
        let mut status = json!({"conditions": [condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "x", at(0))]});
        check_paused(&paused, &mut status, at(5));
        let c = get_condition(&status, PROGRESSING).unwrap().clone();
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("Unknown"), Some("DeploymentPaused")));
        assert_eq!(c["message"], "Deployment is paused");
        assert_eq!(c["lastTransitionTime"], stamp(at(5)));
        check_paused(&paused, &mut status, at(6));
        assert_eq!(get_condition(&status, PROGRESSING).unwrap(), &c, "recorded once");
        check_paused(&spec(2, 3), &mut status, at(7));
        assert_eq!(get_condition(&status, PROGRESSING).unwrap()["reason"], "DeploymentResumed");
    }

    #[test]
    fn stalled_rollouts_time_out() {
        let s = spec(2, 1);
        let old = json!({"replicas": 2, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1, "conditions": [
            condition(PROGRESSING, "True", RS_UPDATED, "x", at(0))]});
        let calc = calculate(&s, &old, &[(1, counts(1, 1)), (1, counts(1, 0))], Some(counts(1, 0)), at(601));
        let new = rollout(&s, &old, calc, Some("w-2"), at(601));
        let c = get_condition(&new, PROGRESSING).unwrap();
        assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some(TIMED_OUT)));
        assert_eq!(c["message"], "ReplicaSet \"w-2\" has timed out progressing.");
        let calc = calculate(&s, &old, &[(1, counts(1, 1)), (1, counts(1, 0))], Some(counts(1, 0)), at(599));
        assert_eq!(
            get_condition(&rollout(&s, &old, calc, Some("w-2"), at(599)), PROGRESSING).unwrap()["reason"],
            RS_UPDATED
        );
        assert_eq!(deadline(&s, &old), Some(at(600)), "the controllers wake then");
        let done = json!({"conditions": [condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "x", at(0))]});
        assert_eq!(deadline(&s, &done), None);
        assert_eq!(deadline(&Spec { paused: true, ..s }, &old), None);
    }
}
