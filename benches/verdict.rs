//! Time to a safe verdict (issue 29, "The figures to reach"): a Monte Carlo run of
//! Flagger's rule and ours (`judge: sequential`, as the controller runs it) on the same
//! simulated canary traffic.
//!
//! `cargo bench --bench verdict` (`-- --releases N`, default 100,000 per cell): pure
//! computation, no testbed, a fixed seed per cell. Prints BENCHMARKS.md's tables, then a
//! line per goal of the issue: met, or missed by how much.
//!
//! The streams: the canary's requests arrive as a Poisson process of rate `r` req/s from
//! its first step (time 0), each failing (a 5xx) independently with probability `p`;
//! `r` stays the same at every weight. Every release is judged by every rule on the
//! same stream, drawn once up to the last instant any rule can need (`HORIZON`).
//!
//! Flagger's rule (the article's settings): a tick every 10 s from the first step; the
//! first tick (time 0) sets weight 10 with no check. At t = 10, 20, ..: rollback if
//! failedChecks >= 10 (canary.go checks the threshold before the next check); else the
//! request-success-rate over the requests in (t - 60 s, t] (1 m, Flagger's metric
//! interval) must be at least 99 %: no request in the window ("no values found") or
//! less is a failed check (the weight stays), otherwise the weight advances 10 -> 50,
//! and the fifth passing check (the one at weight 50) promotes.
//!
//! Ours, `judge: sequential` as `release::lifecycle` runs it: the same ticks and the
//! same window checks, rollback at the tick of the 10th failed check (the controller
//! decides again at once on that check's status, not a tick later); plus the sequential
//! test, looked at every 5 s from the first step (`SEQUENTIAL_EVERY`, so at every tick
//! too, before its check), on the counts since the first step as of Prometheus' last
//! scrape (every S s, 5 s and 1 s, at a phase drawn per release). A rejection rolls the
//! release back at that look. The test is `Sequential::new(0.01, alpha)`, alpha = (1 -
//! 99 / 100) / 2, the confidence split across the two built-in metrics with a bound as
//! `analysis::judge` splits it; only the 5xx metric is simulated.
//!
//! The information bound, for the goals a test cannot reach: Wald's SPRT told the true
//! share in advance, at the same alpha, looking at every request.

#[path = "verdict/report.rs"]
mod report;

use apisix_canary::analysis::sequential::{Counts, Sequential};
use report::{Cell, Tally};

const INTERVAL: f64 = 10.0;
const THRESHOLD: u32 = 10;
/// stepWeight 10 to maxWeight 50: five passing checks promote.
const STEPS: u32 = 5;
/// The window of Flagger's built-in metric: 1 m.
const WINDOW: f64 = 60.0;
/// request-success-rate min 99: a failure share of at most 1 %.
const BOUND: f64 = 0.01;
/// `confidence: 99` (the default).
const CONFIDENCE: f64 = 99.0;
/// The built-in metrics with a bound (request-success-rate and request-duration): the
/// confidence is split across them.
const METRICS: f64 = 2.0;
/// The 5xx metric's share of `1 - confidence`, as `analysis::judge` computes it.
const ALPHA: f64 = (1.0 - CONFIDENCE / 100.0) / METRICS;
/// `release::lifecycle`'s `SEQUENTIAL_EVERY`: the test is looked at every 5 s, and each
/// interval's tick is a look.
const LOOK: f64 = 5.0;
const LOOKS_PER_TICK: u32 = 2;
/// The last tick any release can reach: 14 checks decide (5 passes or 10 failures),
/// Flagger's tick after them rolls back.
const HORIZON: f64 = (STEPS + THRESHOLD) as f64 * INTERVAL;
const RATES: [f64; 3] = [1.0, 2.5, 10.0];
const SHARES: [f64; 4] = [0.005, 0.02, 0.05, 0.30];
/// Prometheus' scrape intervals of the two runs of ours.
const SCRAPES: [f64; 2] = [5.0, 1.0];

/// One release's canary traffic: arrival times, and failures among the first i requests.
#[derive(Default)]
struct Stream {
    times: Vec<f64>,
    failed: Vec<u64>,
}

impl Stream {
    fn draw(&mut self, rng: &mut fastrand::Rng, rate: f64, p: f64) {
        self.times.clear();
        self.failed.clear();
        self.failed.push(0);
        let mut t = 0.0;
        loop {
            t += -(1.0 - rng.f64()).ln() / rate;
            if t > HORIZON {
                return;
            }
            self.times.push(t);
            let failures = self.failed.last().copied().unwrap_or(0) + u64::from(rng.f64() < p);
            self.failed.push(failures);
        }
    }

    /// The counts of the requests in (0, t].
    fn until(&self, t: f64) -> Counts {
        let n = self.times.partition_point(|x| *x <= t);
        Counts { requests: n as u64, failures: self.failed[n] }
    }
}

/// How a release ended, and when (seconds after its first step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    RolledBack { at: f64, by_test: bool },
    Promoted { at: f64 },
}

/// Flagger's check at t: the requests of the last minute, at most 1 % failed (a success
/// rate of at least 99 %); no request is a failed check.
fn window(s: &Stream, t: f64) -> bool {
    let c = s.until(t - WINDOW).since(s.until(t));
    c.requests > 0 && 100 * c.failures <= c.requests
}

