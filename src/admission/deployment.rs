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

/// What the webhook was asked about one Deployment: full `DynamicObject`s, or the
/// fields the hooks read, parsed from the review ([`super::request`]).
#[derive(Debug)]
pub struct Review<'a, O = DynamicObject> {
    pub operation: &'a Operation,
    pub old: Option<&'a O>,
    pub new: Option<&'a O>,
}

impl<O> Clone for Review<'_, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for Review<'_, O> {}

/// What the Deployment hooks read of an object.
pub trait Object {
    /// How `spec.template` is read: equal templates have the same revision.
    type Template: PartialEq;
    fn name(&self) -> &str;
    fn annotations(&self) -> &BTreeMap<String, String>;
    /// `spec.template`, `Some(Null)` when it is an explicit null.
    fn template(&self) -> Option<&Self::Template>;
    /// [`Revision::of_template`] of a template.
    fn revision(template: &Self::Template) -> Revision;
    /// `spec.paused`; anything but `true` is not paused.
    fn paused(&self) -> bool;
    /// Our generated `<d>-canary` copies are owned by their Canary and never intercepted.
    fn owned_by_canary(&self) -> bool;
}

static NO_ANNOTATIONS: BTreeMap<String, String> = BTreeMap::new();

/// An owner reference to one of our Canaries.
pub(crate) fn is_canary_owner(kind: &str, api_version: &str) -> bool {
    kind == "Canary" && api_version.starts_with(annotations::PREFIX.trim_end_matches('/'))
}

impl Object for DynamicObject {
    type Template = Value;

    fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    fn annotations(&self) -> &BTreeMap<String, String> {
        self.metadata.annotations.as_ref().unwrap_or(&NO_ANNOTATIONS)
    }

    fn template(&self) -> Option<&Value> {
        self.data.get("spec")?.get("template")
    }

    fn revision(template: &Value) -> Revision {
        Revision::of_template(template)
    }

    fn paused(&self) -> bool {
        self.data.get("spec").and_then(|s| s.get("paused")).and_then(Value::as_bool).unwrap_or(false)
    }

    fn owned_by_canary(&self) -> bool {
        self.metadata.owner_references.iter().flatten().any(|o| is_canary_owner(&o.kind, &o.api_version))
    }
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

/// Decides whether this write starts, holds, restarts or cancels a release: the
/// transition is `release::lock`'s, this reads the object and writes the patch.
pub fn mutate<O: Object>(review: &Review<'_, O>) -> Mutation {
    let Some(new) = review.new else {
        return Mutation::untouched();
    };
    if new.owned_by_canary() {
        return Mutation::untouched();
    }
    let mut new_ann = new.annotations();
    // A write that drops a Canary's opt-in while changing the pod template (a `kubectl
    // replace` or sync of a manifest without it) keeps it: the Canary still targets the
    // Deployment, and the change is a release. Dropping it alone is honoured.
    let kept = kept_opt_in(review);
    let with_opt_in;
    if let Some((_, canary)) = &kept {
        let mut annotations = new_ann.clone();
        annotations.insert(annotations::CANARY.to_owned(), canary.clone());
        with_opt_in = annotations;
        new_ann = &with_opt_in;
    }
    if !annotations::opted_in(new_ann) {
        let mut m = Mutation::untouched();
        let was_held = review.old.is_some_and(|o| Lock::from_annotations(o.annotations()).held());
        if was_held && new.paused() {
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
    let (Some(old), Some(new_template)) = (review.old, new.template()) else {
        return Mutation::untouched();
    };
    let Some(old_template) = old.template() else {
        return Mutation::untouched();
    };
    let new_revision = O::revision(new_template);
    // Most updates (replicas, labels, our own annotations) keep the template: hash it once.
    let old_revision = if old_template == new_template { new_revision.clone() } else { O::revision(old_template) };
    let update = Update {
        name: new.name(),
        old: old.annotations(),
        new: new_ann,
        old_revision: &old_revision,
        new_revision: &new_revision,
        paused: new.paused(),
        old_paused: old.paused(),
    };
    let outcome = lock::on_update(&update);
    if outcome.transition == Transition::Untouched && kept.is_none() {
        return Mutation::untouched();
    }
    let mut ops = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    if let Some((op, canary)) = kept {
        ops.push(op);
        warnings.push(format!(
            "apisix-canary: this write removed {CANARY} and changed the pod template; the annotation is kept, as \
             Canary {canary} still targets this Deployment (delete the Canary to stop its releases)",
            CANARY = annotations::CANARY
        ));
    }
    outcome.lock.json_patch(new_ann, &mut ops);
    if outcome.paused != update.paused {
        let path = PointerBuf::from_tokens(["spec", "paused"]);
        ops.push(PatchOperation::Add(AddOperation { path, value: Value::Bool(outcome.paused) }));
    }
    warnings.extend(outcome.warning);
    Mutation { transition: outcome.transition, patch: Patch(ops), warnings }
}

/// The Canary opt-in an update drops while it changes the pod template, with the patch
/// operation that puts it back: what the stored object named, if the new one names
/// nothing and does not opt in by annotations either.
fn kept_opt_in<O: Object>(review: &Review<'_, O>) -> Option<(PatchOperation, String)> {
    let (Operation::Update, Some(old), Some(new)) = (review.operation, review.old, review.new) else { return None };
    let canary = old.annotations().get(annotations::CANARY)?;
    if annotations::opted_in(new.annotations()) || old.template() == new.template() {
        return None;
    }
    // A write without annotations has no map to add a key to.
    let op = if new.annotations().is_empty() {
        let path = PointerBuf::from_tokens(["metadata", "annotations"]);
        AddOperation { path, value: serde_json::json!({ annotations::CANARY: canary }) }
    } else {
        let path = PointerBuf::from_tokens(["metadata", "annotations", annotations::CANARY]);
        AddOperation { path, value: Value::from(canary.clone()) }
    };
    Some((PatchOperation::Add(op), canary.clone()))
}

/// Checks every annotation under `apisix-canary.dev/`. Updates that leave our
/// annotations as they were are not re-checked, so an object stored before a rule
/// existed can still be scaled or edited elsewhere.
pub fn validate<O: Object>(review: &Review<'_, O>) -> Findings {
    let Some(new) = review.new else {
        return Findings::default();
    };
    // Our generated copies carry our bookkeeping, not a user's settings.
    if !matches!(review.operation, Operation::Create | Operation::Update) || new.owned_by_canary() {
        return Findings::default();
    }
    let new_ann = new.annotations();
    if let (Operation::Update, Some(old)) = (review.operation, review.old)
        && !annotations::ours_differ(old.annotations(), new_ann)
    {
        return Findings::default();
    }
    let name = new.name();
    Findings::of(Plan::from_annotations(name, new_ann))
}
