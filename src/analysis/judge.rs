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
use super::sequential::{Counts, Sequential};
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
    /// The queries of (requests, failures).
    pub queries: (String, String),
}

/// The tallies of `plan`'s built-in metrics with a bound, on `series`, counted since
/// `since` (Unix seconds).
pub fn tallies(plan: &Plan, series: &Series, since: i64) -> Vec<Tally> {
    plan.metrics
        .iter()
        .filter_map(BuiltinMetric::new)
        .filter_map(|m| match m.kind {
            Builtin::SuccessRate => {
                let min = m.min.filter(|min| *min > 0.0 && *min < 100.0)?;
                let queries = series.errors_since(since);
                Some(Tally {
                    metric: m.name.to_owned(),
                    what: "5xx share".into(),
                    bound: (100.0 - min) / 100.0,
                    queries,
                })
            }
            Builtin::Duration => {
                let max = m.max.filter(|max| *max > 0.0)?;
                let bucket = query::bucket_for(max)?;
                let what = format!("share slower than {bucket}ms");
                Some(Tally {
                    metric: m.name.to_owned(),
                    what,
                    bound: P99_SHARE,
                    queries: series.slow_since(bucket, since),
                })
            }
        })
        .collect()
}

/// Tests each tally on the counts Prometheus gives now, at `confidence` percent over
/// them all. No series yet is no request: nothing to judge.
pub async fn judge(tallies: &[Tally], confidence: f64, prometheus: &Prometheus) -> Result<Vec<Tested>, QueryError> {
    let alpha = (1.0 - confidence / 100.0) / tallies.len().max(1) as f64;
    let mut out = Vec::with_capacity(tallies.len());
    for t in tallies {
        let (requests, failures) =
            futures_util::try_join!(prometheus.scalar(&t.queries.0), prometheus.scalar(&t.queries.1))?;
        let whole = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(0, |v| v.max(0.0).round() as u64);
        let counts = Counts { requests: whole(requests), failures: whole(failures) };
        out.push(verdict(t, counts, Sequential::new(t.bound, alpha), confidence));
    }
    Ok(out)
}

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
        Tally {
            metric: "request-success-rate".into(),
            what: "5xx share".into(),
            bound: 0.01,
            queries: Default::default(),
        }
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
