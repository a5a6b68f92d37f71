//! The release lock on a Deployment's annotations, and every transition of it.
//!
//! The lock on the Deployment is the authority: the webhook enforces it on every write
//! (the Deployment stays paused while it is held), and the controller changes it only
//! through the transitions here. The Canary status reports it; it never overrides it.
//!
//! ```text
//!  webhook, UPDATE:  template changed ──▶ paused + {stable, canary}       Started
//!                    locked, same canary ──▶ paused stays               Held
//!                    locked, newer template ──▶ canary := newer           Restarted
//!                    locked, stable template ──▶ lock dropped, unpaused   Cancelled
//!                    template == failed ──▶ paused, no analysis           Refused
//!                    lock removed alone, or promoted-revision ──▶ control Released
//!  controller:       promote ──▶ unpaused, lock dropped, promoted-revision Promoted
//!                    fail ──▶ failed := canary, still paused             Failed
//! ```
//!
//! `stable-revision` present means a release holds the Deployment; `canary-revision` is
//! the revision under analysis; `failed-revision` remembers the last one that failed, so
//! re-applying it does not start the same failure again; `retry` asks for it once more.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use serde_json::{Map, Value};

use super::revision::Revision;
use crate::api::annotations::{CANARY_REVISION, FAILED_REVISION, PROMOTED_REVISION, RETRY, STABLE_REVISION};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub stable: Option<Revision>,
    pub canary: Option<Revision>,
    pub failed: Option<Revision>,
    pub retry: Option<Revision>,
}

/// What happened to the lock, for logs, metrics, events and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
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
    /// The user removed the lock, or the controller promoted: we no longer hold it.
    Released,
    /// The controller promoted the canary: unpaused, the lock dropped in the same write.
    Promoted { revision: Revision },
    /// The controller rolled the canary back: it is remembered as failed, still paused.
    Failed { revision: Revision },
}

impl Transition {
    /// A short lowercase name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Untouched => "untouched",
            Transition::Started { .. } => "started",
            Transition::Restarted { .. } => "restarted",
            Transition::Held { .. } => "held",
            Transition::Cancelled { .. } => "cancelled",
            Transition::Refused { .. } => "refused",
            Transition::Released => "released",
            Transition::Promoted { .. } => "promoted",
            Transition::Failed { .. } => "failed",
        }
    }
}

/// The state a Deployment should be in after a transition, and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub transition: Transition,
    pub lock: Lock,
    pub paused: bool,
    pub warning: Option<String>,
}

/// An UPDATE of an opted-in Deployment, as the webhook sees it.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    pub name: &'a str,
    pub old: &'a BTreeMap<String, String>,
    pub new: &'a BTreeMap<String, String>,
    pub old_revision: &'a Revision,
    pub new_revision: &'a Revision,
    /// `spec.paused` of the new object.
    pub paused: bool,
    /// `spec.paused` of the stored object: false under the lock only when a write went
    /// past the webhook (it was down, failurePolicy Ignore) and resumed the Deployment.
    pub old_paused: bool,
}

