//! Reaction: from `kubectl set image` to the canary Deployment and the 0-weight route.
//!
//! `cargo bench --bench reaction`: `apisix-canary sim` (with its real Prometheus) and
//! `serve` as their own processes, as the e2e tests run them; `REACTION_DEPLOYMENTS`
//! opted-in Deployments (default 4) and `REACTION_RELEASES` releases (default 100),
//! each started by the real kubectl and timed by a kube watch in this process (see
//! `tests/support/reaction.rs`). Two runs, each in a fresh world: one release at a time,
//! then the Deployments side by side (`REACTION_MODES=sequential` or `overlapping` runs
//! one). Prints BENCHMARKS.md's tables. `REACTION_LOG=<file>` writes serve's JSON log
//! (with `APISIX_CANARY_E2E_LOG=info,kube=warn,apisix_canary::controller=debug`, the
//! controller's per-action timings); `REACTION_KUBECTL_FLAGS=-v=6` prints the slowest
//! release's kubectl request log.

#[path = "../tests/support/e2e.rs"]
mod e2e;
#[path = "../tests/support/reaction.rs"]
mod reaction;

use std::time::Instant;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    e2e::OBSERVE.store(false, std::sync::atomic::Ordering::Relaxed);
    let modes = std::env::var("REACTION_MODES").unwrap_or_else(|_| "sequential,overlapping".to_owned());
    for mode in modes.split(',') {
        let overlap = match mode.trim() {
            "sequential" => false,
            "overlapping" => true,
            other => panic!("REACTION_MODES: unknown mode {other:?} (sequential, overlapping)"),
        };
        let options = reaction::Options {
            deployments: var("REACTION_DEPLOYMENTS", 4),
            releases: var("REACTION_RELEASES", 100),
            overlap,
        };
        let world = e2e::World::start();
        let (started, load_before) = (Instant::now(), load());
        let samples = reaction::run(&world, options);
        let took = started.elapsed();
        if let Ok(path) = std::env::var("REACTION_LOG") {
            let path = format!("{path}.{}", mode.trim());
            std::fs::write(&path, world.logs.lock().unwrap().join("\n")).expect("writing REACTION_LOG");
        }
        let how = if overlap { "the Deployments side by side" } else { "one release at a time" };
        println!(
            "\n{mode}: {} releases over {} Deployments ({how}) in {:.0} s; load average {load_before} before, {} after\n",
            samples.len(),
            options.deployments,
            took.as_secs_f64(),
            load()
        );
        print!("{}", reaction::table(&samples));
        let slowest = samples.iter().max_by_key(|s| s.route).expect("no release ran");
        let at = time::OffsetDateTime::from(slowest.started);
        println!(
            "\nslowest: {} {} at {at} (kubectl {:?}, canary {:?}, route {:?})\n{}",
            slowest.deployment, slowest.image, slowest.kubectl, slowest.canary, slowest.route, slowest.kubectl_log
        );
    }
}