fn flagger(s: &Stream) -> End {
    let (mut failed, mut passed) = (0, 0);
    for k in 1.. {
        let t = f64::from(k) * INTERVAL;
        if failed >= THRESHOLD {
            return End::RolledBack { at: t, by_test: false };
        }
        if window(s, t) {
            passed += 1;
            if passed == STEPS {
                return End::Promoted { at: t };
            }
        } else {
            failed += 1;
        }
    }
    unreachable!("every release ends by {HORIZON} s")
}

/// `judge: sequential`: Flagger's ticks and window checks, the 10th failed check rolling
/// back at once, and the test at every look on the counts of the last scrape (every
/// `scrape` s from `phase`, in (0, scrape]).
fn ours(s: &Stream, test: &Sequential, scrape: f64, phase: f64) -> End {
    let (mut failed, mut passed) = (0, 0);
    let mut judged = None;
    for k in 1.. {
        let at = f64::from(k) * LOOK;
        let counts =
            if at < phase { Counts::default() } else { s.until(phase + ((at - phase) / scrape).floor() * scrape) };
        // The same counts give the same verdict: only a new scrape can reject.
        if judged != Some(counts) {
            if test.evidence(counts).rejects() {
                return End::RolledBack { at, by_test: true };
            }
            judged = Some(counts);
        }
        if k % LOOKS_PER_TICK != 0 {
            continue;
        }
        if window(s, at) {
            passed += 1;
            if passed == STEPS {
                return End::Promoted { at };
            }
        } else {
            failed += 1;
            if failed == THRESHOLD {
                return End::RolledBack { at, by_test: false };
            }
        }
    }
    unreachable!("every release ends by {HORIZON} s")
}

/// Wald's SPRT told the true share `q` in advance (one arm, the best any test with this
/// alpha can do against that alternative), looking at every request: when it rejects.
fn told(s: &Stream, q: f64) -> Option<f64> {
    let (fail, pass) = ((q / BOUND).ln(), ((1.0 - q) / (1.0 - BOUND)).ln());
    let boundary = (1.0 / ALPHA).ln();
    let mut llr = 0.0;
    for (i, t) in s.times.iter().enumerate() {
        llr += if s.failed[i + 1] > s.failed[i] { fail } else { pass };
        if llr >= boundary {
            return Some(*t);
        }
    }
    None
}

/// Ours differs from Flagger's rule only by the test's rollbacks, and by rolling back at
/// the 10th failed check rather than a tick later: the same checks, on the same stream.
fn same_checks(flagger: End, ours: End) {
    let consistent = match (flagger, ours) {
        (End::Promoted { at: f }, End::Promoted { at: o }) => f == o,
        (End::RolledBack { at: f, by_test: false }, End::RolledBack { at: o, by_test: false }) => o == f - INTERVAL,
        (End::Promoted { at: f }, End::RolledBack { at: o, by_test: true }) => o <= f,
        (End::RolledBack { at: f, .. }, End::RolledBack { at: o, by_test: true }) => o <= f - INTERVAL,
        _ => false,
    };
    assert!(consistent, "Flagger {flagger:?}, ours {ours:?}");
    match flagger {
        End::RolledBack { at, .. } => assert!((110.0..=HORIZON).contains(&at), "{flagger:?}"),
        End::Promoted { at } => assert!((50.0..=140.0).contains(&at), "{flagger:?}"),
    }
}

fn run(rate: f64, p: f64, releases: usize, seed: u64) -> Cell {
    let mut rng = fastrand::Rng::with_seed(seed);
    let test = Sequential::new(BOUND, ALPHA);
    let mut cell =
        Cell { rate, p, flagger: Tally::default(), ours: SCRAPES.map(|_| Tally::default()), told: Tally::default() };
    let mut s = Stream::default();
    for _ in 0..releases {
        s.draw(&mut rng, rate, p);
        // The scrapes' phase, in (0, S], as a share of S (the same for every S).
        let phase = 1.0 - rng.f64();
        let f = flagger(&s);
        cell.flagger.add(f, false);
        for (scrape, tally) in SCRAPES.iter().zip(&mut cell.ours) {
            let o = ours(&s, &test, *scrape, phase * scrape);
            same_checks(f, o);
            tally.add(o, matches!(f, End::Promoted { .. }));
        }
        if p > BOUND {
            let end = told(&s, p).map_or(End::Promoted { at: HORIZON }, |at| End::RolledBack { at, by_test: true });
            cell.told.add(end, false);
        }
    }
    for t in std::iter::once(&mut cell.flagger).chain(&mut cell.ours).chain([&mut cell.told]) {
        t.times.sort_by(f64::total_cmp);
    }
    // The test's own rollbacks of a healthy release stay under its alpha (3 standard
    // errors of slack for the draw).
    if p <= BOUND {
        let slack = 3.0 * (ALPHA * (1.0 - ALPHA) / releases as f64).sqrt();
        for t in &cell.ours {
            assert!((t.by_test as f64 / releases as f64) <= ALPHA + slack, "{rate} req/s, {p}: {}", t.by_test);
        }
    }
    cell
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let releases = args
        .iter()
        .position(|a| a == "--releases")
        .and_then(|i| args.get(i + 1))
        .map_or(100_000, |n| n.parse().expect("--releases N: a number"));
    let started = std::time::Instant::now();
    let mut cells: Vec<Cell> = Vec::new();
    for (i, rate) in RATES.into_iter().enumerate() {
        for (j, p) in SHARES.into_iter().enumerate() {
            cells.push(run(rate, p, releases, 29_000 + 10 * i as u64 + j as u64));
        }
    }
    report::tables(&cells, releases);
    report::goals(&cells);
    println!("\n({:.1} s)", started.elapsed().as_secs_f64());
}
