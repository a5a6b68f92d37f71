//! Scale: `serve` over opted-in Deployments of the simulated cluster (see
//! `tests/support/scale.rs`). Each world is fresh (`tests/support/e2e.rs`: the sim with
//! its real Prometheus, serve, the real kubectl).
//!
//! ```sh
//! cargo bench --bench scale -- idle 200 1000              # N opted in, no release
//! cargo bench --bench scale -- release 1000:100:10:200     # N opted in, R released at once,
//!                                                          # interval 10 s, 200 requests/s
//! ```
//!
//! Without arguments: `idle 200 1000` and `release 200:50:5:100`.

#[path = "../tests/support/e2e.rs"]
mod e2e;
#[path = "../tests/support/reaction.rs"]
mod reaction;
#[path = "../tests/support/scale.rs"]
mod scale;

use std::time::Duration;

fn main() {
    e2e::OBSERVE.store(false, std::sync::atomic::Ordering::Relaxed);
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (mode, values) = match args.split_first() {
        Some((mode, values)) => (mode.as_str(), values.to_vec()),
        None => {
            idle(&[200, 1000]);
            release(&["200:50:5:100".to_owned()]);
            return;
        }
    };
    match mode {
        "idle" => idle(&values.iter().filter_map(|v| v.parse().ok()).collect::<Vec<usize>>()),
        "release" => release(&values),
        other => eprintln!("unknown mode {other}: idle N... | release N:R[:INTERVAL[:RATE]]..."),
    }
}

fn idle(counts: &[usize]) {
    println!(
        "| opted-in Deployments | kubectl apply | all Canaries Initialized | serve RSS | serve idle CPU | sim RSS | sim idle CPU |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &n in counts {
        let (row, _) = scale::run(n, Duration::from_secs(1800), Duration::from_secs(10));
        println!("{row}");
    }
}

fn release(specs: &[String]) {
    println!("{}", scale::Figures::header());
    for spec in specs {
        let parts: Vec<u64> = spec.split(':').filter_map(|p| p.parse().ok()).collect();
        let at = |i: usize, default: u64| parts.get(i).copied().unwrap_or(default);
        let r = scale::Releases {
            deployments: at(0, 200) as usize,
            releases: at(1, 50) as usize,
            interval: at(2, 5),
            rate: at(3, 100) as u32,
            within: Duration::from_secs(3600),
        };
        let figures = scale::releases(r);
        println!("{}", figures.row(&r));
        eprintln!("{figures:?}");
    }
}
