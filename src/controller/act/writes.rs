//! The writes of a release's actions, one method each: every one preconditioned where
//! a stale decision could overwrite a newer one, and under our field managers.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::{COPY_OF, Error, MANAGER, Run, ignore_gone, params, tick_key};
use crate::api::apisix_route::ApisixRoute;
use crate::release::lock::Lock;
use crate::release::{claim, copies};
use crate::route;

impl Run<'_> {
    /// Opts the target in for this Canary: its `canary` annotation, by server-side apply
    /// under the claim's own field manager (forced: a stale opt-in naming a Canary that
    /// is gone is taken over).
    pub(super) async fn claim(&mut self) -> Result<(), Error> {
        let Some(target) = &self.objects.target else { return Err(Error::Invalid("the target is gone".into())) };
        let name = target.name_any();
        let body = claim::claim(self.ns(), &name, &self.canary.name_any());
        let deployments: Api<Deployment> = self.api();
        let written = deployments
            .patch(&name, &PatchParams::apply(claim::FIELD_MANAGER).force(), &Patch::Apply(&body))
            .await
            .map_err(Error::kube(format!("opting Deployment {}/{name} in", self.ns())))?;
        self.objects.target = Some(written);
        Ok(())
    }

    /// Gives the claim on the target up (the Canary is going): an empty apply under the
    /// claim's field manager removes the opt-in, unless someone else wrote it too.
    pub(super) async fn unclaim(&mut self) -> Result<(), Error> {
        let Some(target) = &self.objects.target else { return Ok(()) };
        let name = target.name_any();
        let deployments: Api<Deployment> = self.api();
        let body = claim::release(self.ns(), &name);
        deployments
            .patch(&name, &PatchParams::apply(claim::FIELD_MANAGER), &Patch::Apply(&body))
            .await
            .map_err(Error::kube(format!("giving up the opt-in of Deployment {}/{name}", self.ns())))?;
        Ok(())
    }

    /// The apex Service this Canary generated outlives it: the user's route still sends
    /// to it. Our owner reference goes, so the garbage collector leaves it.
    pub(super) async fn keep_apex(&mut self) -> Result<(), Error> {
        let uid = self.canary.metadata.uid.clone().unwrap_or_default();
        let Some(svc) = &self.objects.service else { return Ok(()) };
        let owners = svc.metadata.owner_references.clone().unwrap_or_default();
        if !owners.iter().any(|o| o.uid == uid) {
            return Ok(());
        }
        let rest: Vec<_> = owners.into_iter().filter(|o| o.uid != uid).collect();
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": if rest.is_empty() { serde_json::Value::Null } else { serde_json::json!(rest) },
            "resourceVersion": svc.resource_version(),
        }});
        let name = svc.name_any();
        let services: Api<Service> = self.api();
        services
            .patch(&name, &params(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("keeping Service {}/{name}", self.ns())))?;
        let message = format!(
            "Service {name}.{} kept: the route still sends to it; it is no longer owned by Canary {}",
            self.ns(),
            self.observed.id
        );
        tracing::info!(canary = %self.observed.id, msg = message.as_str(), "{message}");
        Ok(())
    }

    /// Creates or updates the apex Service from `spec.service` (server-side apply,
    /// forced: it is ours).
    pub(super) async fn apply_apex(&mut self) -> Result<(), Error> {
        let Some(apex) = &self.objects.apex else { return Err(Error::Invalid("no spec.service to apply".into())) };
        let name = apex.name_any();
        let services: Api<Service> = self.api();
        let written = services
            .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(apex))
            .await
            .map_err(Error::kube(format!("applying Service {}/{name}", self.ns())))?;
        self.objects.service = Some(written);
        Ok(())
    }

    /// Creates or resizes `<svc>-canary` and `<d>-canary` (server-side apply, forced:
    /// they are ours alone). The Service comes first: a canary Deployment of the current
    /// revision then proves both exist, so the analysis loop, which makes the canary again
    /// only when its Deployment is missing or stale, never runs one without its Service.
    pub(super) async fn apply_canary(&mut self, replicas: i32) -> Result<(), Error> {
        let Some(target) = &self.objects.target else { return Err(Error::Invalid("the target is gone".into())) };
        let mut copy =
            copies::canary_deployment(target, replicas, self.owner()).map_err(|e| Error::Invalid(e.to_string()))?;
        let template = serde_json::to_value(target.spec.as_ref().map(|s| s.template.clone())).unwrap_or_default();
        let revision = crate::release::revision::Revision::of_template(&template);
        copy.annotations_mut().insert(COPY_OF.to_owned(), revision.to_string());
        let params = PatchParams::apply(MANAGER).force();
        if let Some(svc) = &self.objects.service {
            let selector = copies::selector_labels(target).map_err(|e| Error::Invalid(e.to_string()))?;
            let copy = copies::canary_service(svc, selector, self.owner());
            let name = copy.name_any();
            let services: Api<Service> = self.api();
            services
                .patch(&name, &params, &Patch::Apply(&copy))
                .await
                .map_err(Error::kube(format!("applying Service {}/{name}", self.ns())))?;
        }
        let name = copy.name_any();
        let deployments: Api<Deployment> = self.api();
        deployments
            .patch(&name, &params, &Patch::Apply(&copy))
            .await
            .map_err(Error::kube(format!("applying Deployment {}/{name}", self.ns())))?;
        Ok(())
    }

    /// Moves the generated route to `weight` (creating it when `create`), and checks the
    /// weights the API server answers with, the route as stored: a write that did not
    /// take is an error, never assumed.
    pub(super) async fn set_weight(&mut self, weight: u32, create: bool) -> Result<(), Error> {
        let routes: Api<ApisixRoute> = self.api();
        let canary_service = self.canary_service_name();
        let written = match &self.objects.generated {
            Some(generated) => {
                if route::weights(generated, &canary_service).map(|(_, w)| w) == Some(weight) {
                    return Ok(());
                }
                let name = generated.name_any();
                let patch = route::weight_patch(generated, &canary_service, weight);
                routes
                    .patch(&name, &params(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("setting the weights of ApisixRoute {}/{name}", self.ns())))?
            }
            None if !create => return Ok(()),
            None => {
                let (Some(user), rules) = (&self.objects.route, &self.objects.rules) else {
                    return Err(Error::Invalid("no route to copy".into()));
                };
                if rules.is_empty() {
                    return Err(Error::Invalid("no route rule to copy".into()));
                }
                let deployment = self.canary.spec.target_ref.name.clone();
                let plan = self.plan();
                let address = match plan.and_then(|p| p.sticky.as_ref()) {
                    Some(_) => Some(self.canary_address(&canary_service).await?),
                    None => None,
                };
                let shape = match (plan.and_then(|p| p.ab.as_ref()), plan.and_then(|p| p.sticky.as_ref()), &address) {
                    (Some(ab), _, _) => route::Shape::Ab(ab),
                    (None, Some(sticky), Some(address)) => route::Shape::Sticky(sticky, address),
                    _ => route::Shape::Weighted,
                };
                let generated = route::generated_for(
                    user,
                    rules,
                    shape,
                    (&self.objects.service_name, &canary_service),
                    &deployment,
                    weight,
                    self.owner(),
                );
                let name = generated.name_any();
                routes
                    .create(
                        &PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() },
                        &generated,
                    )
                    .await
                    .map_err(Error::kube(format!("creating ApisixRoute {}/{name}", self.ns())))?
            }
        };
        let meta = &written.metadata;
        self.ctx.echoes.wrote(&tick_key(self.canary), meta.uid.as_deref(), meta.resource_version.as_deref());
        match route::weights(&written, &canary_service) {
            Some((stable, canary)) if canary == weight && stable + canary == 100 => {
                self.objects.generated = Some(written);
                Ok(())
            }
            other => Err(Error::Invalid(format!(
                "ApisixRoute {}/{} reads weights {other:?} after writing canary weight {weight}",
                self.ns(),
                written.name_any()
            ))),
        }
    }

    pub(super) async fn delete_generated(&mut self) -> Result<(), Error> {
        let params = DeleteParams::background();
        let target = self.canary.spec.target_ref.name.clone();
        let routes: Api<ApisixRoute> = self.api();
        if let Some(g) = self.objects.generated.take() {
            ignore_gone(routes.delete(&g.name_any(), &params).await)
                .map_err(Error::kube("deleting the generated route"))?;
        }
        let deployments: Api<Deployment> = self.api();
        ignore_gone(deployments.delete(&copies::canary_name(&target), &params).await)
            .map_err(Error::kube("deleting the canary Deployment"))?;
        let services: Api<Service> = self.api();
        ignore_gone(services.delete(&self.canary_service_name(), &params).await)
            .map_err(Error::kube("deleting the canary Service"))?;
        self.objects.canary = None;
        Ok(())
    }

    /// One merge patch of the Deployment, preconditioned on the version read: a write in
    /// between fails with a conflict and the next reconcile decides again.
    pub(super) async fn write_lock(&mut self, outcome: &crate::release::lock::Outcome) -> Result<(), Error> {
        let Some(target) = &self.objects.target else { return Err(Error::Invalid("the target is gone".into())) };
        let mut patch = Lock::merge_patch(target.annotations(), outcome);
        patch["metadata"]["resourceVersion"] = serde_json::json!(target.resource_version());
        let deployments: Api<Deployment> = self.api();
        let name = target.name_any();
        let written = deployments
            .patch(&name, &params(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("writing the release lock of Deployment {}/{name}", self.ns())))?;
        self.objects.target = Some(written);
        Ok(())
    }
}

impl Run<'_> {
    /// Where the canary Service answers (its ClusterIP and ports): a sticky release's
    /// cookie names it.
    async fn canary_address(&self, canary_service: &str) -> Result<route::sticky::CanaryAddress, Error> {
        let services: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns());
        let what = || format!("reading Service {}/{canary_service}", self.ns());
        let svc = services.get(canary_service).await.map_err(Error::kube(what()))?;
        let spec = svc.spec.unwrap_or_default();
        let Some(cluster_ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            return Err(Error::Invalid(format!("{}: no ClusterIP for a sticky release's cookie", what())));
        };
        let ports = spec.ports.unwrap_or_default().into_iter().map(|p| (p.name, p.port)).collect();
        Ok(route::sticky::CanaryAddress { cluster_ip, ports })
    }
}
