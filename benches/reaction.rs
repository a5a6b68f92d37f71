//! Reaction: from `kubectl set image` to the canary Deployment and the 0-weight route.
//!
//! `cargo bench --bench reaction`: `apisix-canary sim` (with its real Prometheus) and
//! `serve` as their own processes, as the e2e tests run them; `REACTION_DEPLOYMENTS`
//! opted-in Deployments (default 4) and `REACTION_RELEASES` releases (default 100),
//! each started by the real kubectl and timed by a kube watch in this process (see
//! `tests/support/reaction.rs`). Prints the distribution as BENCHMARKS.md's table;
//! `REACTION_LOG=<file>` also writes serve's JSON log there.

#[path = "../tests/support/e2e.rs"]
mod e2e;
#[path = "../tests/support/reaction.rs"]
mod reaction;

use std::time::Instant;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let options =
        reaction::Options { deployments: var("REACTION_DEPLOYMENTS", 4), releases: var("REACTION_RELEASES", 100) };
    let world = e2e::World::start();
    let started = Instant::now();
    let samples = reaction::run(&world, options);
    let took = started.elapsed();
    if let Ok(path) = std::env::var("REACTION_LOG") {
        std::fs::write(&path, world.logs.lock().unwrap().join("\n")).expect("writing REACTION_LOG");
    }
    println!(
        "reaction: {} releases over {} Deployments (one at a time per Deployment, the Deployments side by side) in {:.0} s\n",
        samples.len(),
        options.deployments,
        took.as_secs_f64()
    );
    print!("{}", reaction::table(&samples));
    let slowest = samples.iter().max_by_key(|s| s.route).expect("no release ran");
    println!(
        "\nslowest: {} {} (kubectl {:?}, canary {:?}, route {:?})",
        slowest.deployment, slowest.image, slowest.kubectl, slowest.canary, slowest.route
    );
}
