//! Annotation mode: every Deployment opted in with `apisix-canary.dev/route` gets a
//! Canary of its name, owned by it, whose spec mirrors the annotations (the release
//! itself reads the annotations, so stored invalid settings are caught, never mirrored).
//! Canary mode: the user's Canary named in `apisix-canary.dev/canary` is used as written.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::cached::Meta;
use super::{Context, Error, MANAGER};
use crate::api::annotations::{self, CANARY, PREFIX, ROUTE};
use crate::api::canary::v1beta1::{Analysis, Canary, CanarySpec, Metric, ThresholdRange};
use crate::api::canary::{ObjectRef as Ref, Phase, REQUEST_DURATION, REQUEST_SUCCESS_RATE};
use crate::api::duration;
use crate::release::copies::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::release::plan::{Compare, MetricScope, MetricSource, NoData, OptIn, Plan};

/// Whether the controller made this Canary from a Deployment's annotations.
pub fn annotation_mode(c: &Canary) -> bool {
    c.labels().get(MANAGED_BY_LABEL).is_some_and(|v| v == MANAGED_BY)
}

/// The Canary a Deployment's change concerns: its own (annotation mode or a lock left
/// behind), or the one its `canary` annotation names.
pub fn canary_of_deployment(d: &Meta<Deployment>) -> Option<ObjectRef<Meta<Canary>>> {
    let ns = d.namespace()?;
    let a = d.annotations();
    let name = match a.get(CANARY) {
        Some(name) => name.clone(),
        // A canary copy carries only its `copy-of-revision`: its Canary owns it already.
        None if a.keys().any(|k| k.starts_with(PREFIX) && k != super::observe::COPY_OF) => d.name_any(),
        None => return None,
    };
    Some(ObjectRef::new(&name).within(&ns))
}

/// Keeps the Canary of an annotation-mode Deployment.
pub async fn reconcile_deployment(d: Arc<Meta<Deployment>>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let Some(fence) = ctx.leader.fence() else {
        return Ok(Requeue::requeue(Duration::from_secs(2)));
    };
    // Checked again right before each write: the read below may outlast the term.
    let fenced = || if fence.holds() { Ok(()) } else { Err(Error::Fenced) };
    let (Some(ns), name) = (d.namespace(), d.name_any()) else { return Ok(Requeue::await_change()) };
    if ctx.config.excluded_namespaces.contains(&ns) {
        tracing::debug!(deployment = %format!("{name}.{ns}"), "opted in where our webhooks never look; no Canary");
        return Ok(Requeue::await_change());
    }
    let canaries: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = canaries.get_opt(&name).await.map_err(Error::kube(format!("reading Canary {ns}/{name}")))?;
    let ours = existing.as_ref().filter(|c| annotation_mode(c) && owned_by(c, &d));
    let inline = d.annotations().contains_key(ROUTE) && !d.annotations().contains_key(CANARY);
    if !inline || !annotations::opted_in(d.annotations()) {
        // Opted out: the Canary goes once no release runs (the release loop ends one first).
        if let Some(c) = ours {
            let busy = matches!(
                c.status.as_ref().and_then(|s| s.phase),
                Some(Phase::Progressing | Phase::Promoting | Phase::Finalising | Phase::WaitingPromotion)
            );
            if busy {
                return Ok(Requeue::requeue(Duration::from_secs(2)));
            }
            fenced()?;
            let _ = canaries.delete(&name, &DeleteParams::background()).await;
        }
        return Ok(Requeue::await_change());
    }
    let spec = mirror(&d);
    match existing {
        Some(c) if !annotation_mode(&c) => {
            tracing::warn!(deployment = %format!("{name}.{ns}"), "a Canary of this name exists and is not ours; leaving it");
        }
        Some(c) if c.spec == spec => {}
        Some(_) => {
            let mut patch = serde_json::json!({"spec": spec});
            // A merge patch removes only what it says null: a resumed release.
            if spec.suspend.is_none() {
                patch["spec"]["suspend"] = serde_json::Value::Null;
            }
            fenced()?;
            let params = PatchParams { field_manager: Some(MANAGER.to_owned()), ..PatchParams::default() };
            canaries
                .patch(&name, &params, &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(format!("updating Canary {ns}/{name}")))?;
        }
        None => {
            let canary = Canary {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())].into()),
                    // The Deployment controls it: deleting one goes to the other.
                    owner_references: d.controller_owner_ref(&()).map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec,
                status: None,
            };
            let params = PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() };
            fenced()?;
            canaries.create(&params, &canary).await.map_err(Error::kube(format!("creating Canary {ns}/{name}")))?;
            tracing::info!(canary = %format!("{name}.{ns}"), msg = "Canary created from the annotations", "Canary created from the annotations");
        }
    }
    Ok(Requeue::await_change())
}

pub fn error_policy(d: Arc<Meta<Deployment>>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(deployment = %d.name_any(), error = %error, "keeping the Canary failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}

fn owned_by(c: &Canary, d: &Meta<Deployment>) -> bool {
    c.owner_references().iter().any(|o| Some(&o.uid) == d.metadata.uid.as_ref())
}

/// The Canary spec the annotations say, for `kubectl get canaries` to show; when they
/// do not parse, only the target and the route (the release reports the errors).
fn mirror(d: &Meta<Deployment>) -> CanarySpec {
    let name = d.name_any();
    let route = d.annotations().get(ROUTE).cloned().unwrap_or_default();
    let mut spec = CanarySpec {
        target_ref: Ref { api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.clone() },
        route_ref: Some(Ref {
            api_version: crate::api::apisix_route::API_VERSION.into(),
            kind: crate::api::apisix_route::KIND.into(),
            name: route,
        }),
        ..CanarySpec::default()
    };
    if let Ok((OptIn::Inline(plan), _)) = Plan::from_annotations(&name, d.annotations()) {
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

    fn deployment(name: &str, annotations: &[(&str, &str)]) -> Meta<Deployment> {
        Meta::new(ObjectMeta {
            name: Some(name.into()),
            namespace: Some("test".into()),
            annotations: Some(annotations.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            ..ObjectMeta::default()
        })
    }

    #[test]
    fn a_deployment_maps_to_its_canary_and_a_canary_copy_to_none() {
        let opted = deployment("podinfo", &[(crate::api::annotations::ROUTE, "podinfo")]);
        assert_eq!(canary_of_deployment(&opted).map(|r| r.name), Some("podinfo".to_owned()));
        let named = deployment("podinfo", &[(CANARY, "web")]);
        assert_eq!(canary_of_deployment(&named).map(|r| r.name), Some("web".to_owned()));
        // Its Canary owns the copy: mapping it by name would ask for `podinfo-canary`.
        let copy = deployment("podinfo-canary", &[(super::super::observe::COPY_OF, "5f7d9c8b6a")]);
        assert_eq!(canary_of_deployment(&copy), None);
        assert_eq!(canary_of_deployment(&deployment("other", &[("team", "a")])), None);
    }
}
