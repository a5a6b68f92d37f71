//! Time to a safe verdict (issue 29, "The figures to reach"): a Monte Carlo run of
//! Flagger's rule and ours (`judge: sequential`) on the same simulated canary traffic.
//!
//! `cargo bench --bench verdict` (`-- --releases N`, default 100,000 per cell): pure
//! computation, no testbed, a fixed seed per cell. Prints BENCHMARKS.md's table, then a
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
//! Ours: Prometheus scrapes the canary's counters every S s (5 s; a second run at 1 s),
//! at a phase drawn per release (scrapes do not wait for the release). At each scrape
//! the counts since the canary's first traffic feed `Sequential::new(0.01, 0.005)`:
//! confidence 99 % split across the two built-in metrics (Bonferroni: alpha = 1 % / 2 for
//! the 5xx share; the duration metric is not simulated). When it rejects, the release is
//! rolled back at that scrape. Otherwise the ticks are Flagger's, but a check passes when
//! the release's own cumulative failure share, as of the last scrape, is at most 1 % (no
//! request yet is a failed check). Two other readings of that check (S = 5 s) are
//! printed below it: the issue's item 4 ("while it has not rejected, each interval's
//! check passes") and Flagger's window check; and, for the information bound, Wald's
//! SPRT told the true share in advance.

use apisix_canary::analysis::sequential::{Counts, Sequential};

const INTERVAL: f64 = 10.0;
const THRESHOLD: u32 = 10;
/// stepWeight 10 to maxWeight 50: five passing checks promote.
const STEPS: u32 = 5;
/// The window of Flagger's built-in metric: 1 m.
const WINDOW: f64 = 60.0;
/// request-success-rate min 99: a failure share of at most 1 %.
const BOUND: f64 = 0.01;
/// 99 % confidence over two metrics.
const ALPHA: f64 = 0.01 / 2.0;
/// The last tick any release can reach: 14 checks decide (5 passes or 10 failures),
/// the tick after them rolls back.
const HORIZON: f64 = (STEPS + THRESHOLD) as f64 * INTERVAL;
const RATES: [f64; 3] = [1.0, 2.5, 10.0];
const SHARES: [f64; 4] = [0.005, 0.02, 0.05, 0.30];

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
enum End {
    RolledBack { at: f64, by_test: bool },
    Promoted { at: f64 },
}

/// At most 1 % failed (a success rate of at least 99 %); false before any request.
fn passes(c: Counts) -> bool {
    c.requests > 0 && 100 * c.failures <= c.requests
}

/// Flagger's check at t: the requests of the last minute.
fn window(s: &Stream, t: f64) -> bool {
    passes(s.until(t - WINDOW).since(s.until(t)))
}

/// The threshold and the schedule, common to both rules: `check(t)` judges the tick at
/// t, or rolls back itself (`Err`) when the test rejected at or before it.
fn schedule(mut check: impl FnMut(f64) -> Result<bool, End>) -> End {
    let (mut failed, mut passed) = (0, 0);
    for k in 1.. {
        let t = f64::from(k) * INTERVAL;
        // The scrapes up to t first: a rejection between two ticks ends the release there.
        let pass = match check(t) {
            Err(end) => return end,
            Ok(pass) => pass,
        };
        if failed >= THRESHOLD {
            return End::RolledBack { at: t, by_test: false };
        }
        *if pass { &mut passed } else { &mut failed } += 1;
        if passed == STEPS {
            return End::Promoted { at: t };
        }
    }
    unreachable!("every release ends by {HORIZON} s")
}

fn flagger(s: &Stream) -> End {
    schedule(|t| Ok(window(s, t)))
}

/// What a tick's check asks of ours while the test has not rejected.
#[derive(Clone, Copy)]
enum Checks {
    /// The release's cumulative failure share at most the bound (the brief).
    PointEstimate,
    /// Some traffic seen (issue 29, item 4: a check passes while the test has not rejected).
    UntilRejected,
    /// Flagger's own check, over the window.
    Window,
}

fn ours(s: &Stream, test: &Sequential, scrape: f64, phase: f64, checks: Checks) -> End {
    let mut k = 0.0;
    let mut last = Counts::default();
    schedule(|t| {
        // The scrapes up to this tick, each judged as it arrives.
        while phase + k * scrape <= t {
            let at = phase + k * scrape;
            k += 1.0;
            let now = s.until(at);
            if now != last && test.evidence(now).rejects() {
                return Err(End::RolledBack { at, by_test: true });
            }
            last = now;
        }
        Ok(match checks {
            Checks::PointEstimate => passes(last),
            Checks::UntilRejected => last.requests > 0,
            Checks::Window => window(s, t),
        })
    })
}

