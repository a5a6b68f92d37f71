//! Reads what `decide` needs of one release from the cluster: the target Deployment and
//! its lock, the canary copies, the user's route and Service, the generated route.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use super::index::Named;
use super::{Context, Error, canaries, status};
use crate::api::annotations::{ABORT, PROMOTE, PROMOTE_NOW, PROMOTED_REVISION};
use crate::api::apisix_route::ApisixRoute;
use crate::api::canary::v1beta1::Canary;
use crate::release::lifecycle::{Apex, CanaryPods, Observed, Protection, Release, Requests, Target};
use crate::release::lock::Lock;
use crate::release::plan::{OptIn, Plan};
use crate::release::revision::Revision;
use crate::release::{apex, claim, copies};
use crate::route;

/// On the canary Deployment: the revision its template copies.
pub const COPY_OF: &str = "apisix-canary.dev/copy-of-revision";

/// The objects of one release, as read.
pub struct Objects {
    pub namespace: String,
    pub target: Option<Deployment>,
    pub service: Option<Service>,
    pub route: Option<ApisixRoute>,
    pub rule: Option<usize>,
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
    let ns = c.namespace().unwrap_or_default();
    let client = &ctx.client;
    let name = c.spec.target_ref.name.clone();
    let get_opt = |what: &str| Error::kube(format!("reading {what} {ns}/{name}"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let routes: Api<ApisixRoute> = Api::namespaced(client.clone(), &ns);
    let canary_name = copies::canary_name(&name);
    // Every read at once: a tick's latency is one round trip. The route and the Service
    // are the Canary spec's; in annotation mode the Deployment's annotations say them,
    // and the spec mirrors those, so they are read again only if the two differ.
    let named = |plan: &Result<Plan, String>| {
        let route = plan.as_ref().map(|p| p.route.clone()).unwrap_or_default();
        let service = plan.as_ref().ok().and_then(|p| p.service.clone()).unwrap_or_else(|| name.clone());
        Names { generated: route::generated_name(&route, &name), route, service }
    };
    let spec_plan = Plan::from_canary(&c.spec).map(|(plan, _)| plan).map_err(|errors| errors.to_string());
    let guessed = named(&spec_plan);
    let reads = |names: Names| {
        let (services, routes, error, ns) = (&services, &routes, &get_opt, ns.as_str());
        async move {
            let route = |route: String| async move {
                if route.is_empty() { Ok(None) } else { routes.get_opt(&route).await.map_err(error("ApisixRoute")) }
            };
            let nodes = async {
                if !endpoints {
                    return Ok(None);
                }
                let canary_service = copies::canary_service_name(&names.service);
                let listed = crate::analysis::upstream_nodes(client, ns, &canary_service).await;
                Ok(Some(listed.map_err(|e| e.to_string())))
            };
            let (service, user_route, generated, nodes) = tokio::try_join!(
                async { services.get_opt(&names.service).await.map_err(error("Service")) },
                route(names.route.clone()),
                route(names.generated.clone()),
                nodes,
            )?;
            Ok::<_, Error>((names, service, user_route, generated, nodes))
        }
    };
    let (target, canary, read) = tokio::try_join!(
        async { deployments.get_opt(&name).await.map_err(get_opt("Deployment")) },
        async { deployments.get_opt(&canary_name).await.map_err(get_opt("Deployment")) },
        reads(guessed),
    )?;

    // Inline mode reads the Deployment's annotations themselves, so settings stored
    // before the webhook existed are caught here, never clamped.
    let plan = match (canaries::annotation_mode(c), &target) {
        (true, Some(d)) => match Plan::from_annotations(&name, d.annotations()) {
            Ok((OptIn::Inline(plan), _)) => Ok(plan),
            Ok(_) => Err(format!(
                "Deployment {ns}/{name} is no longer opted in with apisix-canary.dev/route: the release ended and \
                 the Deployment stays paused until you resume it (kubectl rollout resume)"
            )),
            Err(errors) => Err(errors.to_string()),
        },
        _ => spec_plan,
    };
    let names = named(&plan);
    let (names, service, user_route, generated, canary_nodes) =
        if names == read.0 { read } else { reads(names).await? };
    let Names { route: route_name, service: service_name, .. } = names;
    // A change to any of these wakes this Canary, owned by it or not.
    let named = [(Named::Deployment, name.as_str()), (Named::Service, &service_name), (Named::Route, &route_name)];
    ctx.index.set(&ns, &c.name_any(), &named);
    let status = status::from_canary(c.status.as_ref());
    let target_view = match &target {
        Some(d) => Some(target_of(d, &ctx.client, &ns, status.applied.as_ref()).await?),
        None => None,
    };

    // The apex Service a Canary's `spec.service` may generate.
    let apex_service = match (&plan, &target) {
        (Ok(Plan { apex: Some(apex), .. }), Some(d)) => {
            apex::service(&service_name, apex, d, c.controller_owner_ref(&()).unwrap_or_default()).ok()
        }
        _ => None,
    };
    let uid = c.metadata.uid.clone().unwrap_or_default();
    let apex = apex_service.as_ref().map_or(Apex::Kept, |desired| apex::state(service.as_ref(), desired, &uid));

    let mut refusal = None;
    let rule = match &user_route {
        None => {
            refusal = Some(format!("ApisixRoute {ns}/{route_name} not found"));
            None
        }
        Some(r) => route::find_rule(r, &service_name).map_err(|e| refusal = Some(e.to_string())).ok(),
    };
    // A missing apex Service is generated before anything else is decided.
    if service.is_none() && apex_service.is_none() && refusal.is_none() {
        let hint = if canaries::annotation_mode(c) { "" } else { " (set spec.service.port to have it generated)" };
        refusal = Some(format!("Service {ns}/{service_name} not found{hint}"));
    }
    match &target {
        None => {
            refusal.get_or_insert_with(|| format!("Deployment {ns}/{name} not found"));
        }
        Some(d) => {
            if let (Some(svc), None) = (&service, &refusal)
                && let Ok(copy) = copies::canary_deployment(d, 1, owner_stub())
                && let Err(e) = copies::check_service(svc, &copy)
            {
                refusal = Some(e.to_string());
            }
            if let (Err(e), None) = (copies::selector_labels(d), &refusal) {
                refusal = Some(e.to_string());
            }
        }
    }
    let canary_service = copies::canary_service_name(&service_name);
    let protection = protection(c, ctx, &ns, target.as_ref()).await?;
    let observed = Observed {
        id: Release { canary: c.name_any(), namespace: ns.clone(), target: name.clone() },
        protection,
        apex,
        plan,
        status,
        target: target_view.unwrap_or_else(missing_target),
        canary: canary.as_ref().map(|d| canary_pods(d, target.as_ref())),
        route_weight: generated.as_ref().and_then(|g| route::weights(g, &canary_service)).map(|(_, w)| w),
        refusal,
        checks: None,
        hooks: Default::default(),
        requests: requests(c.annotations()),
    };
    let objects = Objects {
        namespace: ns,
        target,
        service,
        route: user_route,
        rule,
        service_name,
        canary,
        generated,
        canary_nodes,
        apex: apex_service,
    };
    Ok((observed, objects))
}

/// Whether the target's releases reach this Canary; reads the Canary its opt-in names
/// only when that is another one.
async fn protection(c: &Canary, ctx: &Context, ns: &str, target: Option<&Deployment>) -> Result<Protection, Error> {
    let name = c.name_any();
    let annotations = target.map(|d| d.annotations());
    let other_exists = match claim::other_canary(&name, annotations) {
        Some(other) => {
            let canaries: Api<Canary> = Api::namespaced(ctx.client.clone(), ns);
            let found =
                canaries.get_metadata_opt(other).await.map_err(Error::kube(format!("reading Canary {ns}/{other}")))?;
            Some(found.is_some_and(|o| o.metadata.deletion_timestamp.is_none()))
        }
        None => None,
    };
    Ok(claim::protection(&claim::Target {
        canary: &name,
        namespace: ns,
        deployment: &c.spec.target_ref.name,
        annotation_mode: canaries::annotation_mode(c),
        annotations,
        excluded: ctx.config.excluded_namespaces.iter().any(|e| e == ns),
        other_exists,
    }))
}

/// The objects a release reads by the names its plan gives.
#[derive(Debug, PartialEq)]
struct Names {
    route: String,
    service: String,
    generated: String,
}

/// An operator's requests on the Canary; a value that is not a revision asks nothing.
fn requests(annotations: &BTreeMap<String, String>) -> Requests {
    let revision = |key: &str| annotations.get(key).and_then(|v| Revision::parse(v.trim()));
    Requests { abort: revision(ABORT), promote: revision(PROMOTE), promote_now: revision(PROMOTE_NOW) }
}

/// A stand-in owner for building a copy only to check it.
fn owner_stub() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    Default::default()
}

fn missing_target() -> Target {
    Target {
        lock: Lock::default(),
        promoted: None,
        revision: Revision::of_template(&serde_json::Value::Null),
        paused: false,
        replicas: 0,
        rolled_out: false,
        active_replica_sets: 0,
    }
}

/// The Deployment as the lifecycle sees it; `applied` is the revision the status says
/// the release runs.
async fn target_of(
    d: &Deployment,
    client: &kube::Client,
    ns: &str,
    applied: Option<&Revision>,
) -> Result<Target, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let rolled_out = observed
        && st.updated_replicas.unwrap_or(0) == replicas
        && st.available_replicas.unwrap_or(0) >= replicas
        && st.replicas.unwrap_or(0) == replicas;
    let lock = Lock::from_annotations(d.annotations());
    // A list per tick of every release would cost the API server most; the count only
    // matters when a release may start.
    let starting = lock.canary.as_ref().is_some_and(|canary| Some(canary) != applied);
    let active_replica_sets = if starting { active_replica_sets(d, client, ns).await? } else { 0 };
    Ok(Target {
        lock,
        promoted: d.annotations().get(PROMOTED_REVISION).and_then(|v| Revision::parse(v)),
        revision: Revision::of_template(&template),
        paused: spec.paused.unwrap_or(false),
        replicas,
        rolled_out,
        active_replica_sets,
    })
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

/// The canary copy: its size, readiness, and whether it copies the template in force.
fn canary_pods(d: &Deployment, target: Option<&Deployment>) -> CanaryPods {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let ready =
        if observed && st.updated_replicas.unwrap_or(0) >= replicas { st.ready_replicas.unwrap_or(0) } else { 0 };
    let copy_of = d.annotations().get(COPY_OF).and_then(|v| Revision::parse(v));
    let current = target.and_then(|t| {
        let template = serde_json::to_value(&t.spec.as_ref()?.template).ok()?;
        Some(Revision::of_template(&template))
    });
    CanaryPods { replicas, ready, current: copy_of.is_some() && copy_of == current }
}
