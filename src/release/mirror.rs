//! Annotation mode, decided: every Deployment opted in with `apisix-canary.dev/route`
//! gets a Canary of its name, owned by it, whose spec mirrors the annotations (the
//! release itself reads the annotations, so stored invalid settings are caught, never
//! mirrored); when the Deployment opts out, its Canary goes once no release runs. The
//! controller's `canaries` loop carries out what [`keep`] says.

use std::collections::BTreeMap;

use super::lifecycle::holds_release;
use super::plan::{Compare, MetricScope, MetricSource, NoData, OptIn, Plan};
use crate::api::annotations::{self, CANARY, ROUTE};
use crate::api::canary::v1beta1::{Analysis, Canary, CanarySpec, Metric, ThresholdRange};
use crate::api::canary::{ObjectRef as Ref, REQUEST_DURATION, REQUEST_SUCCESS_RATE};
use crate::api::duration;

/// What becomes of the Canary of an annotation-mode Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Keep {
    /// Nothing to do.
    Nothing,
    /// Make it with this spec.
    Create(CanarySpec),
    /// Its spec no longer mirrors the annotations.
    Update(CanarySpec),
    /// The Deployment opted out: the Canary goes.
    Delete,
    /// Opted out while a release runs: the release loop ends it first; look again.
    Wait,
    /// A Canary of this name exists and is not ours: left alone.
    Foreign,
}

/// What to do for the Deployment `name` with these `annotations`, given the Canary of
/// its name (`existing`, `ours` when it was made from these annotations and is owned by
/// this Deployment).
pub fn keep(name: &str, annotations: &BTreeMap<String, String>, existing: Option<&Canary>, ours: bool) -> Keep {
    let inline = annotations.contains_key(ROUTE) && !annotations.contains_key(CANARY);
    if !inline || !annotations::opted_in(annotations) {
        return match existing.filter(|_| ours) {
            Some(c) if holds_release(c.status.as_ref().and_then(|s| s.phase)) => Keep::Wait,
            Some(_) => Keep::Delete,
            None => Keep::Nothing,
        };
    }
    let spec = mirror(name, annotations);
    match existing {
        None => Keep::Create(spec),
        Some(c) if !super::observe::annotation_mode(c) => Keep::Foreign,
        Some(c) if c.spec == spec => Keep::Nothing,
        Some(_) => Keep::Update(spec),
    }
}

/// The Canary spec the annotations say, for `kubectl get canaries` to show; when they
/// do not parse, only the target and the route (the release reports the errors).
pub fn mirror(name: &str, annotations: &BTreeMap<String, String>) -> CanarySpec {
    let route = annotations.get(ROUTE).cloned().unwrap_or_default();
    let mut spec = CanarySpec {
        target_ref: Ref { api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.to_owned() },
        route_ref: Some(Ref {
            api_version: crate::api::apisix_route::API_VERSION.into(),
            kind: crate::api::apisix_route::KIND.into(),
            name: route,
        }),
        ..CanarySpec::default()
    };
    if let Ok((OptIn::Inline(plan), _)) = Plan::from_annotations(name, annotations) {
        spec.analysis = analysis(&plan);
        spec.progress_deadline_seconds = i32::try_from(plan.progress_deadline.as_secs()).ok();
        spec.skip_analysis = plan.skip_analysis.then_some(true);
        spec.suspend = plan.suspend.then_some(true);
    }
    spec
}