impl Lock {
    /// Reads the lock; a value that is not a revision counts as absent (validation
    /// rejects such values before they are stored).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| annotations.get(key).and_then(|v| Revision::parse(v));
        Self {
            stable: get(STABLE_REVISION),
            canary: get(CANARY_REVISION),
            failed: get(FAILED_REVISION),
            retry: get(RETRY),
        }
    }

    /// Whether a release holds the Deployment.
    pub fn held(&self) -> bool {
        self.stable.is_some()
    }

    /// Whether the release in the lock is one that already failed.
    pub fn is_failed(&self) -> bool {
        self.canary.is_some() && self.canary == self.failed
    }

    /// The annotation changes that turn `current` into this lock: `None` removes a key.
    pub fn diff(&self, current: &BTreeMap<String, String>) -> Vec<(&'static str, Option<String>)> {
        let fields = [
            (STABLE_REVISION, &self.stable),
            (CANARY_REVISION, &self.canary),
            (FAILED_REVISION, &self.failed),
            (RETRY, &self.retry),
        ];
        let mut changes = Vec::new();
        for (key, want) in fields {
            match (current.get(key), want) {
                (Some(have), Some(want)) if want == have.as_str() => {}
                (_, Some(want)) => changes.push((key, Some(want.to_string()))),
                (Some(_), None) => changes.push((key, None)),
                (None, None) => {}
            }
        }
        changes
    }

    /// JSON-patch operations that turn `current` into this lock, relative to an object
    /// whose annotations are `current` (the webhook patches the request object).
    pub fn json_patch(&self, current: &BTreeMap<String, String>, ops: &mut Vec<PatchOperation>) {
        for (key, value) in self.diff(current) {
            let path = PointerBuf::from_tokens(["metadata", "annotations", key]);
            ops.push(match value {
                Some(v) => PatchOperation::Add(AddOperation { path, value: Value::from(v) }),
                None => PatchOperation::Remove(RemoveOperation { path }),
            });
        }
    }

    /// The controller's promotion of the canary under analysis: unpause and drop the
    /// lock in ONE write, naming the promoted revision so the webhook tells it from a
    /// write that merely dropped the lock. `None` when there is nothing to promote.
    pub fn promote(&self) -> Option<Outcome> {
        let revision = self.canary.clone().filter(|_| self.held() && !self.is_failed())?;
        Some(Outcome {
            transition: Transition::Promoted { revision },
            lock: Lock { failed: self.failed.clone(), ..Lock::default() },
            paused: false,
            warning: None,
        })
    }

    /// The controller's rollback: the canary is remembered as failed; the lock stays
    /// held so the Deployment stays paused on it while the stable pods serve.
    pub fn fail(&self) -> Option<Outcome> {
        let revision = self.canary.clone().filter(|_| self.held())?;
        Some(Outcome {
            transition: Transition::Failed { revision: revision.clone() },
            lock: Lock { failed: Some(revision), retry: None, ..self.clone() },
            paused: true,
            warning: None,
        })
    }

    /// The controller's end of a release whose Deployment was resumed under the lock by a
    /// write the webhook did not see: its template rolled out, so the lock is dropped
    /// and the Deployment left running (the memory of a failure stays).
    pub fn resumed(&self) -> Option<Outcome> {
        self.held().then(|| Outcome {
            transition: Transition::Released,
            lock: Lock { failed: self.failed.clone(), ..Lock::default() },
            paused: false,
            warning: None,
        })
    }

    /// The controller's late interception of `revision`, a template written under this
    /// lock while the webhook was down (failurePolicy Ignore): what the webhook would
    /// have made of it (a release started or restarted, refused when it already failed,
    /// cancelled when it is the stable one). `None` when it is the revision the lock
    /// already names.
    pub fn intercept(&self, revision: &Revision) -> Option<Outcome> {
        (self.held() && self.canary.as_ref() != Some(revision)).then(|| decide("", self, revision, revision, true))
    }

    /// A merge patch (JSON merge or strategic) of a Deployment that writes `outcome`
    /// over `current` annotations; with `promoted-revision` for a promotion.
    pub fn merge_patch(current: &BTreeMap<String, String>, outcome: &Outcome) -> Value {
        let mut annotations: Map<String, Value> = outcome
            .lock
            .diff(current)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.map_or(Value::Null, Value::from)))
            .collect();
        if let Transition::Promoted { revision } = &outcome.transition {
            annotations.insert(PROMOTED_REVISION.to_owned(), Value::from(revision.as_str()));
        }
        serde_json::json!({
            "metadata": {"annotations": annotations},
            "spec": {"paused": outcome.paused},
        })
    }
}

/// Decides what an UPDATE of an opted-in Deployment does to the lock. Pure.
pub fn on_update(u: &Update<'_>) -> Outcome {
    let old_lock = Lock::from_annotations(u.old);
    let new_lock = Lock::from_annotations(u.new);
    let changed = u.old_revision != u.new_revision;
    let dropped = !new_lock.held() && old_lock.held();
    // Control is released only by removing the lock alone (the Deployment stays paused)
    // or by the controller's promotion, which names the revision it promotes. A write
    // that drops the lock otherwise (a replace or server-side apply of the original
    // manifest) would roll out an unanalysed template: the lock is kept. Unless the
    // Deployment already runs unpaused (resumed past the webhook): its template has
    // rolled out, and pausing it again would only strand a half rollout.
    let promoted = u.new.get(PROMOTED_REVISION).and_then(|v| Revision::parse(v));
    let promotion = old_lock.canary.is_some() && promoted == old_lock.canary && !old_lock.is_failed();
    if dropped && !changed && (u.paused || promotion || !u.old_paused) {
        return released(u);
    }
    let mut lock = if dropped { Lock { retry: new_lock.retry, ..old_lock.clone() } } else { new_lock };
    // The memory of a failure survives a write that drops it along with a new template.
    if changed && lock.failed.is_none() {
        lock.failed = old_lock.failed.clone();
    }
    if !lock.held() && !changed {
        return untouched(&lock, u.paused);
    }
    let mut outcome = decide(u.name, &lock, u.old_revision, u.new_revision, changed);
    // Kept, unless the write ended the release anyway (back at the stable template).
    if dropped && outcome.lock.held() {
        let kept = format!(
            "this write removed the release lock; it is kept so no unanalysed template rolls out. To release \
             control remove only the lock: kubectl annotate deployment/{} {STABLE_REVISION}-",
            u.name
        );
        outcome.warning = Some(match outcome.warning.take() {
            Some(w) => format!("{w}; {kept}"),
            None => format!("apisix-canary: {kept}"),
        });
    }
    // Say why an unpause did not take, unless the warning already explains the pause.
    if outcome.warning.is_none() && outcome.paused && !u.paused {
        let l = &outcome.lock;
        let canary = l.canary.as_ref().map(Revision::as_str).unwrap_or_default();
        let stable = l.stable.as_ref().map(Revision::as_str).unwrap_or_default();
        let why = if l.is_failed() {
            format!("revision {canary} failed its analysis and stable {stable} keeps serving")
        } else {
            format!("release {canary} holds the deployment (stable {stable})")
        };
        outcome.warning = Some(format!(
            "apisix-canary: unpause reverted: {why}; to take back control: kubectl annotate deployment/{} \
             {STABLE_REVISION}-",
            u.name
        ));
    }
    outcome
}

