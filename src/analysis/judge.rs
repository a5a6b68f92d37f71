//! The sequential judge of a release (`judge: sequential`): each built-in metric as a
//! share of the canary's requests since its first traffic, counted in Prometheus
//! ([`query::Series::errors_since`], [`query::Series::slow_since`]), tested by
//! [`sequential::Sequential`] with the confidence split across the metrics (Bonferroni).
//!
//! - request-success-rate `min: M`: the share of 5xx answers against `100 - M` percent;
//! - request-duration `max: D`: the share of requests slower than `D` against 1 % (a
//!   P99 within `D`), counted at the smallest of APISIX's latency buckets at least `D`.

use super::prometheus::{Prometheus, QueryError};
use super::query::{self, Series};
use super::sequential::{Baseline, Counts, Sequential};
use super::{BuiltinMetric, check::Builtin};
use crate::release::lifecycle::Tested;
use crate::release::plan::Plan;

/// The share of requests above a duration bound that a P99 within it allows.
const P99_SHARE: f64 = 0.01;

/// One metric to test: what is counted, against which share.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub metric: String,
    /// What a failure is, as the verdict says it: `5xx share`, `share slower than 500ms`.
    pub what: String,
    /// The largest healthy share of failures, in (0, 1).
    pub bound: f64,
    /// The queries of the canary's (requests, failures).
    pub queries: (String, String),
    /// `compare: baseline`: the stable's (requests, failures) over the same time; the
    /// test is then two-sample, the canary against its stable, and `bound` is unused.
    pub stable: Option<(String, String)>,
}

/// The tallies of `plan`'s built-in metrics with a bound (or `compare: baseline` and the
/// stable's series), on the canary's `series`, counted since `since` (Unix seconds).
pub fn tallies(plan: &Plan, series: &Series, stable: Option<&Series>, since: i64) -> Vec<Tally> {
    plan.metrics
        .iter()
        .filter_map(BuiltinMetric::new)
        .filter_map(|m| {
            let baseline = m.baseline.and(stable);
            let (what, bound, queries, stable) = match m.kind {
                Builtin::SuccessRate => {
                    let min = m.min.filter(|min| *min > 0.0 && *min < 100.0);
                    let bound = min.map(|min| (100.0 - min) / 100.0).or(baseline.map(|_| P99_SHARE))?;
                    let stable = baseline.map(|s| s.errors_since(since));
                    ("5xx share".to_owned(), bound, series.errors_since(since), stable)
                }
                Builtin::Duration => {
                    let bucket = query::bucket_for(m.max.filter(|max| *max > 0.0)?)?;
                    let stable = baseline.map(|s| s.slow_since(bucket, since));
                    (format!("share slower than {bucket}ms"), P99_SHARE, series.slow_since(bucket, since), stable)
                }
            };
            Some(Tally { metric: m.name.to_owned(), what, bound, queries, stable })
        })
        .collect()
}

/// Tests each tally on the counts Prometheus gives now, at `confidence` percent over
/// them all. No series yet is no request: nothing to judge.
pub async fn judge(
    tallies: &[Tally],
    confidence: f64,
    prometheus: &Prometheus,
    window: Window,
) -> Result<Vec<Tested>, QueryError> {
    let alpha = (1.0 - confidence / 100.0) / tallies.len().max(1) as f64;
    let mut out = Vec::with_capacity(tallies.len());
    for t in tallies {
        if let Some(stable) = &t.stable {
            let steps = futures_util::try_join!(
                cumulative(prometheus, &t.queries.0, window),
                cumulative(prometheus, &t.queries.1, window),
                cumulative(prometheus, &stable.0, window),
                cumulative(prometheus, &stable.1, window),
            )?;
            out.push(against_stable(t, steps, alpha, confidence));
            continue;
        }
        let (requests, failures) =
            futures_util::try_join!(prometheus.scalar(&t.queries.0), prometheus.scalar(&t.queries.1))?;
        let counts = Counts { requests: whole(requests), failures: whole(failures) };
        out.push(verdict(t, counts, Sequential::new(t.bound, alpha), confidence));
    }
    Ok(out)
}

/// The time a two-sample test reads: from the analysis' start to now, a reading every
/// `step` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub since: i64,
    pub now: i64,
    pub step: std::time::Duration,
}

/// A count as a whole number; nothing (no series, NaN) is none.
fn whole(v: Option<f64>) -> u64 {
    v.filter(|v| v.is_finite()).map_or(0, |v| v.max(0.0).round() as u64)
}

/// A cumulative count since the start, read every step: (Unix seconds, count).
async fn cumulative(prometheus: &Prometheus, query: &str, w: Window) -> Result<Reading, QueryError> {
    let points = prometheus.range(query, w.since, w.now.max(w.since), w.step).await?;
    Ok(points.into_iter().map(|(t, v)| (t as i64, whole(Some(v)))).collect())
}