/// Wald's SPRT told the true share `q` in advance (one arm, the best any test with this
/// alpha can do against that alternative): the first scrape at which it rejects.
fn oracle(s: &Stream, q: f64, scrape: f64, phase: f64) -> Option<f64> {
    let (fail, pass) = ((q / BOUND).ln(), ((1.0 - q) / (1.0 - BOUND)).ln());
    let mut at = phase;
    while at <= HORIZON {
        let c = s.until(at);
        if c.failures as f64 * fail + (c.requests - c.failures) as f64 * pass >= (1.0 / ALPHA).ln() {
            return Some(at);
        }
        at += scrape;
    }
    None
}

/// Our readings: the interval check, the scrape interval, the name in the tables.
const READINGS: [(Checks, f64, &str); 4] = [
    (Checks::PointEstimate, 5.0, "ours S = 5 s"),
    (Checks::PointEstimate, 1.0, "ours S = 1 s"),
    (Checks::UntilRejected, 5.0, "test + item 4, S = 5 s"),
    (Checks::Window, 5.0, "test + window check, S = 5 s"),
];

/// The outcomes of one rule in one cell.
#[derive(Default)]
struct Tally {
    releases: usize,
    by_test: usize,
    /// Times to rollback, sorted once the cell is done.
    times: Vec<f64>,
}

impl Tally {
    fn add(&mut self, end: End) {
        self.releases += 1;
        if let End::RolledBack { at, by_test } = end {
            self.times.push(at);
            self.by_test += usize::from(by_test);
        }
    }

    fn share(&self) -> f64 {
        self.times.len() as f64 / self.releases as f64
    }

    /// Nearest-rank percentile over `n` releases (the rolled-back ones, or all: then a
    /// rank past them is a release never rolled back, `None`).
    fn pct(&self, q: f64, n: usize) -> Option<f64> {
        self.times.get(((q * n as f64).ceil() as usize).max(1) - 1).copied()
    }

    /// The table's three columns: share rolled back, p50 and p95 of those.
    fn columns(&self) -> String {
        let n = self.times.len();
        format!("{} | {} | {}", percent(self.share()), secs(self.pct(0.5, n)), secs(self.pct(0.95, n)))
    }
}

fn secs(t: Option<f64>) -> String {
    secs_or(t, "-")
}

fn secs_or(t: Option<f64>, none: &str) -> String {
    match t {
        None => none.to_owned(),
        Some(t) if t.fract() == 0.0 => format!("{t:.0} s"),
        Some(t) => format!("{t:.1} s"),
    }
}

fn percent(x: f64) -> String {
    if x > 0.0 && x < 0.00005 { "< 0.01 %".to_owned() } else { format!("{:.2} %", 100.0 * x) }
}

struct Cell {
    rate: f64,
    p: f64,
    flagger: Tally,
    /// Per reading (READINGS).
    ours: Vec<Tally>,
    /// Wald's SPRT told p (S = 5 s); not rejecting by the horizon is "promoted".
    oracle: Tally,
}

fn run(rate: f64, p: f64, releases: usize, seed: u64) -> Cell {
    let mut rng = fastrand::Rng::with_seed(seed);
    let test = Sequential::new(BOUND, ALPHA);
    let mut cell = Cell {
        rate,
        p,
        flagger: Tally::default(),
        ours: READINGS.map(|_| Tally::default()).into(),
        oracle: Tally::default(),
    };
    let mut s = Stream::default();
    for _ in 0..releases {
        s.draw(&mut rng, rate, p);
        // The scrapes' phase, in (0, S], as a share of S (the same for every S).
        let phase = 1.0 - rng.f64();
        let f = flagger(&s);
        // Flagger's rule can neither roll back before ten failed checks nor promote
        // before five passed ones; nor can ours, but by the test.
        for (end, tally) in std::iter::once((f, &mut cell.flagger)).chain(
            READINGS
                .iter()
                .zip(&mut cell.ours)
                .map(|((checks, scrape, _), tally)| (ours(&s, &test, *scrape, phase * scrape, *checks), tally)),
        ) {
            match end {
                End::RolledBack { at, by_test } => assert!(at <= HORIZON && (by_test || at >= 110.0), "{end:?}"),
                End::Promoted { at } => assert!((50.0..=140.0).contains(&at), "{end:?}"),
            }
            tally.add(end);
        }
        assert!(matches!(f, End::Promoted { .. } | End::RolledBack { by_test: false, .. }));
        if p > BOUND {
            let scrape = READINGS[0].1;
            let end = oracle(&s, p, scrape, phase * scrape);
            cell.oracle.add(end.map_or(End::Promoted { at: HORIZON }, |at| End::RolledBack { at, by_test: true }));
        }
    }
    for t in std::iter::once(&mut cell.flagger).chain(&mut cell.ours).chain([&mut cell.oracle]) {
        t.times.sort_by(f64::total_cmp);
    }
    // The test's own false rollbacks of a healthy release stay under its alpha (3 standard
    // errors of slack for the draw).
    if p <= BOUND {
        let slack = 3.0 * (ALPHA * (1.0 - ALPHA) / releases as f64).sqrt();
        for t in &cell.ours {
            assert!((t.by_test as f64 / releases as f64) <= ALPHA + slack, "{rate} req/s, {p}: {}", t.by_test);
        }
    }
    cell
}

