//! The sequential judge (`judge: sequential`): an anytime-valid test of a canary's
//! failure share, checked whenever new counts arrive, that rolls a bad canary back as
//! soon as the evidence suffices, with a false-rollback rate of at most `alpha`
//! however often it is checked.
//!
//! A request either fails (a 5xx answer; slower than the bound) or not. The canary is
//! healthy when its failure share `p` is at most the bound `p0` (`100 - min` percent
//! of 5xx, or the share of requests allowed above `max`). The test is Robbins' mixture
//! sequential probability ratio test: for each alternative share `q > p0` of a grid,
//! the likelihood ratio of the counts seen,
//!
//! ```text
//!   L_q(n, x) = (q / p0)^x * ((1 - q) / (1 - p0))^(n - x)      n requests, x failures
//! ```
//!
//! is a nonnegative martingale of mean 1 when `p = p0`, and a supermartingale when
//! `p < p0` (each request's factor has mean `p q/p0 + (1-p)(1-q)/(1-p0) <= 1`); so is
//! their weighted mean `E`. By Ville's inequality, a healthy canary's `E` ever reaches
//! `1 / alpha` with probability at most `alpha`: the test may look after every scrape,
//! or every request, without raising its error rate. It depends on the counts alone,
//! so counts read at any times (Prometheus' scrapes) are the process itself.
//!
//! References: H. Robbins, "Statistical methods related to the law of the iterated
//! logarithm", Ann. Math. Statist. 41 (1970); S. R. Howard, A. Ramdas, J. McAuliffe,
//! J. Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann.
//! Statist. 49 (2021); M. Lindon, A. Malek, "Anytime-Valid Inference for Multinomial
//! Count Data", NeurIPS 2022 (the same construction for count data).
//!
//! With `compare: baseline` ([`Baseline`]) the canary is tested against its stable over
//! the same time: given that a failure happened on either side, it is the canary's with
//! probability `pi = a / (a + b)` (the canary's share of the requests) when both fail
//! alike, more when the canary is worse. The counts of each scrape are a binomial draw
//! of the failures between the two sides, and the mixture is over the odds ratio.

/// Counts of one side since the canary's first traffic of this release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub failures: u64,
}

impl Counts {
    /// The counts between two readings: what `later` adds to `self`. A reading that
    /// went down (a counter reset, a pod restarted) adds nothing rather than a negative.
    pub fn since(self, later: Counts) -> Counts {
        Counts {
            requests: later.requests.saturating_sub(self.requests),
            failures: later.failures.saturating_sub(self.failures),
        }
    }

    /// The observed failure share, `None` before any request.
    pub fn share(self) -> Option<f64> {
        (self.requests > 0).then(|| self.failures.min(self.requests) as f64 / self.requests as f64)
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, more: Counts) -> Counts {
        Counts { requests: self.requests + more.requests, failures: self.failures + more.failures }
    }
}

/// The grid of alternatives: odds ratios against the bound of 2^(k/2), k = 1..=GRID,
/// from 1.41x to 2^16 (a bound of 1 % against shares of 1.4 % .. 99.8 %).
const GRID: u32 = 32;

/// The one-sample test of a failure share against its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    /// The bound `p0`, in (0, 1).
    bound: f64,
    /// `ln(1 / alpha)`: the boundary of `ln E`.
    boundary: f64,
    /// Per alternative: (ln(q / p0), ln((1 - q) / (1 - p0))).
    steps: Vec<(f64, f64)>,
}

/// A verdict of the test on the counts so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// `ln E`: the log of the mixture's likelihood ratio.
    pub log_e: f64,
    /// `ln(1 / alpha)`: the test rejects when `log_e` reaches it.
    pub boundary: f64,
}

impl Evidence {
    pub fn rejects(&self) -> bool {
        self.log_e >= self.boundary
    }
}

/// Odds of a share.
fn odds(p: f64) -> f64 {
    p / (1.0 - p)
}

/// The share of odds `o`.
fn share_of(o: f64) -> f64 {
    o / (1.0 + o)
}

/// `ln(sum(exp(x)) / n)`, without overflow.
fn log_mean_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let (max, n) = xs.clone().fold((f64::NEG_INFINITY, 0usize), |(m, n), x| (m.max(x), n + 1));
    if n == 0 || max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    max + (xs.map(|x| (x - max).exp()).sum::<f64>() / n as f64).ln()
}

impl Sequential {
    /// The test of a share bounded by `bound` (in (0, 1)) at level `alpha` (in (0, 1)).
    pub fn new(bound: f64, alpha: f64) -> Self {
        let bound = bound.clamp(1e-9, 1.0 - 1e-9);
        let steps = (1..=GRID)
            .map(|k| share_of(odds(bound) * 2f64.powf(f64::from(k) / 2.0)))
            .map(|q| ((q / bound).ln(), ((1.0 - q) / (1.0 - bound)).ln()))
            .collect();
        Sequential { bound, boundary: (1.0 / alpha.clamp(1e-12, 1.0)).ln(), steps }
    }

    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// The evidence against "the canary fails at most `bound`" from its counts since
    /// its first traffic of this release.
    pub fn evidence(&self, c: Counts) -> Evidence {
        let x = c.failures.min(c.requests) as f64;
        let rest = c.requests as f64 - x;
        let log_e = log_mean_exp(self.steps.iter().map(|(fail, pass)| x * fail + rest * pass));
        Evidence { log_e, boundary: self.boundary }
    }
}

/// The two-sample test (`compare: baseline`): the canary against its stable over the
/// same time, fed one scrape's counts of each side at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    boundary: f64,
    /// Per odds ratio `theta > 1` of the grid: `ln(theta)` and the running `ln L`.
    arms: Vec<(f64, f64)>,
}

impl Baseline {
    pub fn new(alpha: f64) -> Self {
        let arms = (1..=GRID).map(|k| (f64::from(k) / 2.0 * std::f64::consts::LN_2, 0.0)).collect();
        Baseline { boundary: (1.0 / alpha.clamp(1e-12, 1.0)).ln(), arms }
    }

    /// Adds one interval's counts: the canary's and the stable's, over the same time.
    /// An interval with no failure, or no request on a side, says nothing.
    pub fn observe(&mut self, canary: Counts, stable: Counts) {
        let (x, m) = (canary.failures.min(canary.requests), stable.failures.min(stable.requests));
        let failures = x + m;
        if failures == 0 || canary.requests == 0 || stable.requests == 0 {
            return;
        }
        let pi = canary.requests as f64 / (canary.requests + stable.requests) as f64;
        let (x, m) = (x as f64, m as f64);
        for (ln_theta, ln_l) in &mut self.arms {
            // The canary's share of failures under odds ratio theta.
            let alt = share_of(odds(pi) * ln_theta.exp());
            *ln_l += x * (alt / pi).ln() + m * ((1.0 - alt) / (1.0 - pi)).ln();
        }
    }

    pub fn evidence(&self) -> Evidence {
        Evidence { log_e: log_mean_exp(self.arms.iter().map(|(_, l)| *l)), boundary: self.boundary }
    }
}

#[cfg(test)]
mod tests;
