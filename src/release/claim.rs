//! A Canary's claim on its target. As in Flagger, a Canary whose targetRef names a
//! Deployment is enough to protect it: the controller opts the Deployment in by writing
//! `apisix-canary.dev/canary: <canary>` on it, by server-side apply under its own field
//! manager ([`FIELD_MANAGER`]), so the webhook intercepts every release from then on
//! with no API call of its own. The annotation goes with the Canary: its deletion
//! applies an empty claim, which removes the annotation unless someone else wrote it
//! too. A GitOps tool leaves it alone (kubectl's three-way merge and server-side apply
//! only remove what they wrote), and a write that drops it while changing the pod
//! template keeps it (the webhook, `admission::deployment`).
//!
//! Whether the target can be claimed is a pure function of what was read.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::annotations::{ANALYSIS_KEYS, CANARY, ROUTE};
use crate::release::lifecycle::Protection;

/// The field manager of the claim, apart from the controller's other writes so that
/// applying an empty claim removes only the annotation.
pub const FIELD_MANAGER: &str = "apisix-canary-claim";

/// What was read about one Canary's target.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub canary: &'a str,
    pub namespace: &'a str,
    pub deployment: &'a str,
    /// The Canary was made from the Deployment's annotations (annotation mode).
    pub annotation_mode: bool,
    /// The Deployment's annotations, `None` when it does not exist.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// Our Deployment webhook never sees this namespace (kube-system, our own).
    pub excluded: bool,
    /// When the Deployment's `canary` annotation names another Canary: whether that
    /// one exists (`None`: not looked up).
    pub other_exists: Option<bool>,
}

/// The other Canary a Deployment's opt-in names, which must be looked up to decide.
pub fn other_canary<'a>(canary: &str, annotations: Option<&'a BTreeMap<String, String>>) -> Option<&'a str> {
    annotations?.get(CANARY).map(String::as_str).filter(|other| *other != canary)
}

/// Whether the webhook intercepts the target's releases for this Canary, and if not,
/// what to do or say.
pub fn protection(t: &Target<'_>) -> Protection {
    let (ns, d) = (t.namespace, t.deployment);
    let Some(annotations) = t.annotations else {
        return Protection::Unprotected(format!("Deployment {ns}/{d} not found"));
    };
    if t.excluded {
        return Protection::Unprotected(format!(
            "namespace {ns} is excluded from our Deployment webhook (kube-system and the controller's own \
             namespace are), so no release of Deployment {ns}/{d} could be intercepted"
        ));
    }
    if t.annotation_mode {
        // Made from the Deployment's own opt-in: the release reads those annotations.
        return Protection::Protected;
    }
    match annotations.get(CANARY) {
        Some(name) if name == t.canary => Protection::Protected,
        Some(other) if t.other_exists == Some(false) => {
            tracing::debug!(deployment = %format!("{d}.{ns}"), stale = %other, "taking over from a Canary that is gone");
            Protection::Claim
        }
        Some(other) => Protection::Unprotected(format!(
            "Deployment {ns}/{d} is the target of Canary {ns}/{other} (its {CANARY} annotation names it); a \
             Deployment is released by one Canary: delete one of them"
        )),
        None if annotations.contains_key(ROUTE) => Protection::Unprotected(annotation_mode(t, annotations)),
        None => Protection::Claim,
    }
}

/// Why a Deployment in annotation mode is not this Canary's, and the command that
/// switches it to Canary mode: the opt-in and settings written on it, removed (the lock
/// is left to the release that holds it).
fn annotation_mode(t: &Target<'_>, annotations: &BTreeMap<String, String>) -> String {
    let (ns, d, canary) = (t.namespace, t.deployment, t.canary);
    let releaser = if canary == d {
        "this Canary, of its name, is not the one the controller makes from them".to_owned()
    } else {
        format!("Canary {ns}/{d}, made from them, runs its releases")
    };
    let keys: Vec<String> = annotations
        .keys()
        .filter(|k| *k == ROUTE || ANALYSIS_KEYS.contains(&k.as_str()))
        .map(|k| format!("{k}-"))
        .collect();
    format!(
        "Deployment {ns}/{d} is in annotation mode (opted in by its {ROUTE} annotation) and {releaser}; for \
         Canary {ns}/{canary} to take it over, remove those annotations: kubectl -n {ns} annotate deployment {d} {}",
        keys.join(" ")
    )
}

