//! The generated ApisixRoute `<route>-<d>-canary`: a copy of every rule of the user's
//! route that serves the Service alone, each raised above its original, each splitting
//! traffic stable `100-w` / canary `w` by the same weight.
//!
//! ```text
//!  user's: podinfo                 rule method, priority p     podinfo:80
//!                                  rule api,    priority q     podinfo:80
//!  ours:   podinfo-podinfo-canary  rule method, priority p+1   podinfo:80 w=80, podinfo-canary:80 w=20
//!                                  rule api,    priority q+1   podinfo:80 w=80, podinfo-canary:80 w=20
//! ```
//!
//! The user's route is never modified, so it keeps serving if ours is deleted. Pure
//! functions: the controller reads the objects, calls these, writes the result.

pub mod sticky;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use thiserror::Error;

use crate::api::apisix_route::{ApisixRoute, ApisixRouteSpec, Backend, HttpRule};
use crate::release::copies::{self, NAME_MAX, bounded_canary_name};
use crate::release::plan::{AbTest, MatchExpr, Sticky};

/// The full weight; the stable backend gets what the canary does not.
pub const FULL: u32 = 100;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("apisix route {route} has no http rule whose only backend is service {service}; found: {found}")]
    NoRule { route: String, service: String, found: String },
    #[error(
        "apisix route {route}: http rule {rule} already splits traffic between {found}; a release needs the \
         service {service} as the only backend of its rule"
    )]
    Weighted { route: String, service: String, rule: String, found: String },
}

/// `name.namespace`, as Flagger names objects in its messages.
fn route_id(route: &ApisixRoute) -> String {
    let name = route.metadata.name.as_deref().unwrap_or("<unnamed>");
    match route.metadata.namespace.as_deref() {
        Some(ns) => format!("{name}.{ns}"),
        None => name.to_owned(),
    }
}

fn backends(rule: &HttpRule) -> &[Backend] {
    rule.backends.as_deref().unwrap_or_default()
}

/// ApisixUpstream references in a rule (`upstreams`): they take a share of its traffic
/// next to its backends, so a rule that has them is already weighted.
fn upstreams(rule: &HttpRule) -> Vec<String> {
    let items = rule.other.get("upstreams").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    items.iter().map(|u| format!("upstream {}", u.get("name").and_then(Value::as_str).unwrap_or("?"))).collect()
}

/// The targets of a rule, for messages: `podinfo:80, upstream foo`.
fn targets(rule: &HttpRule) -> Vec<String> {
    let port = |b: &Backend| match &b.service_port {
        Some(p) => format!("{}:{}", b.service_name, int_or_string(p)),
        None => b.service_name.clone(),
    };
    backends(rule).iter().map(port).chain(upstreams(rule)).collect()
}

