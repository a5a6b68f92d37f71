//! Admission of `apps/v1 Deployment`s: the interception of a release (mutate) and the
//! checks of our annotations (validate). Both are pure functions of the review, thin
//! over `release::lock` (the transitions) and `release::Plan` (the settings).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde_json::Value;

use super::Findings;
use crate::api::annotations;
use crate::release::lock::{self, Lock, Transition, Update};
use crate::release::plan::Plan;
use crate::release::revision::Revision;

/// What the webhook was asked about one Deployment.
#[derive(Debug, Clone, Copy)]
pub struct Review<'a> {
    pub operation: &'a Operation,
    pub old: Option<&'a DynamicObject>,
    pub new: Option<&'a DynamicObject>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub transition: Transition,
    pub patch: Patch,
    pub warnings: Vec<String>,
}

impl Mutation {
    fn untouched() -> Self {
        Self { transition: Transition::Untouched, patch: Patch(Vec::new()), warnings: Vec::new() }
    }
}

fn annotations(obj: &DynamicObject) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    obj.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

fn template(obj: &DynamicObject) -> Option<&Value> {
    obj.data.get("spec")?.get("template")
}

fn paused(obj: &DynamicObject) -> bool {
    obj.data.get("spec").and_then(|s| s.get("paused")).and_then(Value::as_bool).unwrap_or(false)
}

/// Our generated `<d>-canary` copies are owned by their Canary and never intercepted.
fn owned_by_canary(obj: &DynamicObject) -> bool {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Canary" && o.api_version.starts_with(annotations::PREFIX.trim_end_matches('/')))
}

/// Decides whether this write starts, holds, restarts or cancels a release: the
/// transition is `release::lock`'s, this reads the object and writes the patch.
pub fn mutate(review: &Review<'_>) -> Mutation {
    let Some(new) = review.new else {
        return Mutation::untouched();
    };
    if owned_by_canary(new) {
        return Mutation::untouched();
    }
    let new_ann = annotations(new);
    if !annotations::opted_in(new_ann) {
        let mut m = Mutation::untouched();
        let was_held = review.old.is_some_and(|o| Lock::from_annotations(annotations(o)).held());
        if was_held && paused(new) {
            m.warnings.push(
                "apisix-canary: no longer opted in; the deployment stays paused until you resume it \
                 (kubectl rollout resume)"
                    .to_owned(),
            );
        }
        return m;
    }
    if !matches!(review.operation, Operation::Update) {
        return Mutation::untouched();
    }
    let (Some(old), Some(new_template)) = (review.old, template(new)) else {
        return Mutation::untouched();
    };
    let Some(old_template) = template(old) else {
        return Mutation::untouched();
    };
    let (old_revision, new_revision) = (Revision::of_template(old_template), Revision::of_template(new_template));
    let update = Update {
        name: new.metadata.name.as_deref().unwrap_or_default(),
        old: annotations(old),
        new: new_ann,
        old_revision: &old_revision,
        new_revision: &new_revision,
        paused: paused(new),
    };
    let outcome = lock::on_update(&update);
    if outcome.transition == Transition::Untouched {
        return Mutation::untouched();
    }
    let mut ops = Vec::new();
    outcome.lock.json_patch(new_ann, &mut ops);
    if outcome.paused != update.paused {
        let path = PointerBuf::from_tokens(["spec", "paused"]);
        ops.push(PatchOperation::Add(AddOperation { path, value: Value::Bool(outcome.paused) }));
    }
    Mutation { transition: outcome.transition, patch: Patch(ops), warnings: outcome.warning.into_iter().collect() }
}

/// Checks every annotation under `apisix-canary.dev/`. Updates that leave our
/// annotations as they were are not re-checked, so an object stored before a rule
/// existed can still be scaled or edited elsewhere.
pub fn validate(review: &Review<'_>) -> Findings {
    let Some(new) = review.new else {
        return Findings::default();
    };
    // Our generated copies carry our bookkeeping, not a user's settings.
    if !matches!(review.operation, Operation::Create | Operation::Update) || owned_by_canary(new) {
        return Findings::default();
    }
    let new_ann = annotations(new);
    if let (Operation::Update, Some(old)) = (review.operation, review.old)
        && !annotations::ours_differ(annotations(old), new_ann)
    {
        return Findings::default();
    }
    let name = new.metadata.name.as_deref().unwrap_or_default();
    Findings::of(Plan::from_annotations(name, new_ann))
}
