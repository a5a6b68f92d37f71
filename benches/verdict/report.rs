//! The verdict bench's outcomes per cell, its tables and its goal lines.

use super::{ALPHA, BOUND, End, HORIZON, RATES, SCRAPES};

/// The outcomes of one rule in one cell.
#[derive(Default)]
pub struct Tally {
    releases: usize,
    /// Rolled back by the sequential test.
    pub by_test: usize,
    /// Rolled back, where Flagger's rule promoted the same stream.
    extra: usize,
    /// Times to rollback, sorted once the cell is done.
    pub times: Vec<f64>,
}

impl Tally {
    pub fn add(&mut self, end: End, flagger_promoted: bool) {
        self.releases += 1;
        if let End::RolledBack { at, by_test } = end {
            self.times.push(at);
            self.by_test += usize::from(by_test);
            self.extra += usize::from(flagger_promoted);
        }
    }

    fn of(&self, n: usize) -> f64 {
        n as f64 / self.releases as f64
    }

    fn share(&self) -> f64 {
        self.of(self.times.len())
    }

    /// Nearest-rank percentile over `n` releases (the rolled-back ones, or all: then a
    /// rank past them is a release never rolled back, `None`).
    fn pct(&self, q: f64, n: usize) -> Option<f64> {
        self.times.get(((q * n as f64).ceil() as usize).max(1) - 1).copied()
    }

    /// The p50 and p95 over the releases rolled back.
    fn times(&self) -> String {
        let n = self.times.len();
        format!("{} | {}", secs(self.pct(0.5, n)), secs(self.pct(0.95, n)))
    }

    /// The p95 over all releases, a release not rolled back counting as never.
    fn p95(&self) -> Option<f64> {
        self.pct(0.95, self.releases)
    }
}

/// One rate and error share: every rule on the same streams.
pub struct Cell {
    pub rate: f64,
    pub p: f64,
    pub flagger: Tally,
    /// Per scrape interval (`SCRAPES`).
    pub ours: [Tally; 2],
    /// Wald's SPRT told p; not rejecting by the horizon is "promoted". Empty when p is
    /// healthy.
    pub told: Tally,
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

fn scrape(i: usize) -> String {
    format!("ours S = {} s", SCRAPES[i])
}

/// Expected log-likelihood ratio per request of a share `p` against the bound (nats).
fn information(p: f64) -> f64 {
    p * (p / BOUND).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - BOUND)).ln()
}

pub fn tables(cells: &[Cell], releases: usize) {
    println!(
        "{releases} releases per cell, the same streams for every rule; times from the first step; p50 and p95 \
         over the releases rolled back.\n"
    );
    let ours: Vec<String> =
        (0..SCRAPES.len()).map(|i| format!("{}: rolled back | by the test | p50 | p95", scrape(i))).collect();
    println!("| req/s | 5xx | Flagger: rolled back | p50 | p95 | {} |", ours.join(" | "));
    println!("| ---: | ---: | ---: | ---: | ---: |{}", " ---: |".repeat(4 * SCRAPES.len()));
    for c in cells {
        let ours: Vec<String> = c
            .ours
            .iter()
            .map(|o| format!("{} | {} | {}", percent(o.share()), percent(o.of(o.by_test)), o.times()))
            .collect();
        let f = &c.flagger;
        println!("| {} | {} % | {} | {} | {} |", c.rate, 100.0 * c.p, percent(f.share()), f.times(), ours.join(" | "));
    }
    println!(
        "\nThe information bound (not a rule): Wald's SPRT of the true share against 1 % at alpha {}, told the \
         share in advance, looking at every request; its mean requests to reject, ln(1/alpha) over the \
         information per request, in seconds of this traffic; p50 and p95 over all releases:\n",
        percent(ALPHA)
    );
    println!("| req/s | 5xx | nats per request | Wald's mean | told p: rejected by {HORIZON} s | p50 | p95 |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for c in cells.iter().filter(|c| c.p > BOUND) {
        let (o, per) = (&c.told, information(c.p));
        let mean = (1.0 / ALPHA).ln() / per;
        let at = |q| secs_or(o.pct(q, o.releases), &format!("> {HORIZON} s"));
        println!(
            "| {} | {} % | {per:.4} | {mean:.0} requests, {:.1} s | {} | {} | {} |",
            c.rate,
            100.0 * c.p,
            mean / c.rate,
            percent(o.share()),
            at(0.5),
            at(0.95)
        );
    }
}

pub fn goals(cells: &[Cell]) {
    println!("\nGoals, the p95 over all releases of the cell (one promoted counts as never rolled back):\n");
    let cell = |rate: f64, p: f64| cells.iter().find(|c| c.rate == rate && c.p == p).expect("a cell");
    for i in 0..SCRAPES.len() {
        let name = scrape(i);
        for (p, goal) in [(0.30, 20.0), (0.05, 60.0)] {
            let c = cell(2.5, p);
            let (o, f) = (&c.ours[i], &c.flagger);
            let verdict = match o.p95() {
                Some(t) if t < goal => "met".to_owned(),
                Some(t) => format!("missed by {}", secs(Some(t - goal))),
                None => format!("missed: {} promoted", percent(1.0 - o.share())),
            };
            println!(
                "- {name}: {} % errors at 2.5 req/s rolled back in under {goal} s at p95: {verdict} (p95 {}, {} \
                 rolled back, {} by the test; Flagger's rule: first at {}, p95 {})",
                100.0 * p,
                secs_or(o.p95(), "never"),
                percent(o.share()),
                percent(o.of(o.by_test)),
                secs(f.times.first().copied()),
                secs(f.p95()),
            );
            if o.p95().is_none_or(|t| t >= goal) {
                let (per, boundary) = (information(p), (1.0 / ALPHA).ln());
                println!(
                    "  information: {per:.4} nats per request at {} % against 1 %; ln(1/alpha) = {boundary:.2} takes \
                     {:.0} requests on average even when p is known (Wald), {:.0} s at 2.5 req/s; told p, every \
                     request: p95 {}",
                    100.0 * p,
                    boundary / per,
                    boundary / per / 2.5,
                    secs_or(c.told.p95(), &format!("> {HORIZON} s")),
                );
            }
        }
        for rate in RATES {
            let c = cell(rate, 0.005);
            let (o, f) = (&c.ours[i], &c.flagger);
            let (own, window) = (o.of(o.extra), f.share());
            let at_most = if o.share() <= 0.01 {
                "met".to_owned()
            } else if window > 0.01 {
                format!(
                    "missed by {} points, Flagger's window check alone being {} points over",
                    pct_points(o.share() - 0.01),
                    pct_points(window - 0.01)
                )
            } else {
                format!("missed by {} points", pct_points(o.share() - 0.01))
            };
            let no_more = if o.extra == 0 {
                "met".to_owned()
            } else {
                format!("missed by {} ({}), the test's own, at most alpha", percent(own), releases(o.extra))
            };
            println!(
                "- {name}: healthy (0.5 %) at {rate} req/s: {} rolled back = Flagger's window check's {} + the \
                 test's own {} ({} that Flagger's rule promoted; the test rejected {} of all, alpha {}); \
                 at most 1 %: {at_most}; no more than Flagger's rule: {no_more}",
                percent(o.share()),
                percent(window),
                percent(own),
                releases(o.extra),
                percent(o.of(o.by_test)),
                percent(ALPHA),
            );
        }
    }
}

fn releases(n: usize) -> String {
    if n == 1 { "1 release".to_owned() } else { format!("{n} releases") }
}

/// A difference of shares in percentage points.
fn pct_points(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}