fn int_or_string(p: &IntOrString) -> String {
    match p {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The indexes of the http rules whose only backend is `service`, in order: each is
/// copied into the generated route and moved by the same weight. Refused when there is
/// none, or `service` shares a rule with other backends anywhere in the route (its
/// traffic there is already weighted, and a release would only cover part).
pub fn find_rules(route: &ApisixRoute, service: &str) -> Result<Vec<usize>, RouteError> {
    let rules = route.spec.http.as_deref().unwrap_or_default();
    let names = |b: &HttpRule| backends(b).iter().any(|b| b.service_name == service);
    if let Some(rule) = rules.iter().find(|r| names(r) && targets(r).len() > 1) {
        return Err(RouteError::Weighted {
            route: route_id(route),
            service: service.to_owned(),
            rule: rule.name.clone(),
            found: targets(rule).join(", "),
        });
    }
    let matching: Vec<usize> = (0..rules.len()).filter(|&i| names(&rules[i])).collect();
    if matching.is_empty() {
        let found = if rules.is_empty() {
            "no http rules".to_owned()
        } else {
            rules
                .iter()
                .map(|r| format!("rule {} -> [{}]", r.name, targets(r).join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(RouteError::NoRule { route: route_id(route), service: service.to_owned(), found });
    }
    Ok(matching)
}

/// `<route>-<d>-canary` (Flagger's naming, so its PromQL keeps working), at most 253
/// characters: a longer one is cut and ends with a hash of the whole.
pub fn generated_name(route: &str, deployment: &str) -> String {
    bounded_canary_name(&format!("{route}-{deployment}"), NAME_MAX)
}

/// The weighted route of a release at canary weight `weight` (capped at 100): the rules
/// `rules` of `user` only, each as written (match, plugins, name, timeouts...), each at a
/// priority one above its original, backends `service` `100-w` and `canary_service` `w`
/// on the user's port.
pub fn generated(
    user: &ApisixRoute,
    rules: &[usize],
    service: &str,
    canary_service: &str,
    deployment: &str,
    weight: u32,
    owner: OwnerReference,
) -> ApisixRoute {
    generated_for(user, rules, Shape::Weighted, (service, canary_service), deployment, weight, owner)
}

/// How a release shares the traffic beyond its weight.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// By weight alone.
    Weighted,
    /// A/B: the requests `match` selects.
    Ab(&'a AbTest),
    /// By weight, each client kept on the version that first answered it.
    Sticky(&'a Sticky, &'a sticky::CanaryAddress),
}

/// [`generated`], or with `ab` an A/B release's: each copied rule once per `match`
/// entry, its exprs after the user's own, so only the matching requests take it (and the
/// weight, 100 for an A/B release, sends all of them to the canary); the others fall
/// through to the user's rule and the stable.
pub fn generated_for(
    user: &ApisixRoute,
    rules: &[usize],
    shape: Shape<'_>,
    (service, canary_service): (&str, &str),
    deployment: &str,
    weight: u32,
    owner: OwnerReference,
) -> ApisixRoute {
    let written = user.spec.http.as_deref().unwrap_or_default();
    let matched: Vec<HttpRule> = rules
        .iter()
        .filter_map(|&i| written.get(i))
        .flat_map(|rule| match shape {
            Shape::Ab(ab) => {
                ab.rules.iter().enumerate().map(|(j, exprs)| matching(rule, j, ab.rules.len(), exprs)).collect()
            }
            Shape::Weighted | Shape::Sticky(..) => vec![rule.clone()],
        })
        .collect();
    let copies = matched.iter().map(|rule| {
        let mut copy = rule.clone();
        // APISIX picks the higher priority among routes that match the same request; an
        // absent priority is 0.
        copy.priority = Some(copy.priority.unwrap_or(0).saturating_add(1));
        let template = backends(&copy).first().cloned().unwrap_or_default();
        let stable = Backend { service_name: service.to_owned(), weight: None, ..template.clone() };
        // A subset names pods of the user's ApisixUpstream, which the canary Service has none of.
        let canary = Backend { service_name: canary_service.to_owned(), weight: None, subset: None, ..template };
        copy.backends = Some(vec![stable, canary]);
        copy
    });
    let mut copies: Vec<HttpRule> = match shape {
        Shape::Sticky(s, canary) => copies.flat_map(|copy| sticky::rules(copy, s, canary)).collect(),
        _ => copies.collect(),
    };
    for copy in &mut copies {
        set_weights(copy, canary_service, weight);
    }

    let user_name = user.metadata.name.as_deref().unwrap_or_default();
    ApisixRoute {
        metadata: ObjectMeta {
            name: Some(generated_name(user_name, deployment)),
            namespace: user.metadata.namespace.clone(),
            labels: Some(copies::managed_labels(user.metadata.labels.as_ref())),
            // Older APISIX ingress controllers select routes by annotation (ingress.class).
            annotations: Some(copies::inherited(user.metadata.annotations.as_ref())).filter(|a| !a.is_empty()),
            owner_references: Some(vec![copies::controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        // `stream` rules and anything else at the top are the user's route's alone.
        spec: ApisixRouteSpec {
            ingress_class_name: user.spec.ingress_class_name.clone(),
            http: Some(copies),
            other: Default::default(),
        },
    }
}

/// `rule` taking only the requests `exprs` match, named apart when there are several
/// entries (`<rule>-ab-<j>`): rule names are unique in a route.
fn matching(rule: &HttpRule, j: usize, entries: usize, exprs: &[MatchExpr]) -> HttpRule {
    let mut copy = rule.clone();
    if entries > 1 {
        copy.name = format!("{}-ab-{j}", rule.name);
    }
    let mut m = copy.match_.take().unwrap_or_default();
    m.exprs.get_or_insert_with(Vec::new).extend(exprs.iter().map(MatchExpr::to_json));
    copy.match_ = Some(m);
    copy
}

/// Sets `weight` on the `canary_service` backend and `100-weight` on the others, with
/// `weight: 0` written, never omitted: APISIX reads an absent weight as 100.
fn set_weights(rule: &mut HttpRule, canary_service: &str, weight: u32) {
    sticky::set_telling(rule, weight);
    let weight = sticky::canary_weight(rule, weight).unwrap_or(weight).min(FULL);
    for b in rule.backends.iter_mut().flatten() {
        let w = if b.service_name == canary_service { weight } else { FULL - weight };
        b.weight = Some(i64::from(w));
    }
}

/// The (stable, canary) weights of the rules that hold `canary_service`, as written. `None`
/// unless each has exactly two backends with explicit weights, all alike: any other shape
/// is not ours, and the caller must not trust it.
pub fn weights(route: &ApisixRoute, canary_service: &str) -> Option<(u32, u32)> {
    let rules = route.spec.http.as_deref()?;
    // A sticky release's cookie rules send all or nothing: its weight is the others'.
    let holding = rules
        .iter()
        .filter(|r| !sticky::is_sticky(r))
        .filter(|r| backends(r).iter().any(|b| b.service_name == canary_service));
    let mut read = holding.map(|rule| {
        let [a, b] = backends(rule) else { return None };
        let (stable, canary) = if b.service_name == canary_service { (a, b) } else { (b, a) };
        let w = |b: &Backend| b.weight.and_then(|w| u32::try_from(w).ok());
        Some((w(stable)?, w(canary)?))
    });
    let first = read.next()??;
    // Rules that disagree are not a weight this controller wrote.
    read.all(|w| w == Some(first)).then_some(first)
}

/// `route` with every rule that holds `canary_service` at canary weight `weight`; a route
/// without one comes back unchanged (and [`weights`] reads `None` from it).
pub fn with_weight(route: &ApisixRoute, canary_service: &str, weight: u32) -> ApisixRoute {
    let mut route = route.clone();
    for rule in route.spec.http.iter_mut().flatten() {
        if backends(rule).iter().any(|b| b.service_name == canary_service) {
            set_weights(rule, canary_service, weight);
        }
    }
    route
}

/// A JSON merge patch that sets the weights. ApisixRoute is a custom resource: a merge
/// patch replaces whole lists, so it carries the whole `spec.http` list. With the route's
/// `resourceVersion`, a write that raced another fails with 409 instead of undoing it.
pub fn weight_patch(route: &ApisixRoute, canary_service: &str, weight: u32) -> Value {
    let updated = with_weight(route, canary_service, weight);
    let mut patch = json!({"spec": {"http": updated.spec.http}});
    if let Some(rv) = &route.metadata.resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    patch
}
