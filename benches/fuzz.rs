//! The fuzz targets' long run on the stable toolchain (RELIABILITY.md): millions of
//! mutated inputs per target on every core, each timed.
//!
//! ```sh
//! cargo bench --bench fuzz                                  # 1,000,000 inputs per target
//! cargo bench --bench fuzz -- --inputs 10000000 --target convert --seed 7
//! cargo bench --bench fuzz -- --corpus fuzz/corpus          # write the seeds for cargo fuzz
//! ```
//!
//! An input fails when its target panics, breaks a check of `tests/support/fuzz.rs`, or
//! takes over 100 ms; it is written to `tests/fixtures/fuzz/<target>/` (where CI
//! replays it) and the run exits 1. An input still running after 10 s is a hang: it is
//! written the same way and the run stops at once.

#[path = "../tests/support/fuzz.rs"]
mod fuzz;
#[path = "../tests/support/fuzz_input.rs"]
mod fuzz_input;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuzz::Target;

use fuzz::{SLOW, thread_cpu};

/// An input is hung past this much wall time.
const HANG: Duration = Duration::from_secs(10);

struct Args {
    inputs: u64,
    targets: Vec<Target>,
    seed: u64,
    threads: usize,
    corpus: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        inputs: 1_000_000,
        targets: Target::ALL.to_vec(),
        seed: fastrand::u64(..),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        corpus: None,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--inputs" => a.inputs = value.parse().expect("--inputs N"),
            "--seed" => a.seed = value.parse().expect("--seed N"),
            "--threads" => a.threads = value.parse().expect("--threads N"),
            "--corpus" => a.corpus = Some(value.into()),
            "--target" => {
                a.targets = value
                    .split(',')
                    .map(|t| Target::from_name(t).unwrap_or_else(|| panic!("unknown target {t}")))
                    .collect()
            }
            other => panic!("unknown flag {other}: --inputs N --target T[,T] --seed N --threads N --corpus DIR"),
        }
    }
    a
}

/// What one target's run gave.
#[derive(Default)]
struct Tally {
    inputs: u64,
    failures: u64,
    slow: u64,
    slowest: Duration,
    total: Duration,
}

fn save(target: Target, kind: &str, input: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target.name());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{kind}-{:016x}", h.finish()));
    std::fs::write(&path, input).unwrap();
    path
}

fn run(target: Target, a: &Args) -> Tally {
    let per_thread = a.inputs.div_ceil(a.threads as u64);
    // Each worker's input in flight and when it started (ns since `epoch`, 0: idle).
    let epoch = Instant::now();
    let slots: Vec<_> = (0..a.threads).map(|_| Arc::new((Mutex::new(Vec::new()), AtomicU64::new(0)))).collect();
    let workers: Vec<_> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| {
            let slot = slot.clone();
            let seed = a.seed.wrapping_add(i as u64);
            std::thread::Builder::new()
                // The stack of a tokio worker, where the server runs the handlers.
                .stack_size(2 << 20)
                .spawn(move || {
                    let mut mutator = fuzz_input::Mutator::new(target, seed);
                    let (mut input, mut tally) = (Vec::new(), Tally::default());
                    while tally.inputs < per_thread {
                        mutator.next_into(&mut input);
                        slot.0.lock().unwrap().clone_from(&input);
                        slot.1.store(epoch.elapsed().as_nanos() as u64 + 1, Ordering::Release);
                        let cpu = thread_cpu();
                        let result = fuzz::run(target, &input);
                        let took = thread_cpu() - cpu;
                        slot.1.store(0, Ordering::Release);
                        tally.inputs += 1;
                        tally.total += took;
                        tally.slowest = tally.slowest.max(took);
                        if let Err(why) = result {
                            tally.failures += 1;
                            let path = save(target, "crash", &input);
                            eprintln!("{}: {why}\n  input: {}", target.name(), path.display());
                        } else if took > SLOW {
                            tally.slow += 1;
                            let path = save(target, "slow", &input);
                            eprintln!("{}: {took:?} (over {SLOW:?})\n  input: {}", target.name(), path.display());
                        }
                    }
                    tally
                })
                .unwrap()
        })
        .collect();
    while !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let now = epoch.elapsed().as_nanos() as u64;
        for slot in &slots {
            let started = slot.1.load(Ordering::Acquire);
            if started != 0 && now.saturating_sub(started) > HANG.as_nanos() as u64 {
                let path = save(target, "hang", &slot.0.lock().unwrap());
                eprintln!("{}: an input has run for over {HANG:?}\n  input: {}", target.name(), path.display());
                std::process::exit(1);
            }
        }
    }
    workers.into_iter().map(|w| w.join().unwrap()).fold(Tally::default(), |mut sum, t| {
        sum.inputs += t.inputs;
        sum.failures += t.failures;
        sum.slow += t.slow;
        sum.slowest = sum.slowest.max(t.slowest);
        sum.total += t.total;
        sum
    })
}

fn main() {
    let a = args();
    if let Some(dir) = &a.corpus {
        for target in Target::ALL {
            let dir = dir.join(target.name());
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in fuzz_input::seeds(target).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
            }
        }
        println!("seeds written under {}", dir.display());
        return;
    }
    // Panics are counted and saved as failures; their default report would flood.
    std::panic::set_hook(Box::new(|_| {}));
    println!("seed {}, {} threads, {} inputs per target", a.seed, a.threads, a.inputs);
    println!("| target | inputs | wall time | inputs/s | mean (CPU) | slowest (CPU) | over 100 ms | failures |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut failed = false;
    for &target in &a.targets {
        let start = Instant::now();
        let t = run(target, &a);
        let wall = start.elapsed();
        failed |= t.failures > 0 || t.slow > 0;
        println!(
            "| {} | {} | {:.1} s | {:.0} | {:.1} us | {:.2} ms | {} | {} |",
            target.name(),
            t.inputs,
            wall.as_secs_f64(),
            t.inputs as f64 / wall.as_secs_f64(),
            t.total.as_secs_f64() * 1e6 / t.inputs.max(1) as f64,
            t.slowest.as_secs_f64() * 1e3,
            t.slow,
            t.failures
        );
    }
    if failed {
        std::process::exit(1);
    }
}
