//! Admission of `apps/v1 Deployment`s: the interception of a release (mutate) and the
//! checks of our annotations (validate). Both are pure functions of the review.
//!
//! ```text
//!  UPDATE, template changed ──▶ paused=true + lock {stable, canary}   (Started)
//!  locked, same canary      ──▶ paused stays true                     (Held)
//!  locked, newer template   ──▶ canary := newer                       (Restarted)
//!  locked, stable template  ──▶ lock dropped, paused=false            (Cancelled)
//!  template == failed       ──▶ paused, no analysis                   (Refused)
//! ```

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde_json::Value;

use super::Findings;
use crate::api::annotations::{self, CANARY_REVISION, FAILED_REVISION, PROMOTED_REVISION, RETRY, STABLE_REVISION};
use crate::release::lock::Lock;
use crate::release::plan::Plan;
use crate::release::revision::Revision;

/// What the webhook was asked about one Deployment.
#[derive(Debug, Clone, Copy)]
pub struct Review<'a> {
    pub operation: &'a Operation,
    pub old: Option<&'a DynamicObject>,
    pub new: Option<&'a DynamicObject>,
    /// A dry run gets the very same answer: these functions cause nothing else, and
    /// the handler only records it in the logs.
    pub dry_run: bool,
}

/// The decision about a release, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a release: not opted in, not an update, or the pod template did not change.
    Untouched,
    /// A new release: the Deployment is paused and locked.
    Started { stable: Revision, canary: Revision },
    /// A newer revision replaced the one under analysis; the analysis restarts.
    Restarted { stable: Revision, replaced: Revision, canary: Revision },
    /// An update while locked, with no new revision: the Deployment stays paused.
    Held { canary: Revision },
    /// The template went back to the stable revision: the release is cancelled.
    Cancelled { stable: Revision },
    /// The template is a revision that already failed: paused, no new analysis.
    Refused { failed: Revision },
    /// The user removed the lock: we no longer hold the Deployment.
    Released,
}

impl Verdict {
    /// A short lowercase name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Untouched => "untouched",
            Verdict::Started { .. } => "started",
            Verdict::Restarted { .. } => "restarted",
            Verdict::Held { .. } => "held",
            Verdict::Cancelled { .. } => "cancelled",
            Verdict::Refused { .. } => "refused",
            Verdict::Released => "released",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub verdict: Verdict,
    pub patch: Patch,
    pub warnings: Vec<String>,
}

impl Mutation {
    fn untouched() -> Self {
        Self { verdict: Verdict::Untouched, patch: Patch(Vec::new()), warnings: Vec::new() }
    }
}

