//! Annotation mode, carried out: the Canary of each Deployment opted in with
//! `apisix-canary.dev/route`, made, updated or deleted as `release::mirror::keep` says.
//! Canary mode: the user's Canary named in `apisix-canary.dev/canary` is used as written.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::Cached;
use super::{Context, Error, MANAGER};
use crate::api::annotations::{CANARY, PREFIX};
use crate::api::canary::v1beta1::Canary;
use crate::release::mirror::{self, Keep};

pub use crate::release::observe::annotation_mode;

/// The Canary a Deployment's change concerns: its own (annotation mode or a lock left
/// behind), or the one its `canary` annotation names.
pub fn canary_of_deployment(d: &Cached<Deployment>) -> Option<ObjectRef<Cached<Canary>>> {
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
pub async fn reconcile_deployment(d: Arc<Cached<Deployment>>, ctx: Arc<Context>) -> Result<Requeue, Error> {
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
    let owned = existing.as_ref().is_some_and(|c| owned_by(c, &d));
    match mirror::keep(&name, d.annotations(), existing.as_ref(), owned) {
        Keep::Nothing => {}
        Keep::Wait => return Ok(Requeue::requeue(Duration::from_secs(2))),
        Keep::Foreign => {
            tracing::warn!(deployment = %format!("{name}.{ns}"), "a Canary of this name exists and is not ours; leaving it");
        }
        Keep::Delete => {
            // Only the object judged a mirror: one changed or made again since is not deleted.
            let preconditions = existing.as_ref().map(|c| Preconditions {
                uid: c.metadata.uid.clone(),
                resource_version: c.metadata.resource_version.clone(),
            });
            fenced()?;
            let params = DeleteParams { preconditions, ..DeleteParams::background() };
            match canaries.delete(&name, &params).await {
                // Gone meanwhile: nothing left to do.
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Requeue::await_change()),
                other => other.map_err(Error::kube(format!("deleting Canary {ns}/{name}")))?,
            };
            tracing::info!(canary = %format!("{name}.{ns}"), msg = "Canary deleted: the Deployment opted out", "Canary deleted: the Deployment opted out");
        }
        Keep::Update(spec) => {
            let Some(mut canary) = existing else { return Ok(Requeue::await_change()) };
            // The whole spec with its digest, over the version read: a merge patch would
            // leave fields the annotations no longer say, and a change made meanwhile is
            // a conflict, looked at again, not overwritten.
            mirror::stamp(&mut canary.metadata, &spec);
            canary.spec = spec;
            // Left out, the API server keeps them; sent back, they would be taken as written.
            canary.metadata.managed_fields = None;
            let params = PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() };
            fenced()?;
            canaries
                .replace(&name, &params, &canary)
                .await
                .map_err(Error::kube(format!("updating Canary {ns}/{name}")))?;
        }
        Keep::Create(spec) => {
            let mut metadata = ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                // The Deployment controls it: deleting one goes to the other.
                owner_references: d.controller_owner_ref(&()).map(|o| vec![o]),
                ..ObjectMeta::default()
            };
            mirror::stamp(&mut metadata, &spec);
            let canary = Canary { metadata, spec, status: None };
            let params = PostParams { field_manager: Some(MANAGER.to_owned()), ..PostParams::default() };
            fenced()?;
            canaries.create(&params, &canary).await.map_err(Error::kube(format!("creating Canary {ns}/{name}")))?;
            tracing::info!(canary = %format!("{name}.{ns}"), msg = "Canary created from the annotations", "Canary created from the annotations");
        }
    }
    Ok(Requeue::await_change())
}

pub fn error_policy(d: Arc<Cached<Deployment>>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(deployment = %d.name_any(), error = %error, "keeping the Canary failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}

fn owned_by(c: &Canary, d: &Cached<Deployment>) -> bool {
    c.owner_references().iter().any(|o| Some(&o.uid) == d.metadata.uid.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str, annotations: &[(&str, &str)]) -> Cached<Deployment> {
        use kube::core::PartialObjectMetaExt;
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("test".into()),
            annotations: Some(annotations.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            ..ObjectMeta::default()
        }
        .into_request_partial::<Deployment>()
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
