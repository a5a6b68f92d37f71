//! Annotation mode, decided: every Deployment opted in with `apisix-canary.dev/route`
//! gets a Canary of its name, owned by it, whose spec mirrors the annotations (the
//! release itself reads the annotations, so stored invalid settings are caught, never
//! mirrored); when the Deployment opts out, its Canary goes once no release runs. The
//! controller's `canaries` loop carries out what [`keep`] says.
//!
//! A mirror carries the label `app.kubernetes.io/managed-by: apisix-canary` and, in the
//! annotation [`MIRROR_DIGEST`], the digest of the spec the controller wrote. Only a
//! Canary with both, owned by the Deployment, is the controller's to rewrite or delete:
//! one whose spec someone else changed is theirs, left alone. The Canary webhook refuses
//! such a change in the first place (`admission::canary`), saying how to switch modes.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use super::copies::{MANAGED_BY, MANAGED_BY_LABEL};
use super::lifecycle::holds_release;
use super::plan::{Compare, Judge, MetricScope, MetricSource, NoData, OptIn, Plan};
use crate::api::annotations::{self, CANARY, MIRROR_DIGEST, ROUTE};
use crate::api::canary::v1beta1::{Analysis, Canary, CanarySpec, Metric, ThresholdRange};
use crate::api::canary::{ObjectRef as Ref, REQUEST_DURATION, REQUEST_SUCCESS_RATE};
use crate::api::duration;

/// How a Canary stands to annotation mode, read from its marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No mirror label: the user's (Canary mode).
    User,
    /// Labelled, with the digest of its spec: as the controller wrote it.
    Mirror,
    /// Labelled, with no digest: made before mirrors carried one.
    Unstamped,
    /// Labelled, with the digest of another spec: changed by someone else since.
    Changed,
}

/// Where `c` came from.
pub fn origin(c: &Canary) -> Origin {
    if c.labels().get(MANAGED_BY_LABEL).is_none_or(|v| v != MANAGED_BY) {
        return Origin::User;
    }
    match c.annotations().get(MIRROR_DIGEST) {
        None => Origin::Unstamped,
        Some(d) if *d == digest(&c.spec) => Origin::Mirror,
        Some(_) => Origin::Changed,
    }
}