/// The server-side apply body of the claim: the annotation alone.
pub fn claim(namespace: &str, deployment: &str, canary: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment, "namespace": namespace, "annotations": {CANARY: canary}},
    })
}

/// The server-side apply body that gives the claim up: nothing, so what only the claim
/// wrote is removed.
pub fn release(namespace: &str, deployment: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": deployment, "namespace": namespace}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(annotations: Option<&'a BTreeMap<String, String>>) -> Target<'a> {
        Target {
            canary: "web",
            namespace: "test",
            deployment: "podinfo",
            annotation_mode: false,
            annotations,
            excluded: false,
            other_exists: None,
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_canary_alone_claims_its_deployment() {
        let none = ann(&[("team", "a")]);
        assert_eq!(protection(&target(Some(&none))), Protection::Claim);
        let ours = ann(&[(CANARY, "web")]);
        assert_eq!(protection(&target(Some(&ours))), Protection::Protected);
        let body = claim("test", "podinfo", "web");
        assert_eq!(body["metadata"]["annotations"], json!({"apisix-canary.dev/canary": "web"}));
        assert_eq!(release("test", "podinfo")["metadata"].get("annotations"), None);
    }

    #[test]
    fn what_cannot_be_protected_says_why() {
        let why = |p: Protection| match p {
            Protection::Unprotected(why) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(why(protection(&target(None))), "Deployment test/podinfo not found");
        let taken = ann(&[(CANARY, "other")]);
        assert_eq!(other_canary("web", Some(&taken)), Some("other"));
        let w = why(protection(&Target { other_exists: Some(true), ..target(Some(&taken)) }));
        assert!(w.starts_with("Deployment test/podinfo is the target of Canary test/other"), "{w}");
        // A stale opt-in naming a Canary that is gone is taken over.
        assert_eq!(protection(&Target { other_exists: Some(false), ..target(Some(&taken)) }), Protection::Claim);
        let inline = ann(&[(ROUTE, "podinfo"), ("apisix-canary.dev/max-weight", "30"), ("team", "a")]);
        assert_eq!(
            why(protection(&target(Some(&inline)))),
            "Deployment test/podinfo is in annotation mode (opted in by its apisix-canary.dev/route annotation) and \
             Canary test/podinfo, made from them, runs its releases; for Canary test/web to take it over, remove \
             those annotations: kubectl -n test annotate deployment podinfo apisix-canary.dev/max-weight- \
             apisix-canary.dev/route-"
        );
        // The lock stays: the release that holds the Deployment ends by its own rules.
        let locked = ann(&[(ROUTE, "podinfo"), ("apisix-canary.dev/stable-revision", "5f7d9c8b6a")]);
        let w = why(protection(&Target { canary: "podinfo", ..target(Some(&locked)) }));
        assert!(w.contains("and this Canary, of its name, is not the one the controller makes from them;"), "{w}");
        assert!(w.ends_with("annotate deployment podinfo apisix-canary.dev/route-"), "{w}");
        let none = BTreeMap::new();
        let w = why(protection(&Target { excluded: true, ..target(Some(&none)) }));
        assert!(w.starts_with("namespace test is excluded from our Deployment webhook"), "{w}");
        // Annotation mode: the Deployment's own opt-in.
        assert_eq!(protection(&Target { annotation_mode: true, ..target(Some(&inline)) }), Protection::Protected);
    }
}
