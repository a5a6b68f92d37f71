//! The arithmetic of a rollout, as kube-controller-manager's `deployment/util` does it:
//! maxSurge/maxUnavailable fenceposts, the size of a new ReplicaSet and proportional
//! scaling of a Deployment that is resized mid-rollout.

use serde_json::Value;

use super::{i32_at, str_at};

/// Annotation: the Deployment's replicas when a ReplicaSet was last scaled by it.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation: replicas + maxSurge when a ReplicaSet was last scaled by its Deployment.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("invalid value for {field}: {value} (an integer or a percentage like \"25%\")")]
    IntOrPercent { field: &'static str, value: String },
}

/// `intstr.GetScaledValueFromIntOrPercent`: an int as is, a percentage of `total`
/// rounded up or down.
pub fn scaled(field: &'static str, v: &Value, total: i32, round_up: bool) -> Result<i32, RolloutError> {
    let bad = || RolloutError::IntOrPercent { field, value: v.to_string() };
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(bad),
        Value::String(s) => {
            let percent: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let exact = percent * i64::from(total);
            let value = if round_up { (exact + 99).div_euclid(100) } else { exact.div_euclid(100) };
            i32::try_from(value).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// What a Deployment's spec says about its rollout, resolved for its replica count.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub replicas: i32,
    pub paused: bool,
    pub recreate: bool,
    /// `MaxSurge`: 0 for Recreate.
    pub max_surge: i32,
    /// `MaxUnavailable`: 0 for Recreate or no replicas, never more than replicas.
    pub max_unavailable: i32,
    pub min_ready_seconds: i32,
    /// Unset, or `MaxInt32`, means no deadline.
    pub progress_deadline: Option<i32>,
    pub revision_history_limit: Option<i32>,
    pub generation: i64,
}

impl Spec {
    pub fn of(d: &Value) -> Result<Self, RolloutError> {
        let replicas = d.pointer("/spec/replicas").and_then(Value::as_i64).map_or(1, |n| n.clamp(0, 1 << 30) as i32);
        let recreate = str_at(d, "/spec/strategy/type") == "Recreate";
        let (mut max_surge, mut max_unavailable) = (0, 0);
        if !recreate {
            let rolling = d.pointer("/spec/strategy/rollingUpdate").cloned().unwrap_or(Value::Null);
            let surge = scaled("maxSurge", rolling.get("maxSurge").unwrap_or(&Value::Null), replicas, true)?;
            let mut unavailable =
                scaled("maxUnavailable", rolling.get("maxUnavailable").unwrap_or(&Value::Null), replicas, false)?;
            // Both may round to zero; kube-controller-manager then lets one pod go.
            if surge == 0 && unavailable == 0 {
                unavailable = 1;
            }
            max_surge = surge;
            if replicas > 0 {
                max_unavailable = unavailable.min(replicas);
            }
        }
        let deadline = d.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64);
        Ok(Self {
            replicas,
            paused: d.pointer("/spec/paused") == Some(&Value::Bool(true)),
            recreate,
            max_surge,
            max_unavailable,
            min_ready_seconds: i32_at(d, "/spec/minReadySeconds"),
            progress_deadline: deadline
                .filter(|&s| s != i64::from(i32::MAX))
                .map(|s| s.clamp(0, i32::MAX.into()) as i32),
            revision_history_limit: d
                .pointer("/spec/revisionHistoryLimit")
                .map(|_| i32_at(d, "/spec/revisionHistoryLimit")),
            generation: d.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
        })
    }

    /// `NewRSNewReplicas`: the size the new ReplicaSet may grow to now, given the sum
    /// of every ReplicaSet's `spec.replicas` (the new one's included).
    pub fn new_rs_replicas(&self, all_spec: i32, new_spec: i32) -> i32 {
        if self.recreate {
            return self.replicas;
        }
        let max_total = self.replicas + self.max_surge;
        if all_spec >= max_total {
            return new_spec;
        }
        new_spec + (max_total - all_spec).min(self.replicas - new_spec)
    }

    /// `replicas - maxUnavailable`: the floor of available pods during a rollout.
    pub fn min_available(&self) -> i32 {
        self.replicas - self.max_unavailable
    }
}

/// `GetProportion`: how many of `to_add` (negative: to remove) go to a ReplicaSet of
/// `rs_spec` replicas, given what it was sized for (`max-replicas` annotation).
pub fn proportion(
    spec: &Spec,
    rs_spec: i32,
    annotated_max: Option<i32>,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    if rs_spec == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if spec.replicas == 0 {
        -rs_spec
    } else {
        let before = annotated_max.filter(|&m| m != 0).unwrap_or(status_replicas);
        if before == 0 {
            0
        } else {
            let size = f64::from(rs_spec) * f64::from(spec.replicas + spec.max_surge) / f64::from(before);
            size.round() as i32 - rs_spec
        }
    };
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

/// A ReplicaSet as proportional scaling sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sized {
    pub spec: i32,
    pub max_annotation: Option<i32>,
    /// Creation timestamp and name: older sorts first.
    pub age: (String, String),
}