/// The digest of a spec: SHA-256 of its JSON (keys sorted, as `serde_json::Value` keeps
/// them), 16 hex characters. Typed, so a number the API server rewrote (`99.0` as `99`)
/// or a field's order makes no difference.
pub fn digest(spec: &CanarySpec) -> String {
    let json = serde_json::to_value(spec).map(|v| v.to_string()).unwrap_or_default();
    Sha256::digest(json.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Marks `meta` as the mirror with `spec`: the label and the digest.
pub fn stamp(meta: &mut ObjectMeta, spec: &CanarySpec) {
    meta.labels.get_or_insert_default().insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    meta.annotations.get_or_insert_default().insert(MIRROR_DIGEST.to_owned(), digest(spec));
}

/// What becomes of the Canary of an annotation-mode Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Keep {
    /// Nothing to do.
    Nothing,
    /// Make it with this spec.
    Create(CanarySpec),
    /// Write this spec (and its digest): it no longer mirrors the annotations, or it
    /// has no digest yet.
    Update(CanarySpec),
    /// The Deployment opted out: the Canary goes.
    Delete,
    /// Opted out while a release runs: the release loop ends it first; look again.
    Wait,
    /// A Canary of this name exists and is not ours (the user's, or a mirror someone
    /// else changed, or another Deployment's): left alone.
    Foreign,
}

/// What to do for the Deployment `name` with these `annotations`, given the Canary of
/// its name (`existing`, `owned` when this Deployment is its controller). Only a
/// [`Origin::Mirror`] it owns is the controller's to rewrite or delete; any other is left
/// alone, whatever the annotations say.
pub fn keep(name: &str, annotations: &BTreeMap<String, String>, existing: Option<&Canary>, owned: bool) -> Keep {
    let ours = existing.is_some_and(|c| owned && origin(c) == Origin::Mirror);
    let inline = annotations.contains_key(ROUTE) && !annotations.contains_key(CANARY);
    if !inline || !annotations::opted_in(annotations) {
        return match existing.filter(|_| ours) {
            Some(c) if holds_release(c.status.as_ref().and_then(|s| s.phase)) => Keep::Wait,
            // Deleted already, its finalizer at work.
            Some(c) if c.metadata.deletion_timestamp.is_some() => Keep::Nothing,
            Some(_) => Keep::Delete,
            None => Keep::Nothing,
        };
    }
    let spec = mirror(name, annotations);
    match existing {
        None => Keep::Create(spec),
        // Made before mirrors carried a digest and still exactly the mirror: stamped.
        Some(c) if owned && origin(c) == Origin::Unstamped && c.spec == spec => Keep::Update(spec),
        Some(_) if !ours => Keep::Foreign,
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
        // Left out for the default judge: every mirror written before judges existed
        // stays as it is.
        judge: (plan.judge != Judge::Interval).then(|| plan.judge.name().to_owned()),
        confidence: match plan.judge {
            Judge::Sequential { confidence } => Some(confidence),
            Judge::Interval => None,
        },
        ..Analysis::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::annotations::{MAX_WEIGHT, MIN_SUCCESS_RATE, SUSPEND};
    use crate::api::canary::{CanaryStatus, Phase};

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// A Canary with `spec`; `from_annotations`: stamped as the mirror of that spec.
    fn canary(spec: CanarySpec, from_annotations: bool, phase: Option<Phase>) -> Canary {
        let mut c = Canary::new("podinfo", spec);
        if from_annotations {
            stamp(&mut c.metadata, &c.spec.clone());
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
        assert_eq!(origin(&ours), Origin::Mirror);
        assert_eq!(keep("podinfo", &opted, Some(&ours), true), Keep::Nothing);
        let suspended = ann(&[(ROUTE, "podinfo"), (MAX_WEIGHT, "30"), (SUSPEND, "true")]);
        assert!(matches!(keep("podinfo", &suspended, Some(&ours), true), Keep::Update(s) if s.suspend == Some(true)));
        // Somebody's own Canary of that name is left alone.
        let theirs = canary(spec.clone(), false, None);
        assert_eq!(origin(&theirs), Origin::User);
        assert_eq!(keep("podinfo", &opted, Some(&theirs), false), Keep::Foreign);
        assert_eq!(keep("podinfo", &opted, Some(&theirs), true), Keep::Foreign, "owned, but not a mirror");
        // A mirror another Deployment of that name owned (deleted, made again): not ours.
        assert_eq!(keep("podinfo", &opted, Some(&ours), false), Keep::Foreign);
    }

    /// The mirror says the judge the release runs, and reads back as the same judge.
    #[test]
    fn the_mirror_writes_the_judge_of_the_annotations() {
        use crate::api::annotations::{CONFIDENCE, JUDGE};
        let cases = [
            (vec![(JUDGE, "sequential"), (CONFIDENCE, "99.9")], Some("sequential"), Some(99.9)),
            (vec![(JUDGE, "sequential")], Some("sequential"), Some(99.0)),
            // The default judge is left out, as mirrors were written before it existed;
            // a confidence it does not read too.
            (vec![(JUDGE, "interval"), (CONFIDENCE, "95")], None, None),
            (vec![], None, None),
        ];
        for (settings, judge, confidence) in cases {
            let annotations = ann(&[&[(ROUTE, "podinfo")], settings.as_slice()].concat());
            let spec = mirror("podinfo", &annotations);
            assert_eq!((spec.analysis.judge.as_deref(), spec.analysis.confidence), (judge, confidence), "{settings:?}");
            let Ok((OptIn::Inline(inline), _)) = Plan::from_annotations("podinfo", &annotations) else {
                panic!("{settings:?}")
            };
            let (from_mirror, _) = Plan::from_canary(&spec).unwrap();
            assert_eq!(from_mirror.judge, inline.judge, "{settings:?}");
        }
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
        // Deleted, its finalizer not done yet: not deleted again.
        let mut going = canary(spec.clone(), true, Some(Phase::Succeeded));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(keep("podinfo", &out, Some(&going), true), Keep::Nothing);
        // Switched to Canary mode: the annotation-mode Canary goes as well.
        let switched = ann(&[(CANARY, "web")]);
        assert_eq!(keep("podinfo", &switched, Some(&canary(spec.clone(), true, None)), true), Keep::Delete);
        // Not ours to delete.
        assert_eq!(keep("podinfo", &out, Some(&canary(spec, false, None)), false), Keep::Nothing);
    }

    /// The switch gone wrong: the user's Canary merged into the mirror (kubectl
    /// apply keeps the label it does not know of), then the annotations removed. A
    /// Canary whose spec is not the one the controller wrote is never rewritten or
    /// deleted, in any phase, owned or not, opted in or out.
    #[test]
    fn a_mirror_someone_else_changed_is_never_rewritten_or_deleted() {
        let opted = ann(&[(ROUTE, "podinfo"), (MAX_WEIGHT, "30")]);
        let mut changed = canary(mirror("podinfo", &opted), true, None);
        changed.spec.analysis.step_weight = Some(10);
        changed.spec.analysis.max_weight = Some(50);
        assert_eq!(origin(&changed), Origin::Changed);
        // Only the digest written, not the spec: as foreign as a spec changed under it.
        let mut restamped = canary(mirror("podinfo", &opted), true, None);
        restamped.annotations_mut().insert(MIRROR_DIGEST.to_owned(), "0123456789abcdef".to_owned());
        assert_eq!(origin(&restamped), Origin::Changed);
        let cases = [
            ("opted in", opted.clone(), Keep::Foreign),
            ("opted out", ann(&[("team", "a")]), Keep::Nothing),
            ("switched to Canary mode", ann(&[(CANARY, "podinfo")]), Keep::Nothing),
            ("route and canary both", ann(&[(ROUTE, "podinfo"), (CANARY, "podinfo")]), Keep::Nothing),
        ];
        for c in [&changed, &restamped] {
            for phase in [None, Some(Phase::Initialized), Some(Phase::Progressing), Some(Phase::Failed)] {
                let c = Canary { status: Some(CanaryStatus { phase, ..CanaryStatus::default() }), ..c.clone() };
                for (what, annotations, want) in &cases {
                    for owned in [true, false] {
                        assert_eq!(keep("podinfo", annotations, Some(&c), owned), *want, "{what} {phase:?} {owned}");
                    }
                }
            }
        }
    }

    /// A mirror made before mirrors carried a digest is stamped while it is exactly the
    /// mirror, and otherwise left alone: its spec may be someone's.
    #[test]
    fn a_mirror_without_a_digest_is_stamped_only_when_unchanged() {
        let opted = ann(&[(ROUTE, "podinfo"), (MAX_WEIGHT, "30")]);
        let spec = mirror("podinfo", &opted);
        let mut old = Canary::new("podinfo", spec.clone());
        old.labels_mut().insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
        assert_eq!(origin(&old), Origin::Unstamped);
        assert_eq!(keep("podinfo", &opted, Some(&old), true), Keep::Update(spec));
        assert_eq!(keep("podinfo", &opted, Some(&old), false), Keep::Foreign);
        let mut merged = old.clone();
        merged.spec.analysis.step_weight = Some(10);
        assert_eq!(keep("podinfo", &opted, Some(&merged), true), Keep::Foreign);
        assert_eq!(keep("podinfo", &ann(&[("team", "a")]), Some(&old), true), Keep::Nothing);
    }

    /// The webhook checks the digest on the object the API server hands it: the JSON it
    /// stored (Go writes `99.0` as `99`), or the v1alpha1 form of it.
    #[test]
    fn the_digest_survives_the_api_servers_json_and_conversion() {
        let opted = ann(&[(ROUTE, "podinfo"), (MAX_WEIGHT, "30"), (MIN_SUCCESS_RATE, "99"), (SUSPEND, "true")]);
        let mut c = canary(mirror("podinfo", &opted), true, None);
        c.metadata.namespace = Some("test".into());
        let stored = serde_json::to_string(&c).unwrap().replace("99.0", "99");
        let read: Canary = serde_json::from_str(&stored).unwrap();
        assert_eq!(origin(&read), Origin::Mirror, "{stored}");
        let alpha = crate::api::canary::convert::to_v1alpha1(&c).unwrap();
        let back = crate::api::canary::convert::to_v1beta1(&alpha).unwrap();
        assert_eq!(origin(&back), Origin::Mirror);
        assert_ne!(digest(&c.spec), digest(&mirror("podinfo", &ann(&[(ROUTE, "podinfo")]))));
    }
}
