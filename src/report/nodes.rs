//! Which upstream nodes of the generated route were the canary's and which the
//! stable's, pure.
//!
//! While a release runs, the canary's EndpointSlices name its nodes, as the analysis
//! reads them. Once it has ended they are gone (and after a promotion the stable
//! Service's endpoints are new pods that never served the generated route), so the
//! report reads the `node` values seen on the generated route in the window and calls
//! a node stable when there is evidence it served the stable version:
//!
//! - it is a ready endpoint of the stable Service now (a running or rolled-back release);
//! - it answered the generated route before the first weight step (at weight 0 only the
//!   stable version is routed);
//! - it has a series on the target's own ApisixRoute, from the minutes before the
//!   release to its end: the generated route takes that route's traffic during the
//!   release and the canary pods never serve the target's route (after a promotion the
//!   new stable pods do, and they are stable).
//!
//! Every other node seen is the canary's. A release without traffic before its first
//! step nor before it started, after a promotion, cannot tell them apart: its stable
//! nodes are then counted as the canary's (the report says which nodes it used). A
//! canary pod given the IP of an older stable pod is counted as stable once it is gone.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nodes {
    pub canary: Vec<String>,
    pub stable: Vec<String>,
}

/// `seen` split by the evidence above: `canary_now` from the canary's EndpointSlices
/// (empty once gone), `stable_evidence` from the three sources of stable nodes.
pub fn classify(seen: &[String], canary_now: &[String], stable_evidence: &[String]) -> Nodes {
    let canary_now: BTreeSet<&str> = canary_now.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
    let evidence: BTreeSet<&str> = stable_evidence.iter().map(String::as_str).collect();
    let seen: BTreeSet<&str> = seen.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
    let stable: BTreeSet<&str> =
        seen.iter().copied().filter(|n| evidence.contains(n) && !canary_now.contains(n)).collect();
    let canary: BTreeSet<&str> = seen.iter().copied().filter(|n| !stable.contains(n)).chain(canary_now).collect();
    let owned = |set: BTreeSet<&str>| set.into_iter().map(str::to_owned).collect();
    Nodes { canary: owned(canary), stable: owned(stable) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn nodes_are_split_by_evidence() {
        // (seen, canary endpoints now, stable evidence) -> (canary, stable)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            // Running: the canary's slices decide, the rest of what was seen is stable.
            (&["a", "b", "c"], &["c"], &["a", "b"], &["c"], &["a", "b"]),
            // Running, the canary not yet served: still its nodes (queries find nothing).
            (&["a", "b"], &["c"], &["a", "b"], &["c"], &["a", "b"]),
            // Ended: what served before the release or at weight 0 is stable.
            (&["a", "b", "c", "d"], &[], &["a", "b", "x"], &["c", "d"], &["a", "b"]),
            // A canary IP also in the evidence (an IP reused) is still the canary's now.
            (&["a", "c"], &["c"], &["a", "c"], &["c"], &["a"]),
            // No evidence at all: everything seen is counted as the canary's.
            (&["a", "b"], &[], &[], &["a", "b"], &[]),
            // Requests no upstream answered have an empty node: neither.
            (&["", "a"], &[], &["a"], &[], &["a"]),
            (&[], &[], &["a"], &[], &[]),
        ];
        for (seen, now, evidence, canary, stable) in cases {
            let got = classify(&v(seen), &v(now), &v(evidence));
            assert_eq!(got, Nodes { canary: v(canary), stable: v(stable) }, "{seen:?} {now:?} {evidence:?}");
        }
    }
}