/// The state we want the Deployment in after this request.
struct Desired {
    lock: Lock,
    paused: bool,
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

/// Decides whether this write starts, holds, restarts or cancels a release.
pub fn mutate(review: &Review<'_>) -> Mutation {
    let Some(new) = review.new else {
        return Mutation::untouched();
    };
    if owned_by_canary(new) {
        return Mutation::untouched();
    }
    let new_ann = annotations(new);
    let old_lock = review.old.map(|o| Lock::from_annotations(annotations(o))).unwrap_or_default();
    if !annotations::opted_in(new_ann) {
        let mut m = Mutation::untouched();
        if old_lock.held() && paused(new) {
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
    let old_rev = Revision::of_template(old_template);
    let new_rev = Revision::of_template(new_template);
    let changed = old_rev != new_rev;

    let new_lock = Lock::from_annotations(new_ann);
    let name = new.metadata.name.as_deref().unwrap_or_default();
    let dropped = !new_lock.held() && old_lock.held();
    // Control is released only by removing the lock alone (the Deployment stays paused)
    // or by the controller's promotion, which names the revision it promotes. A write
    // that drops the lock otherwise (a replace or server-side apply of the original
    // manifest) would roll out an unanalysed template: the lock is kept.
    let promoted = new_ann.get(PROMOTED_REVISION).and_then(|v| Revision::parse(v));
    let promotion = old_lock.canary.is_some() && promoted == old_lock.canary && !old_lock.is_failed();
    if dropped && !changed && (paused(new) || promotion) {
        return released(new, new_ann);
    }
    let mut lock = if dropped { Lock { retry: new_lock.retry, ..old_lock.clone() } } else { new_lock };
    // The memory of a failure survives a write that drops it along with a new template.
    if changed && lock.failed.is_none() {
        lock.failed = old_lock.failed.clone();
    }
    let kept = dropped.then(|| {
        format!(
            "apisix-canary: this write removed the release lock; it is kept so no unanalysed template rolls \
             out. To release control remove only the lock: kubectl annotate deployment/{name} {STABLE_REVISION}-"
        )
    });
    if !lock.held() && !changed {
        return Mutation::untouched();
    }
    let (verdict, desired, warning) = decide(name, &lock, old_rev, new_rev, changed);
    let warning = match (kept, warning) {
        (Some(kept), Some(w)) => Some(format!("{w}; {}", kept.trim_start_matches("apisix-canary: "))),
        (kept, w) => kept.or(w),
    };
    let mut patch = Vec::new();
    lock_patch(new_ann, &desired.lock, &mut patch);
    if desired.paused != paused(new) {
        patch.push(add(&["spec", "paused"], Value::Bool(desired.paused)));
    }
    // Say why an unpause did not take, unless the warning already explains the pause.
    let warning = warning.or_else(|| {
        (desired.paused && !paused(new)).then(|| {
            let canary = desired.lock.canary.as_ref().map(Revision::as_str).unwrap_or_default();
            let stable = desired.lock.stable.as_ref().map(Revision::as_str).unwrap_or_default();
            let why = if desired.lock.is_failed() {
                format!("revision {canary} failed its analysis and stable {stable} keeps serving")
            } else {
                format!("release {canary} holds the deployment (stable {stable})")
            };
            format!(
                "apisix-canary: unpause reverted: {why}; to take back control: kubectl annotate \
                 deployment/{name} {STABLE_REVISION}-"
            )
        })
    });
    let warnings: Vec<String> = warning.into_iter().collect();
    Mutation { verdict, patch: Patch(patch), warnings }
}

/// Control handed back: the user removed the lock, or the controller promoted. Stale
/// lock annotations go with it.
fn released(new: &DynamicObject, new_ann: &BTreeMap<String, String>) -> Mutation {
    let mut m = Mutation { verdict: Verdict::Released, ..Mutation::untouched() };
    let stale = Lock { failed: Lock::from_annotations(new_ann).failed, ..Lock::default() };
    let mut ops = Vec::new();
    lock_patch(new_ann, &stale, &mut ops);
    m.patch = Patch(ops);
    if paused(new) {
        m.warnings.push(
            "apisix-canary: lock removed, control released; the deployment stays paused until you resume it \
             (kubectl rollout resume)"
                .to_owned(),
        );
    }
    m
}

/// The heart of the interception: from the lock in force and the two revisions, what
/// happens and which lock the Deployment carries afterwards.
fn decide(
    name: &str,
    lock: &Lock,
    old_rev: Revision,
    new_rev: Revision,
    changed: bool,
) -> (Verdict, Desired, Option<String>) {
    // A retry counts only for the revision that failed.
    let retried = lock.retry.as_ref() == Some(&new_rev) && lock.failed.as_ref() == Some(&new_rev);
    let refused = lock.failed.as_ref() == Some(&new_rev) && !retried;
    let stable = lock.stable.clone().unwrap_or(old_rev);
    if stable == new_rev {
        let desired = Desired { lock: Lock { failed: lock.failed.clone(), ..Lock::default() }, paused: false };
        let warning = lock.canary.as_ref().filter(|_| !lock.is_failed() || changed).map(|c| {
            format!("apisix-canary: pod template is back at stable revision {stable}; release of {c} cancelled")
        });
        return (Verdict::Cancelled { stable }, desired, warning);
    }
    let held_canary = lock.canary.as_ref() == Some(&new_rev);
    if refused {
        let desired = Desired {
            lock: Lock { stable: Some(stable.clone()), canary: Some(new_rev.clone()), ..lock.clone() },
            paused: true,
        };
        let warning = (changed || !held_canary).then(|| {
            format!(
                "apisix-canary: revision {new_rev} already failed its analysis; no new release, stable revision \
                 {stable} keeps serving. To try it again: kubectl annotate deployment/{name} {RETRY}={new_rev}"
            )
        });
        return (Verdict::Refused { failed: new_rev }, desired, warning);
    }
    let desired = Desired {
        lock: Lock {
            stable: Some(stable.clone()),
            canary: Some(new_rev.clone()),
            failed: lock.failed.clone().filter(|f| *f != new_rev),
            retry: None,
        },
        paused: true,
    };
    if held_canary && !retried {
        return (Verdict::Held { canary: new_rev }, Desired { lock: lock.clone(), ..desired }, None);
    }
    match &lock.canary {
        Some(previous) if !lock.is_failed() && !retried => {
            let warning =
                format!("apisix-canary: revision {new_rev} replaces {previous} under analysis; the analysis restarts");
            let verdict = Verdict::Restarted { stable, replaced: previous.clone(), canary: new_rev };
            (verdict, desired, Some(warning))
        }
        _ => {
            let warning = if retried {
                format!(
                    "apisix-canary: retrying failed revision {new_rev}; the deployment stays paused during the analysis"
                )
            } else {
                format!(
                    "apisix-canary: canary release of revision {new_rev} started (stable {stable}); the \
                     deployment stays paused during the analysis"
                )
            };
            (Verdict::Started { stable, canary: new_rev }, desired, Some(warning))
        }
    }
}

/// JSON-patch operations that turn the request's lock annotations into `desired`.
fn lock_patch(current: &BTreeMap<String, String>, desired: &Lock, ops: &mut Vec<PatchOperation>) {
    let fields = [
        (STABLE_REVISION, &desired.stable),
        (CANARY_REVISION, &desired.canary),
        (FAILED_REVISION, &desired.failed),
        (RETRY, &desired.retry),
    ];
    for (key, want) in fields {
        match (current.get(key), want) {
            (Some(have), Some(want)) if want == have.as_str() => {}
            (_, Some(want)) => ops.push(add(&["metadata", "annotations", key], Value::from(want.as_str()))),
            (Some(_), None) => ops.push(PatchOperation::Remove(RemoveOperation {
                path: PointerBuf::from_tokens(["metadata", "annotations", key]),
            })),
            (None, None) => {}
        }
    }
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(tokens.iter().copied()), value })
}

/// Checks every annotation under `apisix-canary.dev/`. Updates that leave our
/// annotations as they were are not re-checked, so an object stored before a rule
/// existed can still be scaled or edited elsewhere.
pub fn validate(review: &Review<'_>) -> Findings {
    let Some(new) = review.new else {
        return Findings::default();
    };
    if !matches!(review.operation, Operation::Create | Operation::Update) {
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