fn analysis(plan: &Plan) -> Analysis {
    let metrics = plan
        .metrics
        .iter()
        .filter_map(|m| {
            let name = match m.source {
                MetricSource::RequestSuccessRate => REQUEST_SUCCESS_RATE,
                MetricSource::RequestDuration => REQUEST_DURATION,
                MetricSource::Template { .. } | MetricSource::Query { .. } => return None,
            };
            Some(Metric {
                name: name.to_owned(),
                threshold_range: Some(ThresholdRange { min: m.min, max: m.max }),
                interval: Some(duration::Display(m.interval).to_string()),
                scope: (m.scope != MetricScope::Canary).then(|| m.scope.as_str().to_owned()),
                on_no_data: (m.on_no_data != NoData::default()).then(|| m.on_no_data.as_str().to_owned()),
                compare: m.baseline.map(|_| Compare::Baseline.as_str().to_owned()),
                max_delta: m.baseline,
                min_requests: (m.min_requests > 0).then(|| i64::try_from(m.min_requests).unwrap_or(i64::MAX)),
                ..Metric::default()
            })
        })
        .collect();
    Analysis {
        interval: Some(duration::Display(plan.interval).to_string()),
        threshold: i32::try_from(plan.threshold).ok(),
        max_weight: i32::try_from(plan.max_weight).ok(),
        step_weights: Some(plan.steps.iter().filter_map(|w| i32::try_from(*w).ok()).collect()),
        step_weight_promotion: plan.step_weight_promotion.and_then(|w| i32::try_from(w).ok()),
        metrics,
        ..Analysis::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations::{MAX_WEIGHT, SUSPEND};
    use crate::api::canary::{CanaryStatus, Phase};

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn canary(spec: CanarySpec, from_annotations: bool, phase: Option<Phase>) -> Canary {
        let mut c = Canary::new("podinfo", spec);
        if from_annotations {
            c.metadata.labels =
                Some(ann(&[(crate::release::copies::MANAGED_BY_LABEL, crate::release::copies::MANAGED_BY)]));
        }
        c.status = Some(CanaryStatus { phase, ..CanaryStatus::default() });
        c
    }

    #[test]
    fn the_canary_mirrors_the_annotations_and_goes_with_them() {
        let opted = ann(&[(ROUTE, "podinfo"), (MAX_WEIGHT, "30")]);
        let spec = mirror("podinfo", &opted);
        assert_eq!(spec.analysis.max_weight, Some(30));
        assert_eq!(keep("podinfo", &opted, None, false), Keep::Create(spec.clone()));
        let ours = canary(spec.clone(), true, Some(Phase::Succeeded));
        assert_eq!(keep("podinfo", &opted, Some(&ours), true), Keep::Nothing);
        let suspended = ann(&[(ROUTE, "podinfo"), (MAX_WEIGHT, "30"), (SUSPEND, "true")]);
        assert!(matches!(keep("podinfo", &suspended, Some(&ours), true), Keep::Update(s) if s.suspend == Some(true)));
        // Somebody's own Canary of that name is left alone.
        let theirs = canary(spec, false, None);
        assert_eq!(keep("podinfo", &opted, Some(&theirs), false), Keep::Foreign);
    }

    #[test]
    fn opting_out_deletes_the_canary_once_no_release_holds_it() {
        let out = ann(&[("team", "a")]);
        let spec = mirror("podinfo", &ann(&[(ROUTE, "podinfo")]));
        for (phase, want) in [
            (Some(Phase::Succeeded), Keep::Delete),
            (Some(Phase::Failed), Keep::Delete),
            (None, Keep::Delete),
            (Some(Phase::Progressing), Keep::Wait),
            (Some(Phase::WaitingPromotion), Keep::Wait),
            (Some(Phase::Promoting), Keep::Wait),
            (Some(Phase::Finalising), Keep::Wait),
            // Held at its confirm-rollout gate: a release holds the Deployment too.
            (Some(Phase::Waiting), Keep::Wait),
        ] {
            assert_eq!(keep("podinfo", &out, Some(&canary(spec.clone(), true, phase)), true), want, "{phase:?}");
        }
        // Switched to Canary mode: the annotation-mode Canary goes as well.
        let switched = ann(&[(CANARY, "web")]);
        assert_eq!(keep("podinfo", &switched, Some(&canary(spec.clone(), true, None)), true), Keep::Delete);
        // Not ours to delete.
        assert_eq!(keep("podinfo", &out, Some(&canary(spec, false, None)), false), Keep::Nothing);
    }
}
