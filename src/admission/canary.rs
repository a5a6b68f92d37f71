//! Admission of our own kinds: `Canary` in both served versions (the errors and
//! warnings of [`Plan`]'s parsers, and no one's write over a mirror but the
//! controller's: [`mirror_update`]), `MetricTemplate` and `AlertProvider`.

use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Findings;
use super::templates;
use crate::api::alert_provider::AlertProvider;
use crate::api::annotations::{LAST_APPLIED, MIRROR_DIGEST, ROUTE};
use crate::api::canary::{GROUP, V1BETA1, convert, v1alpha1, v1beta1};
use crate::api::field::{FieldError, Path};
use crate::api::metric_template::MetricTemplate;
use crate::release::copies::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::release::mirror::{self, Origin};
use crate::release::plan::Plan;

/// Checks any object of ours on CREATE and UPDATE. An UPDATE that leaves the spec (and
/// the v1alpha1 spill annotation) as it was is not re-checked: the controller's own
/// writes of finalizers and annotations never fail on a rule added later.
pub fn validate(request: &AdmissionRequest<DynamicObject>) -> Findings {
    let Some(new) = &request.object else { return Findings::default() };
    if !matches!(request.operation, Operation::Create | Operation::Update) || request.kind.group != GROUP {
        return Findings::default();
    }
    if request.kind.kind == "Canary"
        && let Ok(canary) = as_v1beta1(new)
    {
        let refused = match request.old_object.as_ref().map(as_v1beta1) {
            None => mirror_create(&canary),
            Some(Ok(old)) => mirror_update(&old, &canary),
            Some(Err(_)) => None,
        };
        if let Some(refused) = refused {
            return Findings { errors: refused.into(), ..Findings::default() };
        }
    }
    if let Some(old) = &request.old_object {
        let spill = |o: &DynamicObject| {
            o.metadata.annotations.as_ref().and_then(|a| a.get(v1alpha1::SPILL_ANNOTATION)).cloned()
        };
        if old.data.get("spec") == new.data.get("spec") && spill(old) == spill(new) {
            return Findings::default();
        }
    }
    let value = match serde_json::to_value(new) {
        Ok(v) => v,
        Err(e) => return unreadable(&e),
    };
    let result = match (request.kind.version.as_str(), request.kind.kind.as_str()) {
        ("v1beta1", "Canary") => serde_json::from_value::<v1beta1::Canary>(value).map(|c| {
            let mut f = validate_v1beta1(&c.spec);
            if c.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(v1alpha1::SPILL_ANNOTATION)) {
                let path = Path::new("metadata").child("annotations").key(v1alpha1::SPILL_ANNOTATION);
                f.errors.push(FieldError::forbidden(&path, "reserved for the v1alpha1 form of a Canary"));
            }
            f
        }),
        ("v1alpha1", "Canary") => serde_json::from_value::<v1alpha1::Canary>(value).map(|c| validate_v1alpha1(&c)),
        (_, "MetricTemplate") => {
            serde_json::from_value::<MetricTemplate>(value).map(|t| templates::validate_metric_template(&t.spec))
        }
        (_, "AlertProvider") => {
            serde_json::from_value::<AlertProvider>(value).map(|a| templates::validate_alert_provider(&a.spec))
        }
        _ => Ok(Findings::default()),
    };
    result.unwrap_or_else(|e| unreadable(&e))
}

/// Whether a Canary may be created: one labelled as the controller's mirror must be
/// one, with the digest of its spec (the controller's own, or an exact copy of it). A
/// Canary of the user's that carries the label alone would be read as annotation mode.
pub fn mirror_create(new: &v1beta1::Canary) -> Option<FieldError> {
    if matches!(mirror::origin(new), Origin::User | Origin::Mirror) {
        return None;
    }
    let path = Path::new("metadata").child("labels").key(MANAGED_BY_LABEL);
    Some(FieldError::forbidden(
        &path,
        format!(
            "{MANAGED_BY:?} marks the Canary the controller makes from a Deployment's annotations (annotation \
             mode), with the digest of its spec in {MIRROR_DIGEST}; remove the label from a Canary of yours"
        ),
    ))
}

/// Whether an update of `old` may be made: a Canary the controller made from a
/// Deployment's annotations (`release::mirror`) is written by the controller alone, with
/// the digest of the spec it writes. Anyone else's change of its spec, its label or
/// digest, or a `kubectl apply` over it (which would merge the user's Canary into the
/// mirror, keeping the mirror's label and the fields the user never wrote) is refused,
/// naming the first such field and saying how to switch to Canary mode.
pub fn mirror_update(old: &v1beta1::Canary, new: &v1beta1::Canary) -> Option<FieldError> {
    if !matches!(mirror::origin(old), Origin::Mirror | Origin::Unstamped) {
        return None;
    }
    let annotation = |c: &v1beta1::Canary, key: &str| c.annotations().get(key).cloned();
    let path = if mirror::origin(new) == Origin::User {
        Path::new("metadata").child("labels").key(MANAGED_BY_LABEL)
    } else if (new.spec != old.spec || annotation(new, MIRROR_DIGEST) != annotation(old, MIRROR_DIGEST))
        && mirror::origin(new) != Origin::Mirror
    {
        Path::new("spec")
    } else if annotation(new, LAST_APPLIED) != annotation(old, LAST_APPLIED) {
        crate::api::annotations::path(LAST_APPLIED)
    } else {
        return None;
    };
    Some(FieldError::forbidden(&path, switch_modes(old)))
}

/// How to go from annotation mode to Canary mode, said where a mirror is written over.
fn switch_modes(mirror: &v1beta1::Canary) -> String {
    let (ns, name, d) = (mirror.namespace().unwrap_or_default(), mirror.name_any(), &mirror.spec.target_ref.name);
    format!(
        "Canary {ns}/{name} is made by the controller from the annotations of Deployment {ns}/{d} (annotation \
         mode) and written by it alone; to switch to Canary mode, remove the Deployment's {ROUTE} annotation and \
         its analysis settings (kubectl -n {ns} annotate deployment {d} {ROUTE}- apisix-canary.dev/<setting>- \
         ...), wait until the controller deletes this Canary once no release runs (kubectl -n {ns} wait \
         --for=delete canary/{name}), then create yours; or create yours under another name now: it takes the \
         Deployment over once those annotations are gone"
    )
}

/// A Canary of either served version as v1beta1.
fn as_v1beta1(o: &DynamicObject) -> Result<v1beta1::Canary, String> {
    let value = serde_json::to_value(o).map_err(|e| e.to_string())?;
    let value = convert::object_to(value, V1BETA1).map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn unreadable(e: &serde_json::Error) -> Findings {
    let mut f = Findings::default();
    f.errors.push(FieldError::invalid(&Path::new("spec"), "(object)", format!("cannot be read: {e}")));
    f
}

/// Checks a v1beta1 spec: the errors and warnings of its [`Plan`].
pub fn validate_v1beta1(spec: &v1beta1::CanarySpec) -> Findings {
    Findings::of(Plan::from_canary(spec))
}

/// Checks a v1alpha1 Canary: the flat fields with their own paths, the rest through
/// the v1beta1 expansion.
pub fn validate_v1alpha1(c: &v1alpha1::Canary) -> Findings {
    Findings::of(Plan::from_v1alpha1(c))
}
