//! What a release is, from what was read of it: a pure function of the Canary and its
//! objects. The controller's I/O reads a [`Snapshot`]; [`observe`] turns it into the
//! [`Observed`] that `lifecycle::decide` decides on, with every rule that judges the
//! objects (the refusals and their order, readiness, rollout completion, opt-out, the
//! claim on the target, the apex Service) here, where table tests reach them.
//!
//! ```text
//!  API reads ──▶ Snapshot ──observe (pure)──▶ Seen { Observed, the objects act needs }
//!                    ▲
//!       names(Canary, target) says what to read
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::{Resource, ResourceExt};

use super::lifecycle::{Apex, CanaryPods, Observed, Release, Requests, Target};
use super::lock::Lock;
use super::plan::{OptIn, Plan};
use super::revision::Revision;
use super::{apex, claim, copies, mirror, status};
use crate::api::annotations::{ABORT, PROMOTE, PROMOTE_NOW, PROMOTED_REVISION, ROUTE};
use crate::api::apisix_route::ApisixRoute;
use crate::api::canary::v1beta1::Canary;
use crate::route;

#[cfg(test)]
mod tests;

/// On the canary Deployment: the revision its template copies.
pub const COPY_OF: &str = "apisix-canary.dev/copy-of-revision";

/// What was read of one release.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub canary: Canary,
    /// The targetRef's Deployment.
    pub target: Option<Deployment>,
    /// `<target>-canary`.
    pub copy: Option<Deployment>,
    /// The Service of [`Names::service`].
    pub service: Option<Service>,
    /// The routeRef's ApisixRoute.
    pub route: Option<ApisixRoute>,
    /// `<route>-<target>-canary`.
    pub generated: Option<ApisixRoute>,
    /// The canary Service's ready endpoints, when listed (a due step's checks need them).
    pub canary_nodes: Option<Result<Vec<String>, String>>,
    /// The target's ReplicaSets that still have pods, when counted ([`counts_replica_sets`]).
    pub active_replica_sets: usize,
    /// When the target's opt-in names another Canary: whether that one exists.
    pub other_canary: Option<bool>,
    /// Our Deployment webhook never sees the Canary's namespace.
    pub excluded: bool,
}

/// The observation, and what the executor needs of the objects to carry out actions.
#[derive(Debug, Clone)]
pub struct Seen {
    pub observed: Observed,
    /// The indexes of the route's rules whose single backend is the Service.
    pub rules: Vec<usize>,
    /// The Service the route's rule sends to.
    pub service_name: String,
    /// The apex Service as `spec.service` describes it, when the Canary may generate it.
    pub apex: Option<Service>,
}

/// The objects a release reads by the names its plan gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub route: String,
    pub service: String,
    pub generated: String,
}

/// Whether this Canary is the one the controller made from a Deployment's annotations,
/// as it wrote it (`mirror::origin`): its release reads the annotations. A mirror whose
/// spec someone else changed is read as a Canary of theirs.
pub fn annotation_mode(c: &Canary) -> bool {
    matches!(mirror::origin(c), mirror::Origin::Mirror | mirror::Origin::Unstamped)
}

/// The analysis: the Canary's spec, or in annotation mode the Deployment's annotations
/// themselves, so settings stored before the webhook existed are caught, never clamped.
pub fn plan_of(c: &Canary, target: Option<&Deployment>) -> Result<Plan, String> {
    let spec = || Plan::from_canary(&c.spec).map(|(plan, _)| plan).map_err(|errors| errors.to_string());
    let Some(d) = target.filter(|_| annotation_mode(c)) else { return spec() };
    let (ns, name) = (c.namespace().unwrap_or_default(), &c.spec.target_ref.name);
    match Plan::from_annotations(name, d.annotations()) {
        Ok((OptIn::Inline(plan), _)) => Ok(plan),
        Ok(_) => Err(format!(
            "Deployment {ns}/{name} is no longer opted in with {ROUTE}: the release ended and the Deployment stays \
             paused until you resume it (kubectl rollout resume)"
        )),
        Err(errors) => Err(errors.to_string()),
    }
}

/// What to read for `plan`: the route, the Service and the generated route.
pub fn names(c: &Canary, plan: &Result<Plan, String>) -> Names {
    let target = &c.spec.target_ref.name;
    let route = plan.as_ref().map(|p| p.route.clone()).unwrap_or_default();
    let service = plan.as_ref().ok().and_then(|p| p.service.clone()).unwrap_or_else(|| target.clone());
    Names { generated: route::generated_name(&route, target), route, service }
}

/// Whether the target's active ReplicaSets must be counted: only when a release may
/// start (the lock names a revision the status has not applied), the one decision that
/// reads them; a list per tick of every release would cost the API server most.
pub fn counts_replica_sets(c: &Canary, target: &Deployment) -> bool {
    let applied = c.status.as_ref().and_then(|s| s.last_applied_spec.as_ref());
    Lock::from_annotations(target.annotations()).canary.as_ref().is_some_and(|canary| Some(canary) != applied)
}