/// The proportional part of `DeploymentController.scale`: new sizes of the active
/// ReplicaSets (in the order given) so they sum to replicas + maxSurge.
pub fn proportional(spec: &Spec, active: &[Sized], status_replicas: i32) -> Vec<i32> {
    let current: i32 = active.iter().map(|r| r.spec).sum();
    let allowed = if spec.replicas > 0 { spec.replicas + spec.max_surge } else { 0 };
    let to_add = allowed - current;
    let mut order: Vec<usize> = (0..active.len()).collect();
    // Scaling up: the largest first, newer on ties; down: the largest first, older on ties.
    order.sort_by(|&a, &b| {
        let (ra, rb) = (&active[a], &active[b]);
        rb.spec.cmp(&ra.spec).then_with(|| if to_add > 0 { rb.age.cmp(&ra.age) } else { ra.age.cmp(&rb.age) })
    });
    let mut sizes: Vec<i32> = active.iter().map(|r| r.spec).collect();
    if to_add == 0 {
        return sizes;
    }
    let mut added = 0;
    for &i in &order {
        let p = proportion(spec, active[i].spec, active[i].max_annotation, status_replicas, to_add, added);
        sizes[i] += p;
        added += p;
    }
    if let Some(&first) = order.first() {
        sizes[first] = (sizes[first] + to_add - added).max(0);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_of(replicas: i32, surge: Value, unavailable: Value) -> Spec {
        Spec::of(&json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        for (replicas, surge, unavailable, want) in [
            (4, json!("25%"), json!("25%"), (1, 1)),
            (3, json!("25%"), json!("25%"), (1, 0)),
            (4, json!("30%"), json!("30%"), (2, 1)),
            (10, json!(3), json!("0%"), (3, 0)),
            (10, json!(0), json!(0), (0, 1)),
            (1, json!("0%"), json!("10%"), (0, 1)),
            (2, json!(0), json!(5), (0, 2)),
            (0, json!(1), json!(1), (1, 0)),
        ] {
            let s = spec_of(replicas, surge.clone(), unavailable.clone());
            assert_eq!((s.max_surge, s.max_unavailable), want, "{replicas} {surge} {unavailable}");
        }
        let recreate = Spec::of(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}})).unwrap();
        assert_eq!((recreate.max_surge, recreate.max_unavailable), (0, 0));
        assert!(Spec::of(&json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "x"}}}})).is_err());
        assert!(Spec::of(&json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "5"}}}})).is_err());
    }

    #[test]
    fn defaults_and_deadlines() {
        let s = Spec::of(&json!({"metadata": {"generation": 4}, "spec": {"progressDeadlineSeconds": 600}})).unwrap();
        assert_eq!((s.replicas, s.generation, s.progress_deadline, s.paused), (1, 4, Some(600), false));
        let none = Spec::of(&json!({"spec": {"progressDeadlineSeconds": i32::MAX, "paused": true}})).unwrap();
        assert_eq!((none.progress_deadline, none.paused), (None, true));
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        let s = spec_of(4, json!(2), json!(1));
        // (all spec incl. new, new spec) -> new size
        for (all, new, want) in [(4, 0, 2), (5, 1, 2), (6, 2, 2), (7, 2, 2), (3, 2, 4), (4, 4, 4), (0, 0, 4)] {
            assert_eq!(s.new_rs_replicas(all, new), want, "all {all} new {new}");
        }
        let recreate = Spec::of(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}})).unwrap();
        assert_eq!(recreate.new_rs_replicas(9, 0), 3);
    }

    fn sized(spec: i32, max: Option<i32>, created: &str) -> Sized {
        Sized { spec, max_annotation: max, age: (created.into(), "rs".into()) }
    }

    #[test]
    fn proportional_scaling_keeps_the_ratio_and_the_total() {
        // 10 replicas, surge 3 mid-rollout: old 8 + new 5 = 13; scaled to 20 (+3 surge = 23).
        let s = spec_of(20, json!(3), json!(2));
        let rs = [sized(8, Some(13), "1"), sized(5, Some(13), "2")];
        let sizes = proportional(&s, &rs, 13);
        assert_eq!(sizes.iter().sum::<i32>(), 23);
        assert_eq!(sizes, [14, 9]);
        // Scaled down to 5 (+1 surge = 6).
        let s = spec_of(5, json!(1), json!(0));
        let sizes = proportional(&s, &rs, 13);
        assert_eq!(sizes.iter().sum::<i32>(), 6);
        assert_eq!(sizes, [4, 2]);
        // Scaled to zero: everything goes.
        let s = spec_of(0, json!(1), json!(0));
        assert_eq!(proportional(&s, &rs, 13), [0, 0]);
        // Without annotations nor status there is no ratio: the largest takes it all.
        let s = spec_of(20, json!(3), json!(2));
        assert_eq!(proportional(&s, &[sized(8, None, "1"), sized(5, None, "2")], 0), [18, 5]);
    }
}
