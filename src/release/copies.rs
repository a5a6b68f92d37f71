//! The canary copies of a release: `<d>-canary` and `<svc>-canary`, built from the user's
//! objects by pure functions, plus the names, label values and checks they depend on.
//!
//! The copies must never be selected by the user's Deployment or Service: every label of
//! the Deployment's selector gets the value `<v>-canary` on the canary pods. The user's
//! objects are read, never changed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::api::annotations::PREFIX;

pub const CANARY_SUFFIX: &str = "-canary";
/// The label that marks every object we generate.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "apisix-canary";

/// Kubernetes label values and Service names (DNS-1035 labels) are at most 63 characters.
const LABEL_MAX: usize = 63;
/// Deployment and ApisixRoute names are DNS-1123 subdomains: at most 253 characters.
pub const NAME_MAX: usize = 253;
/// Hex characters of the hash that ends a truncated name or value (40 bits).
const HASH_LEN: usize = 10;

/// Metadata that describes the user's object, not its copy: `kubectl apply`'s record would
/// make a later apply of the copy compute a diff against the original, and the revision
/// is the Deployment controller's own.
const NOT_INHERITED: &[&str] =
    &["kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision"];
/// Flux labels and annotations contain this (as Flagger filters them): carried over, they
/// would make Flux count the copy as its own and garbage-collect it.
const FLUX_MARKER: &str = "toolkit.fluxcd.io";
/// Argo CD's tracking annotations name the user's object, not the copy.
const ARGOCD_PREFIX: &str = "argocd.argoproj.io/";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("deployment {deployment}: {what} is missing")]
    Missing { deployment: String, what: &'static str },
    #[error(
        "deployment {deployment}: spec.selector.matchExpressions is not supported, only spec.selector.matchLabels \
         (the canary pods get each selector label's value with `-canary` appended)"
    )]
    MatchExpressions { deployment: String },
    #[error("deployment {deployment}: spec.selector.matchLabels is empty, so no label can set the canary pods apart")]
    EmptySelector { deployment: String },
    #[error("service {service}: it has no selector, so no copy of it can select the canary pods")]
    ServiceWithoutSelector { service: String },
    #[error(
        "service {service}: its selector {selector} would also select the canary pods (labels {pods}); it must use \
         at least one label of the deployment's selector ({keys}), whose values the canary pods change"
    )]
    ServiceSelectsCanary { service: String, selector: String, pods: String, keys: String },
    #[error(
        "service {service}: its copy {canary} (selector {selector}) would not select the canary pods (labels {pods}); \
         does the service select the deployment's pods at all?"
    )]
    CanaryNotSelected { service: String, canary: String, selector: String, pods: String },
}

/// The first 10 hex characters of the SHA-256 of `s`: stable across versions and
/// processes, so a resumed controller finds the objects it named.
pub fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().take(HASH_LEN / 2).map(|b| format!("{b:02x}")).collect()
}

/// `<base>-canary` if it fits in `max` characters; otherwise `<cut base>-<hash>-canary`,
/// the hash over the whole base so two long names that share a prefix stay apart. The cut
/// ends on an alphanumeric character, so the result stays a valid DNS name.
pub fn bounded_canary_name(base: &str, max: usize) -> String {
    let full = format!("{base}{CANARY_SUFFIX}");
    if full.chars().count() <= max {
        return full;
    }
    let keep = max.saturating_sub(1 + HASH_LEN + CANARY_SUFFIX.len());
    let prefix = cut(base, keep);
    format!("{prefix}-{}{CANARY_SUFFIX}", short_hash(base))
}

/// The first `n` characters of `s` without the non-alphanumeric ones they end on.
fn cut(s: &str, n: usize) -> String {
    let mut prefix: String = s.chars().take(n).collect();
    while prefix.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        prefix.pop();
    }
    prefix
}

/// `<name>-canary`: the canary Deployment (at most 253 characters).
pub fn canary_name(name: &str) -> String {
    bounded_canary_name(name, NAME_MAX)
}

