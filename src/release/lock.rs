//! The release lock as it is written on a Deployment's annotations.
//!
//! `stable-revision` present means a release holds the Deployment (it stays paused);
//! `canary-revision` is the revision under analysis; `failed-revision` remembers the
//! last one that failed, so re-applying it does not start the same failure again.

use std::collections::BTreeMap;

use super::revision::Revision;
use crate::api::annotations::{CANARY_REVISION, FAILED_REVISION, RETRY, STABLE_REVISION};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub stable: Option<Revision>,
    pub canary: Option<Revision>,
    pub failed: Option<Revision>,
    pub retry: Option<Revision>,
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
}