fn untouched(lock: &Lock, paused: bool) -> Outcome {
    Outcome { transition: Transition::Untouched, lock: lock.clone(), paused, warning: None }
}

/// Control handed back: the user removed the lock, or the controller promoted. Stale
/// lock annotations go with it; the memory of a failure stays.
fn released(u: &Update<'_>) -> Outcome {
    let failed = Lock::from_annotations(u.new).failed;
    let warning = u.paused.then(|| {
        "apisix-canary: lock removed, control released; the deployment stays paused until you resume it \
         (kubectl rollout resume)"
            .to_owned()
    });
    Outcome { transition: Transition::Released, lock: Lock { failed, ..Lock::default() }, paused: u.paused, warning }
}

/// The heart of the interception: from the lock in force and the two revisions, what
/// happens and which lock the Deployment carries afterwards.
fn decide(name: &str, lock: &Lock, old_rev: &Revision, new_rev: &Revision, changed: bool) -> Outcome {
    // A retry counts only for the revision that failed.
    let retried = lock.retry.as_ref() == Some(new_rev) && lock.failed.as_ref() == Some(new_rev);
    let refused = lock.failed.as_ref() == Some(new_rev) && !retried;
    let stable = lock.stable.clone().unwrap_or_else(|| old_rev.clone());
    let new_rev = new_rev.clone();
    if stable == new_rev {
        let warning = lock.canary.as_ref().filter(|_| !lock.is_failed() || changed).map(|c| {
            format!("apisix-canary: pod template is back at stable revision {stable}; release of {c} cancelled")
        });
        let lock = Lock { failed: lock.failed.clone(), ..Lock::default() };
        return Outcome { transition: Transition::Cancelled { stable }, lock, paused: false, warning };
    }
    let held_canary = lock.canary.as_ref() == Some(&new_rev);
    if refused {
        let warning = (changed || !held_canary).then(|| {
            format!(
                "apisix-canary: revision {new_rev} already failed its analysis; no new release, stable revision \
                 {stable} keeps serving. To try it again: kubectl annotate deployment/{name} {RETRY}={new_rev}"
            )
        });
        let lock = Lock { stable: Some(stable), canary: Some(new_rev.clone()), ..lock.clone() };
        return Outcome { transition: Transition::Refused { failed: new_rev }, lock, paused: true, warning };
    }
    if held_canary && !retried {
        return Outcome {
            transition: Transition::Held { canary: new_rev },
            lock: lock.clone(),
            paused: true,
            warning: None,
        };
    }
    let desired = Lock {
        stable: Some(stable.clone()),
        canary: Some(new_rev.clone()),
        failed: lock.failed.clone().filter(|f| *f != new_rev),
        retry: None,
    };
    let (transition, warning) = match &lock.canary {
        Some(previous) if !lock.is_failed() && !retried => (
            Transition::Restarted { stable, replaced: previous.clone(), canary: new_rev.clone() },
            format!("apisix-canary: revision {new_rev} replaces {previous} under analysis; the analysis restarts"),
        ),
        _ if retried => (
            Transition::Started { stable, canary: new_rev.clone() },
            format!(
                "apisix-canary: retrying failed revision {new_rev}; the deployment stays paused during the analysis"
            ),
        ),
        _ => (
            Transition::Started { stable: stable.clone(), canary: new_rev.clone() },
            format!(
                "apisix-canary: canary release of revision {new_rev} started (stable {stable}); the deployment \
                 stays paused during the analysis"
            ),
        ),
    };
    Outcome { transition, lock: desired, paused: true, warning: Some(warning) }
}