/// `<svc>-canary`: the canary Service, whose name is a DNS label of at most 63 characters.
pub fn canary_service_name(name: &str) -> String {
    bounded_canary_name(name, LABEL_MAX)
}

/// The canary pods' value of a selector label: `<v>-canary`, or when that exceeds 63
/// characters `<cut v>-canary-<hash of v>`. It ends with a hash (never the word `canary`),
/// so a long value cannot collide with a short one, nor two long ones with each other.
pub fn canary_label_value(v: &str) -> String {
    if v.is_empty() {
        // `-canary` would start with a dash; an empty value is legal and rare.
        return CANARY_SUFFIX[1..].to_owned();
    }
    let full = format!("{v}{CANARY_SUFFIX}");
    if full.chars().count() <= LABEL_MAX {
        return full;
    }
    let keep = LABEL_MAX - CANARY_SUFFIX.len() - 1 - HASH_LEN;
    format!("{}{CANARY_SUFFIX}-{}", cut(v, keep), short_hash(v))
}

/// The user's labels or annotations that a generated object carries too.
pub fn inherited(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let keep = |k: &str| {
        !k.starts_with(PREFIX)
            && !NOT_INHERITED.contains(&k)
            && !k.contains(FLUX_MARKER)
            && !k.starts_with(ARGOCD_PREFIX)
    };
    map.into_iter().flatten().filter(|(k, _)| keep(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The labels of a generated object: the user's, inherited, plus ours.
pub fn managed_labels(user: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut labels = inherited(user);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// `owner` as the controller of a generated object, so garbage collection and `kubectl
/// describe` treat it as ours.
pub fn controller_ref(owner: OwnerReference) -> OwnerReference {
    OwnerReference { controller: Some(true), ..owner }
}

fn non_empty(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

fn show(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn object_id(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or("<unnamed>");
    match meta.namespace.as_deref() {
        Some(ns) => format!("{name}.{ns}"),
        None => name.to_owned(),
    }
}

/// The `matchLabels` of a Deployment's selector, refused when it has `matchExpressions`
/// (we could not rewrite them into a selector that excludes the stable pods) or nothing.
pub fn selector_labels(d: &Deployment) -> Result<&BTreeMap<String, String>, CopyError> {
    let deployment = object_id(&d.metadata);
    let spec = d.spec.as_ref().ok_or_else(|| CopyError::Missing { deployment: deployment.clone(), what: "spec" })?;
    if spec.selector.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(CopyError::MatchExpressions { deployment });
    }
    match &spec.selector.match_labels {
        Some(labels) if !labels.is_empty() => Ok(labels),
        _ => Err(CopyError::EmptySelector { deployment }),
    }
}

/// `labels` with the value of every key of `selector` rewritten by [`canary_label_value`].
pub fn rewrite(labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.clone(), if selector.contains_key(k) { canary_label_value(v) } else { v.clone() }))
        .collect()
}

/// The canary Deployment: `d`'s current pod template (the new revision: the webhook paused
/// `d` on it) with its selector labels rewritten, unpaused, at `replicas`, owned by `owner`.
pub fn canary_deployment(d: &Deployment, replicas: i32, owner: OwnerReference) -> Result<Deployment, CopyError> {
    let deployment = object_id(&d.metadata);
    let name = d.metadata.name.as_deref().ok_or(CopyError::Missing { deployment, what: "metadata.name" })?;
    let match_labels = selector_labels(d)?;
    let canary_selector = rewrite(match_labels, match_labels);
    // selector_labels has checked that the spec is there.
    let spec = d.spec.clone().unwrap_or_default();

    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let mut pod_labels = meta.labels.take().unwrap_or_default();
    pod_labels.extend(canary_selector.clone());
    meta.labels = Some(pod_labels);
    // Our annotations opt a Deployment in; on the copy they would start a release of it.
    meta.annotations = meta
        .annotations
        .take()
        .map(|a| a.into_iter().filter(|(k, _)| !k.starts_with(PREFIX)).collect())
        .and_then(non_empty);

    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(canary_name(name)),
            namespace: d.metadata.namespace.clone(),
            labels: Some(managed_labels(d.metadata.labels.as_ref())),
            annotations: non_empty(inherited(d.metadata.annotations.as_ref())),
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            paused: None,
            selector: LabelSelector { match_labels: Some(canary_selector), match_expressions: None },
            template,
            ..spec
        }),
        status: None,
    })
}