/// Expected log-likelihood ratio per request of a share `p` against the bound (nats).
fn information(p: f64) -> f64 {
    p * (p / BOUND).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - BOUND)).ln()
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
    println!(
        "{releases} releases per cell, the same streams for every rule; times from the first step; p50 and p95 \
         over the releases rolled back.\n"
    );
    println!(
        "| req/s | 5xx | Flagger: rolled back | p50 | p95 | ours S = 5 s: rolled back | by the test | p50 | p95 \
         | ours S = 1 s: rolled back | p50 | p95 |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for c in &cells {
        let o = &c.ours[0];
        let by_test = percent(o.by_test as f64 / o.releases as f64);
        let n = o.times.len();
        let tail = format!("{} | {}", secs(o.pct(0.5, n)), secs(o.pct(0.95, n)));
        println!(
            "| {} | {} % | {} | {} | {by_test} | {tail} | {} |",
            c.rate,
            100.0 * c.p,
            c.flagger.columns(),
            percent(o.share()),
            c.ours[1].columns()
        );
    }
    println!(
        "\nOther readings of the interval check, S = 5 s: a check passes while the test has not rejected (issue \
         29, item 4), or Flagger's window check; and Wald's SPRT told the true share (one arm, alpha 0.5 %: the \
         information bound), with its p50 and p95 over all releases:\n"
    );
    println!(
        "| req/s | 5xx | item 4: rolled back | p50 | p95 | window: rolled back | p50 | p95 | told p: rejected by 150 s | p50 | p95 |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for c in &cells {
        let o = &c.oracle;
        let told = if o.releases == 0 {
            "- | - | -".to_owned()
        } else {
            let at = |q| secs_or(o.pct(q, o.releases), "> 150 s");
            format!("{} | {} | {}", percent(o.share()), at(0.5), at(0.95))
        };
        println!("| {} | {} % | {} | {} | {told} |", c.rate, 100.0 * c.p, c.ours[2].columns(), c.ours[3].columns());
    }
    println!("\nGoals, the p95 over all releases of the cell (one promoted counts as never rolled back):\n");
    for (i, (_, _, name)) in READINGS.iter().enumerate().filter(|(i, _)| *i != 1) {
        goals(&cells, i, name);
    }
    println!("\n({:.1} s)", started.elapsed().as_secs_f64());
}

fn goals(cells: &[Cell], i: usize, name: &str) {
    let cell = |rate: f64, p: f64| cells.iter().find(|c| c.rate == rate && c.p == p).expect("a cell");
    for (p, goal) in [(0.30, 20.0), (0.05, 60.0)] {
        let c = cell(2.5, p);
        let o = &c.ours[i];
        let p95 = o.pct(0.95, o.releases);
        let verdict = match p95 {
            Some(t) if t < goal => "met".to_owned(),
            Some(t) => format!("missed by {}", secs(Some(t - goal))),
            None => format!("missed: {} promoted", percent(1.0 - o.share())),
        };
        let f = &c.flagger;
        println!(
            "- {name}: {} % errors at 2.5 req/s rolled back in under {goal} s at p95: {verdict} (p95 {}, {} rolled \
             back; Flagger's rule: first at {}, p95 {})",
            100.0 * p,
            secs_or(p95, "never"),
            percent(o.share()),
            secs(f.times.first().copied()),
            secs(f.pct(0.95, f.releases)),
        );
        if p95.is_none_or(|t| t >= goal) {
            let (per, bound) = (information(p), (1.0 / ALPHA).ln());
            let told = secs_or(c.oracle.pct(0.95, c.oracle.releases), "> 150 s");
            println!(
                "  information: {per:.4} nats per request at {} % against 1 %; ln(1/alpha) = {bound:.2} takes {:.0} \
                 requests on average even when p is known (Wald), {:.0} s at 2.5 req/s; told p, p95 {told}",
                100.0 * p,
                bound / per,
                bound / per / 2.5
            );
        }
    }
    for rate in RATES {
        let c = cell(rate, 0.005);
        let (o, flagger) = (&c.ours[i], c.flagger.share());
        let mut missed = Vec::new();
        if o.share() > 0.01 {
            missed.push(format!("{} over 1 %", percent(o.share() - 0.01)));
        }
        if o.share() > flagger {
            let more = o.times.len() - c.flagger.times.len();
            missed.push(format!("{} ({more} releases) over Flagger's rule", percent(o.share() - flagger)));
        }
        let verdict = if missed.is_empty() { "met".to_owned() } else { format!("missed by {}", missed.join(", ")) };
        println!(
            "- {name}: healthy (0.5 %) at {rate} req/s, at most 1 % rolled back and no more than Flagger's rule: \
             {verdict} ({}, {} by the test; Flagger's rule {})",
            percent(o.share()),
            percent(o.by_test as f64 / o.releases as f64),
            percent(flagger)
        );
    }
}
