//! Scale: `serve` over N opted-in Deployments of the simulated cluster, no release
//! running (see `tests/support/scale.rs`).
//!
//! `cargo bench --bench scale -- [N...]` (default 200 1000). Each N in a fresh world
//! (`tests/support/e2e.rs`: the sim with its real Prometheus, serve, the real kubectl).

#[path = "../tests/support/e2e.rs"]
mod e2e;
#[path = "../tests/support/reaction.rs"]
mod reaction;
#[path = "../tests/support/scale.rs"]
mod scale;

use std::time::Duration;

fn main() {
    let counts: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() { vec![200, 1000] } else { counts };
    println!(
        "| opted-in Deployments | kubectl apply | all Canaries Initialized | serve RSS | serve idle CPU | sim RSS | sim idle CPU |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for n in counts {
        let (row, _) = scale::run(n, Duration::from_secs(900), Duration::from_secs(10));
        println!("{row}");
    }
}