/// The canary Service: `svc`'s ports and selector, the values of the Deployment's selector
/// keys rewritten like the canary pods'. Always a plain ClusterIP Service: node ports,
/// load balancers and fixed IPs belong to the user's Service and would clash on a copy.
pub fn canary_service(svc: &Service, deployment_selector: &BTreeMap<String, String>, owner: OwnerReference) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.map(|ports| ports.into_iter().map(|p| ServicePort { node_port: None, ..p }).collect());
    Service {
        metadata: ObjectMeta {
            name: Some(canary_service_name(svc.metadata.name.as_deref().unwrap_or_default())),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(managed_labels(svc.metadata.labels.as_ref())),
            annotations: non_empty(inherited(svc.metadata.annotations.as_ref())),
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            ports,
            selector: spec.selector.map(|s| rewrite(&s, deployment_selector)),
            session_affinity: spec.session_affinity,
            session_affinity_config: spec.session_affinity_config,
            publish_not_ready_addresses: spec.publish_not_ready_addresses,
            ip_families: spec.ip_families,
            ip_family_policy: spec.ip_family_policy,
            internal_traffic_policy: spec.internal_traffic_policy,
            traffic_distribution: spec.traffic_distribution,
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Whether a Service selector selects pods with `labels`. An empty selector selects
/// nothing, as for a Service (its endpoints are then managed by hand).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the user's Service would send traffic to canary pods with `canary_pod_labels`:
/// a release must be refused then, or the stable share of the route reaches the canary.
pub fn service_would_select_canary(svc: &Service, canary_pod_labels: &BTreeMap<String, String>) -> bool {
    svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| selects(s, canary_pod_labels))
}

/// Every refusal about the Service of a release, with a message that says why: it has no
/// selector; it would select the canary pods of `canary` (built by [`canary_deployment`]);
/// or its copy would not select them.
pub fn check_service(svc: &Service, canary: &Deployment) -> Result<(), CopyError> {
    let service = object_id(&svc.metadata);
    let selector = svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    if selector.is_empty() {
        return Err(CopyError::ServiceWithoutSelector { service });
    }
    let canary_spec = canary.spec.clone().unwrap_or_default();
    let pods = canary_spec.template.metadata.and_then(|m| m.labels).unwrap_or_default();
    let rewritten = canary_spec.selector.match_labels.unwrap_or_default();
    if selects(&selector, &pods) {
        let keys = rewritten.keys().cloned().collect::<Vec<_>>().join(",");
        return Err(CopyError::ServiceSelectsCanary { service, selector: show(&selector), pods: show(&pods), keys });
    }
    // `rewrite` reads only the keys of its selector, and the canary's keys are the user's.
    let copy = rewrite(&selector, &rewritten);
    if !selects(&copy, &pods) {
        let canary = canary_service_name(svc.metadata.name.as_deref().unwrap_or_default());
        return Err(CopyError::CanaryNotSelected { service, canary, selector: show(&copy), pods: show(&pods) });
    }
    Ok(())
}

/// Canary replicas for the next weight: ceil(stable x weight / 100), at least 1, so the
/// canary can take its share before the route sends it.
pub fn canary_replicas(stable_replicas: i32, next_weight: u32) -> i32 {
    let weight = i64::from(next_weight.min(100));
    let wanted = (i64::from(stable_replicas.max(0)) * weight + 99) / 100;
    i32::try_from(wanted).unwrap_or(i32::MAX).max(1)
}
