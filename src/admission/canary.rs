//! Admission of our own kinds: `Canary` in both served versions (the errors and
//! warnings of [`Plan`]'s parsers), `MetricTemplate` and `AlertProvider`.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Findings;
use super::templates;
use crate::api::alert_provider::AlertProvider;
use crate::api::canary::{GROUP, v1alpha1, v1beta1};
use crate::api::field::{FieldError, Path};
use crate::api::metric_template::MetricTemplate;
use crate::release::plan::Plan;

/// Checks any object of ours on CREATE and UPDATE. An UPDATE that leaves the spec (and
/// the v1alpha1 spill annotation) as it was is not re-checked: the controller's own
/// writes of finalizers and annotations never fail on a rule added later.
pub fn validate(request: &AdmissionRequest<DynamicObject>) -> Findings {
    let Some(new) = &request.object else { return Findings::default() };
    if !matches!(request.operation, Operation::Create | Operation::Update) || request.kind.group != GROUP {
        return Findings::default();
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