/// The two-sample test on the readings of (canary requests, canary failures, stable
/// requests, stable failures): each step's increments, both sides over the same time.
/// A reading missing at a step (no series yet) is the one before it.
pub fn against_stable(t: &Tally, steps: Readings, alpha: f64, confidence: f64) -> Tested {
    let (cr, cf, sr, sf) = steps;
    let mut times: Vec<i64> = [&cr, &cf, &sr, &sf].iter().flat_map(|s| s.iter().map(|(t, _)| *t)).collect();
    times.sort_unstable();
    times.dedup();
    let at = |series: &[(i64, u64)], time: i64| series.iter().rev().find(|(t, _)| *t <= time).map_or(0, |(_, v)| *v);
    let mut test = Baseline::new(alpha);
    let (mut before_c, mut before_s) = (Counts::default(), Counts::default());
    for time in times {
        let canary = Counts { requests: at(&cr, time), failures: at(&cf, time) };
        let stable = Counts { requests: at(&sr, time), failures: at(&sf, time) };
        test.observe(before_c.since(canary), before_s.since(stable));
        (before_c, before_s) = (canary, stable);
    }
    let evidence = test.evidence();
    let (canary, stable) = (before_c.share().map(|s| s * 100.0), before_s.share().map(|s| s * 100.0));
    let rejected = evidence.rejects().then(|| {
        format!(
            "canary {} {:.1} % > stable's {:.1} % (sequential test against the stable, {} % confidence, {} requests)",
            t.what,
            canary.unwrap_or(0.0),
            stable.unwrap_or(0.0),
            round(confidence),
            before_c.requests
        )
    });
    Tested {
        metric: t.metric.clone(),
        share: canary,
        requests: before_c.requests,
        log_e: evidence.log_e,
        boundary: evidence.boundary,
        rejected,
    }
}

/// A cumulative count read every step: (Unix seconds, count).
pub type Reading = Vec<(i64, u64)>;

/// Cumulative readings of (canary requests, canary failures, stable requests, stable
/// failures).
pub type Readings = (Reading, Reading, Reading, Reading);

/// The test's verdict on `counts`, in words when it rejects: "canary 5xx share 28.1 %
/// > 1 % (sequential test, 99 % confidence, 41 requests)".
pub fn verdict(t: &Tally, counts: Counts, test: Sequential, confidence: f64) -> Tested {
    let evidence = test.evidence(counts);
    let share = counts.share().map(|s| s * 100.0);
    let rejected = evidence.rejects().then(|| {
        format!(
            "canary {} {:.1} % > {} % (sequential test, {} % confidence, {} requests)",
            t.what,
            share.unwrap_or(0.0),
            round(t.bound * 100.0),
            round(confidence),
            counts.requests
        )
    });
    Tested {
        metric: t.metric.clone(),
        share,
        requests: counts.requests,
        log_e: evidence.log_e,
        boundary: evidence.boundary,
        rejected,
    }
}

/// A percentage as people write it: `1`, `0.5`, `99.9`.
fn round(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        let queries = Default::default();
        Tally { metric: "request-success-rate".into(), what: "5xx share".into(), bound: 0.01, queries, stable: None }
    }

    /// Cumulative readings every 5 s: `n` steps of `per_step` requests, `fail` of them failed.
    fn readings(n: u64, per_step: u64, fail: u64) -> (Reading, Reading) {
        let t = |i: u64| 1_700_000_000 + 5 * i as i64;
        ((1..=n).map(|i| (t(i), i * per_step)).collect(), (1..=n).map(|i| (t(i), i * fail)).collect())
    }

    #[test]
    fn against_its_stable_a_canary_worse_is_rejected_and_one_as_bad_is_not() {
        let (cr, cf) = readings(12, 3, 1);
        let (sr, sf) = readings(12, 27, 0);
        let worse = against_stable(&tally(), (cr.clone(), cf.clone(), sr, sf), 0.005, 99.0);
        assert_eq!(
            worse.rejected.as_deref(),
            Some(
                "canary 5xx share 33.3 % > stable's 0.0 % (sequential test against the stable, 99 % confidence, 36 \
                 requests)"
            )
        );
        // The stable fails as much (act 2's load hits both): no rejection.
        let (sr, sf) = readings(12, 27, 9);
        let alike = against_stable(&tally(), (cr, cf, sr, sf), 0.005, 99.0);
        assert_eq!(alike.rejected, None, "{alike:?}");
        assert_eq!(alike.share.map(|s| (s * 10.0).round()), Some(333.0));
        // A reading missing at a step is the one before it: no increment, no evidence.
        let none = against_stable(&tally(), (vec![], vec![], vec![(1, 10)], vec![(1, 1)]), 0.005, 99.0);
        assert_eq!((none.requests, none.log_e), (0, 0.0));
    }

    #[test]
    fn a_rejection_says_the_evidence_in_flaggers_shape() {
        let t = tally();
        let bad = verdict(&t, Counts { requests: 41, failures: 12 }, Sequential::new(0.01, 0.005), 99.0);
        assert_eq!(
            bad.rejected.as_deref(),
            Some("canary 5xx share 29.3 % > 1 % (sequential test, 99 % confidence, 41 requests)")
        );
        let fine = verdict(&t, Counts { requests: 41, failures: 0 }, Sequential::new(0.01, 0.005), 99.0);
        assert_eq!((fine.rejected, fine.share, fine.requests), (None, Some(0.0), 41));
        let idle = verdict(&t, Counts::default(), Sequential::new(0.01, 0.005), 99.9);
        assert_eq!((idle.rejected, idle.share), (None, None));
        assert_eq!([round(0.5), round(99.9), round(1.0)], ["0.5", "99.9", "1"]);
    }
}
