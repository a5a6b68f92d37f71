//! The smoke version of `cargo bench --bench scale`: a few opted-in Deployments, every
//! Canary initialized by `serve`; no timing asserted (the figures live in BENCHMARKS.md).

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/reaction.rs"]
mod reaction;
#[path = "support/scale.rs"]
mod scale;

use std::time::Duration;

#[test]
fn serve_initializes_the_canary_of_every_opted_in_deployment() {
    let (row, initialized) = scale::run(12, Duration::from_secs(60), Duration::from_secs(1));
    assert!(initialized, "not every Canary was Initialized: {row}");
    eprintln!("{row}");
}
