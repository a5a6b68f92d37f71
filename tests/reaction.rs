//! The reaction benchmark's driver in small (`cargo bench --bench reaction` runs it for
//! 100 releases): three releases on three Deployments, each started by the real
//! kubectl, each seen to create its own canary Deployment and its route at weight 0,
//! then promoted. No timing is asserted: CI machines are noisy; the figures live in
//! BENCHMARKS.md.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/reaction.rs"]
mod reaction;

#[test]
fn three_releases_each_reach_their_canary_and_the_zero_weight_route() {
    let w = e2e::World::start();
    let samples = reaction::run(&w, reaction::Options { deployments: 3, releases: 3, overlap: true });
    assert_eq!(samples.len(), 3);
    let mut deployments: Vec<&str> = samples.iter().map(|s| s.deployment.as_str()).collect();
    deployments.sort_unstable();
    assert_eq!(deployments, ["app-0", "app-1", "app-2"]);
    assert!(samples.iter().all(|s| s.image == "example/app:1"), "{samples:#?}");
    // The table renders from what was measured.
    assert!(reaction::table(&samples).contains("| 0-weight route seen (t2 - t0) |"));
}
