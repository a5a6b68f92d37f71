//! Which upstream nodes of the generated route were this release's canary and which the
//! stable's, pure.
//!
//! While a release runs, the canary's EndpointSlices name its nodes, as the analysis
//! reads them. Once it has ended they are gone (and after a promotion the stable
//! Service's endpoints are new pods that served the generated route only while it was
//! promoted), so the report reads the `node` values that answered the generated route
//! during the release (from its start, not before: the route of an earlier release has
//! the same name) and calls a node stable when there is evidence it served the stable
//! version:
//!
//! - it is a ready endpoint of the stable Service now (a running or rolled-back release,
//!   or the new stable pods of a promotion);
//! - it answered the generated route before the first weight step (at weight 0 only the
//!   stable version is routed);
//! - it has a series on the target's own ApisixRoute, from the minutes before the
//!   release to its end: the generated route takes that route's traffic during the
//!   release and the canary pods never serve the target's route;
//! - it answered the generated route of an earlier release (the series exported before
//!   this one started): a canary's pods live for one release, so a node that served an
//!   earlier one and still answers is a stable pod.
//!
//! Every other node that answered is this release's canary. A promoted release whose
//! stable pods left no such evidence (no traffic before its first step, nor before it
//! started, nor an earlier release) cannot tell them apart: its stable nodes are then
//! counted as the canary's, and [`Nodes::told_apart`] says so. A canary pod given the IP
//! of an older pod is counted as stable once it is gone.

use std::collections::BTreeSet;

/// What the cluster and Prometheus say about the nodes of a release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The nodes that answered the generated route during the release.
    pub seen: Vec<String>,
    /// The canary Service's ready endpoints now (none once the release has ended).
    pub canary_now: Vec<String>,
    /// The stable Service's ready endpoints now.
    pub stable_now: Vec<String>,
    /// The nodes that served the stable version before the canary was routed: at weight
    /// 0, on the target's own route, or on an earlier release's generated route.
    pub before: Vec<String>,
    /// The release ended in a promotion: the stable Service's endpoints now are the new
    /// pods, not the ones the canary was compared with.
    pub promoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    pub canary: Vec<String>,
    pub stable: Vec<String>,
    /// False when nothing told the stable's nodes during the release from the canary's
    /// (see the module doc): `canary` then holds both.
    pub told_apart: bool,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes { canary: Vec::new(), stable: Vec::new(), told_apart: true }
    }
}

/// The nodes of this release, split by `e` (see the module doc).
pub fn classify(e: &Evidence) -> Nodes {
    let set = |list: &[String]| -> BTreeSet<String> { list.iter().filter(|n| !n.is_empty()).cloned().collect() };
    let (seen, canary_now, before) = (set(&e.seen), set(&e.canary_now), set(&e.before));
    let evidence: BTreeSet<String> = before.iter().chain(&set(&e.stable_now)).cloned().collect();
    let stable: BTreeSet<String> =
        seen.iter().filter(|n| evidence.contains(*n) && !canary_now.contains(*n)).cloned().collect();
    let canary: BTreeSet<String> = seen.iter().filter(|n| !stable.contains(*n)).chain(&canary_now).cloned().collect();
    // After a promotion, only what served before the canary was routed tells the stable
    // the canary was compared with.
    let told_apart = !canary_now.is_empty() || !e.promoted || seen.iter().any(|n| before.contains(n));
    Nodes { canary: canary.into_iter().collect(), stable: stable.into_iter().collect(), told_apart }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn nodes_are_split_by_evidence() {
        // (seen, canary endpoints now, stable endpoints now, before, promoted) -> (canary, stable, told apart)
        type Case<'a> =
            (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str], bool, &'a [&'a str], &'a [&'a str], bool);
        let cases: &[Case<'_>] = &[
            // Running: the canary's slices decide, the rest of what answered is stable.
            (&["a", "b", "c"], &["c"], &["a", "b"], &[], false, &["c"], &["a", "b"], true),
            // Running, the canary not yet served: still its nodes (queries find nothing).
            (&["a", "b"], &["c"], &["a", "b"], &[], false, &["c"], &["a", "b"], true),
            // Rolled back: the stable endpoints now are the release's stable.
            (&["a", "b", "c"], &[], &["a", "b"], &[], false, &["c"], &["a", "b"], true),
            // Rolled back after a promotion: the earlier release's nodes served its route
            // (they are stable now), and only this release's canary pod is the canary's.
            (&["e", "f", "g"], &[], &["e", "f"], &["e", "f", "x"], false, &["g"], &["e", "f"], true),
            // Promoted: the old stable answered at weight 0 or on its own route; the new
            // pods are stable now.
            (&["a", "b", "c", "n"], &[], &["n"], &["a", "b", "z"], true, &["c"], &["a", "b", "n"], true),
            // Promoted without any evidence before the canary was routed: not told apart.
            (&["a", "b", "c", "n"], &[], &["n"], &[], true, &["a", "b", "c"], &["n"], false),
            // A canary IP also in the evidence (an IP reused) is still the canary's now.
            (&["a", "c"], &["c"], &["a", "c"], &[], false, &["c"], &["a"], true),
            // Requests no upstream answered have an empty node: neither.
            (&["", "a"], &[], &["a"], &[""], false, &[], &["a"], true),
            (&[], &[], &["a"], &[], false, &[], &[], true),
        ];
        for (seen, now, stable_now, before, promoted, canary, stable, told) in cases {
            let e = Evidence {
                seen: v(seen),
                canary_now: v(now),
                stable_now: v(stable_now),
                before: v(before),
                promoted: *promoted,
            };
            let got = classify(&e);
            assert_eq!(got, Nodes { canary: v(canary), stable: v(stable), told_apart: *told }, "{e:?}");
        }
    }
}