/// The release as `decide` sees it.
pub fn observe(s: &Snapshot) -> Seen {
    let c = &s.canary;
    let ns = c.namespace().unwrap_or_default();
    let name = c.spec.target_ref.name.clone();
    let plan = plan_of(c, s.target.as_ref());
    let Names { route: route_name, service: service_name, .. } = names(c, &plan);
    let apex_service = match (&plan, &s.target) {
        (Ok(Plan { apex: Some(apex), .. }), Some(d)) => {
            apex::service(&service_name, apex, d, c.controller_owner_ref(&()).unwrap_or_default()).ok()
        }
        _ => None,
    };
    let uid = c.metadata.uid.clone().unwrap_or_default();
    let apex = apex_service.as_ref().map_or(Apex::Kept, |desired| apex::state(s.service.as_ref(), desired, &uid));
    let (rules, mut refusal) = refusal(s, &ns, &route_name, &service_name, apex_service.is_some());
    if let (Ok(Plan { sticky: Some(_), .. }), Some(route), None) = (&plan, &s.route, &refusal) {
        refusal = route::sticky::conflict(route, &rules);
    }
    let canary_service = copies::canary_service_name(&service_name);
    let observed = Observed {
        id: Release { canary: c.name_any(), namespace: ns.clone(), target: name.clone() },
        protection: claim::protection(&claim::Target {
            canary: &c.name_any(),
            namespace: &ns,
            deployment: &name,
            annotation_mode: annotation_mode(c),
            annotations: s.target.as_ref().map(|d| d.annotations()),
            excluded: s.excluded,
            other_exists: s.other_canary,
        }),
        from_annotations: annotation_mode(c),
        apex,
        plan,
        status: status::from_canary(c.status.as_ref()),
        target: s.target.as_ref().map_or_else(missing_target, |d| target_of(d, s.active_replica_sets)),
        canary: s.copy.as_ref().map(|d| canary_pods(d, s.target.as_ref())),
        route_weight: s.generated.as_ref().and_then(|g| route::weights(g, &canary_service)).map(|(_, w)| w),
        refusal,
        checks: None,
        metrics_server: None,
        tested: None,
        hooks: Default::default(),
        requests: requests(c.annotations()),
    };
    Seen { observed, rules, service_name, apex: apex_service }
}

/// The route's rule for the Service, and why a release could not run, if so: the first
/// of route missing, no rule for the Service, Service missing (unless the Canary
/// generates it), Deployment missing, a Service that would select the canary pods, a
/// selector that cannot set them apart.
fn refusal(s: &Snapshot, ns: &str, route: &str, service: &str, generated: bool) -> (Vec<usize>, Option<String>) {
    let mut refusal = None;
    let rules = match &s.route {
        None => {
            refusal = Some(format!("ApisixRoute {ns}/{route} not found"));
            Vec::new()
        }
        Some(r) => route::find_rules(r, service).map_err(|e| refusal = Some(e.to_string())).unwrap_or_default(),
    };
    // A missing apex Service is generated before anything else is decided.
    if s.service.is_none() && !generated && refusal.is_none() {
        let hint = if annotation_mode(&s.canary) { "" } else { " (set spec.service.port to have it generated)" };
        refusal = Some(format!("Service {ns}/{service} not found{hint}"));
    }
    match &s.target {
        None => {
            let name = &s.canary.spec.target_ref.name;
            refusal.get_or_insert_with(|| format!("Deployment {ns}/{name} not found"));
        }
        Some(d) => {
            if let (Some(svc), None) = (&s.service, &refusal)
                && let Ok(copy) = copies::canary_deployment(d, 1, Default::default())
                && let Err(e) = copies::check_service(svc, &copy)
            {
                refusal = Some(e.to_string());
            }
            if let (Err(e), None) = (copies::selector_labels(d), &refusal) {
                refusal = Some(e.to_string());
            }
        }
    }
    (rules, refusal)
}

/// An operator's requests on the Canary; a value that is not a revision asks nothing.
fn requests(annotations: &BTreeMap<String, String>) -> Requests {
    let revision = |key: &str| annotations.get(key).and_then(|v| Revision::parse(v.trim()));
    Requests { abort: revision(ABORT), promote: revision(PROMOTE), promote_now: revision(PROMOTE_NOW) }
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

/// The Deployment as the lifecycle sees it: its lock, its template's revision, and
/// whether its own rollout is complete (observed, every replica updated and available,
/// none left over).
fn target_of(d: &Deployment, active_replica_sets: usize) -> Target {
    let spec = d.spec.clone().unwrap_or_default();
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let rolled_out = observed
        && st.updated_replicas.unwrap_or(0) == replicas
        && st.available_replicas.unwrap_or(0) >= replicas
        && st.replicas.unwrap_or(0) == replicas;
    Target {
        lock: Lock::from_annotations(d.annotations()),
        promoted: d.annotations().get(PROMOTED_REVISION).and_then(|v| Revision::parse(v)),
        revision: Revision::of_template(&template),
        paused: spec.paused.unwrap_or(false),
        replicas,
        rolled_out,
        active_replica_sets,
    }
}

/// The canary copy: its size, readiness (counted once its controller has seen its last
/// change and every replica is updated), and whether it copies the template in force.
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
