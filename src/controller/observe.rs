//! Reads what `decide` needs of one release from the cluster into a [`Snapshot`]; the
//! pure `release::observe` judges it. Nothing here decides anything.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::{Context, Error};
use crate::api::apisix_route::ApisixRoute;
use crate::api::canary::v1beta1::Canary;
use crate::release::lifecycle::Observed;
use crate::release::observe::{self, Names, Snapshot};
use crate::release::{claim, copies};

pub use crate::release::observe::COPY_OF;

/// The objects of one release, as read, for the executor's writes.
pub struct Objects {
    pub namespace: String,
    pub target: Option<Deployment>,
    pub service: Option<Service>,
    pub route: Option<ApisixRoute>,
    /// The user's route's rules the generated route copies.
    pub rules: Vec<usize>,
    pub service_name: String,
    pub canary: Option<Deployment>,
    pub generated: Option<ApisixRoute>,
    /// The canary Service's ready endpoints, when listed beside the reads (`endpoints`).
    pub canary_nodes: Option<Result<Vec<String>, String>>,
    /// The apex Service as `spec.service` describes it, when the Canary may generate it.
    pub apex: Option<Service>,
}

/// Reads the objects and builds the observation; with `endpoints`, also lists the canary
/// Service's ready endpoints, which a due step's checks need, in the same round trip.
pub async fn observe(c: &Canary, ctx: &Context, endpoints: bool) -> Result<(Observed, Objects), Error> {
    let snapshot = snapshot(c, ctx, endpoints).await?;
    let seen = observe::observe(&snapshot);
    let Snapshot { target, copy, service, route, generated, canary_nodes, .. } = snapshot;
    let objects = Objects {
        namespace: c.namespace().unwrap_or_default(),
        target,
        service,
        route,
        rules: seen.rules,
        service_name: seen.service_name,
        canary: copy,
        generated,
        canary_nodes,
        apex: seen.apex,
    };
    Ok((seen.observed, objects))
}

/// Every read a decision needs, at once where it can: a tick's latency is one round
/// trip. The route and the Service are the Canary spec's; in annotation mode the
/// Deployment's annotations say them and the spec mirrors those, so they are read again
/// only if the two differ.
async fn snapshot(c: &Canary, ctx: &Context, endpoints: bool) -> Result<Snapshot, Error> {
    let ns = c.namespace().unwrap_or_default();
    let client = &ctx.client;
    let name = c.spec.target_ref.name.clone();
    let get_opt = |what: &str| Error::kube(format!("reading {what} {ns}/{name}"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let guessed = observe::names(c, &observe::plan_of(c, None));
    let (target, copy, read) = tokio::try_join!(
        async { deployments.get_opt(&name).await.map_err(get_opt("Deployment")) },
        async { deployments.get_opt(&copies::canary_name(&name)).await.map_err(get_opt("Deployment")) },
        reads(ctx, &ns, guessed, endpoints),
    )?;
    let names = observe::names(c, &observe::plan_of(c, target.as_ref()));
    let read = if names == read.names { read } else { reads(ctx, &ns, names, endpoints).await? };
    // A change of the target wakes this Canary, opted in or not.
    ctx.index.set(&ns, &c.name_any(), &name);
    let other = claim::other_canary(&c.name_any(), target.as_ref().map(|d| d.annotations()));
    let other_canary = match other {
        Some(other) => {
            let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
            let found =
                canaries.get_metadata_opt(other).await.map_err(Error::kube(format!("reading Canary {ns}/{other}")))?;
            Some(found.is_some_and(|o| o.metadata.deletion_timestamp.is_none()))
        }
        None => None,
    };
    let active_replica_sets = match &target {
        Some(d) if observe::counts_replica_sets(c, d) => active_replica_sets(d, client, &ns).await?,
        _ => 0,
    };
    Ok(Snapshot {
        canary: c.clone(),
        target,
        copy,
        service: read.service,
        route: read.route,
        generated: read.generated,
        canary_nodes: read.nodes,
        active_replica_sets,
        other_canary,
        excluded: ctx.config.excluded_namespaces.contains(&ns),
    })
}

/// What [`reads`] read by `names`.
struct Read {
    names: Names,
    service: Option<Service>,
    route: Option<ApisixRoute>,
    generated: Option<ApisixRoute>,
    nodes: Option<Result<Vec<String>, String>>,
}

/// The Service, the route, the generated route, and the canary's endpoints when asked.
async fn reads(ctx: &Context, ns: &str, names: Names, endpoints: bool) -> Result<Read, Error> {
    let client = &ctx.client;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let routes: Api<ApisixRoute> = Api::namespaced(client.clone(), ns);
    let error = |what: &str, name: &str| Error::kube(format!("reading {what} {ns}/{name}"));
    let route = |route: &str| {
        let (routes, route) = (&routes, route.to_owned());
        async move {
            if route.is_empty() {
                return Ok(None);
            }
            routes.get_opt(&route).await.map_err(error("ApisixRoute", &route))
        }
    };
    let nodes = async {
        if !endpoints {
            return Ok(None);
        }
        let canary_service = copies::canary_service_name(&names.service);
        let listed = crate::analysis::upstream_nodes(client, ns, &canary_service).await;
        Ok::<_, Error>(Some(listed.map_err(|e| e.to_string())))
    };
    let (service, route, generated, nodes) = tokio::try_join!(
        async { services.get_opt(&names.service).await.map_err(error("Service", &names.service)) },
        route(&names.route),
        route(&names.generated),
        nodes,
    )?;
    Ok(Read { names, service, route, generated, nodes })
}

/// The Deployment's ReplicaSets that still have pods.
async fn active_replica_sets(d: &Deployment, client: &kube::Client, ns: &str) -> Result<usize, Error> {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let selector = d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(&selector_string(&selector));
    let sets = rs.list(&params).await.map_err(Error::kube(format!("listing ReplicaSets in {ns}")))?;
    Ok(sets
        .items
        .iter()
        .filter(|r| r.owner_references().iter().any(|o| o.uid == uid))
        .filter(|r| r.status.as_ref().is_some_and(|s| s.replicas > 0))
        .count())
}

fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}
