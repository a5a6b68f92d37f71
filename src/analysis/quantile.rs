//! PromQL's `histogram_quantile` over classic buckets, computed here so that one batched
//! query of every release's latency buckets serves each release's P99 (see
//! [`super::batch`]). The same algorithm as Prometheus' `bucketQuantile`
//! (promql/quantile.go), so the batched value is the one the per-release query gives:
//!
//! - buckets sorted by upper bound; no `+Inf` bucket, fewer than two buckets, or no
//!   observations: NaN (no values);
//! - buckets of the same upper bound merged (`le="1"` and `le="1.0"`);
//! - counts within a relative 1e-12 of the previous one taken as equal (floating-point
//!   noise of sums), then any decrease removed (the envelope), so the search is sound;
//! - the quantile's rank `q × observations` found in the first bucket whose count
//!   reaches it, interpolated linearly inside it from the bucket below's upper bound (0
//!   below the first bucket, unless that bound is ≤ 0: then the bound itself); in the
//!   `+Inf` bucket, the highest finite upper bound.

/// One bucket: its upper bound (`le`) and its cumulative count (or rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub upper_bound: f64,
    pub count: f64,
}

/// Counts closer than this, relatively, are one count.
const PRECISION: f64 = 1e-12;

/// The `q`-quantile of `buckets`, as Prometheus' `histogram_quantile(q, ...)` computes it
/// for one group of buckets; NaN when there is none (see the module's notes).
pub fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.upper_bound.partial_cmp(&b.upper_bound).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(last) if last.upper_bound == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let mut buckets = coalesce(buckets);
    correct_precision_errors(&mut buckets);
    ensure_monotonic(&mut buckets);
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // The first bucket below +Inf that reaches the rank (+Inf's index when none does).
    let b = buckets[..buckets.len() - 1].partition_point(|bucket| bucket.count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].upper_bound;
    }
    if b == 0 && buckets[0].upper_bound <= 0.0 {
        return buckets[0].upper_bound;
    }
    let (end, mut count) = (buckets[b].upper_bound, buckets[b].count);
    let mut start = 0.0;
    if b > 0 {
        start = buckets[b - 1].upper_bound;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Sorted buckets with one entry per upper bound, counts of equal bounds summed.
fn coalesce(sorted: Vec<Bucket>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(sorted.len());
    for b in sorted {
        match out.last_mut() {
            Some(last) if last.upper_bound == b.upper_bound => last.count += b.count,
            _ => out.push(b),
        }
    }
    out
}

/// A count within [`PRECISION`] (relative to itself) of the last count kept becomes it.
fn correct_precision_errors(buckets: &mut [Bucket]) {
    let Some(first) = buckets.first() else { return };
    let mut prev = first.count;
    for b in &mut buckets[1..] {
        let delta = (b.count - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / b.count <= PRECISION {
            b.count = prev;
        } else {
            prev = b.count;
        }
    }
}

/// Every count at least the highest before it.
fn ensure_monotonic(buckets: &mut [Bucket]) {
    let Some(first) = buckets.first() else { return };
    let mut max = first.count;
    for b in &mut buckets[1..] {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs.iter().map(|&(upper_bound, count)| Bucket { upper_bound, count }).collect()
    }

    const INF: f64 = f64::INFINITY;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn interpolates_inside_the_bucket() {
        // 100 observations: 50 up to 100 ms, 40 in (100, 200], 10 in (200, 500].
        let b = buckets(&[(100.0, 50.0), (200.0, 90.0), (500.0, 100.0), (INF, 100.0)]);
        // Rank 99 is 9/10 into (200, 500].
        assert!(close(bucket_quantile(0.99, b.clone()), 470.0), "{}", bucket_quantile(0.99, b.clone()));
        // Rank 50 is the top of the first bucket; rank 25 is halfway from 0.
        assert_eq!(bucket_quantile(0.5, b.clone()), 100.0);
        assert_eq!(bucket_quantile(0.25, b.clone()), 50.0);
        assert_eq!(bucket_quantile(0.7, b.clone()), 150.0);
        // Order of the input does not matter.
        let mut shuffled = b.clone();
        shuffled.reverse();
        assert!(close(bucket_quantile(0.99, shuffled), 470.0));
        // Out of range quantiles, as PromQL.
        assert_eq!(bucket_quantile(-0.1, b.clone()), -INF);
        assert_eq!(bucket_quantile(1.1, b.clone()), INF);
        assert!(bucket_quantile(f64::NAN, b).is_nan());
    }

    #[test]
    fn rates_interpolate_the_same() {
        // APISIX's ms buckets at a rate (per second): 150 ms answers, 0.5 per second.
        let b = buckets(&[(1.0, 0.0), (2.0, 0.0), (5.0, 0.0), (100.0, 0.0), (200.0, 0.5), (500.0, 0.5), (INF, 0.5)]);
        assert!(close(bucket_quantile(0.99, b), 199.0));
    }

    #[test]
    fn no_observations_or_no_buckets_is_nan() {
        assert!(bucket_quantile(0.99, vec![]).is_nan(), "empty");
        assert!(bucket_quantile(0.99, buckets(&[(100.0, 0.0), (INF, 0.0)])).is_nan(), "no observations");
        assert!(bucket_quantile(0.99, buckets(&[(100.0, 3.0), (200.0, 5.0)])).is_nan(), "no +Inf bucket");
        assert!(bucket_quantile(0.99, buckets(&[(INF, 5.0)])).is_nan(), "a single bucket");
        assert!(bucket_quantile(0.99, buckets(&[(INF, 2.0), (INF, 3.0)])).is_nan(), "one bucket after merging");
    }

    #[test]
    fn all_in_the_inf_bucket_is_the_highest_finite_bound() {
        let b = buckets(&[(100.0, 0.0), (200.0, 0.0), (INF, 7.0)]);
        assert_eq!(bucket_quantile(0.99, b.clone()), 200.0);
        assert_eq!(bucket_quantile(0.01, b), 200.0);
        // The rank just above the last finite bucket's count lands in +Inf too.
        let b = buckets(&[(100.0, 98.0), (INF, 100.0)]);
        assert_eq!(bucket_quantile(0.99, b), 100.0);
    }

    #[test]
    fn a_first_bound_at_or_below_zero_is_returned_as_is() {
        let b = buckets(&[(0.0, 10.0), (10.0, 20.0), (INF, 20.0)]);
        assert_eq!(bucket_quantile(0.25, b.clone()), 0.0);
        assert_eq!(bucket_quantile(0.75, b), 5.0);
        let b = buckets(&[(-1.0, 10.0), (INF, 10.0)]);
        assert_eq!(bucket_quantile(0.5, b), -1.0);
    }

    #[test]
    fn equal_bounds_merge() {
        // Two series of the same bucket (`le="100"` and `le="100.0"`) are one bucket.
        let b = buckets(&[(100.0, 30.0), (100.0, 20.0), (200.0, 100.0), (INF, 100.0)]);
        assert_eq!(bucket_quantile(0.5, b.clone()), 100.0);
        assert_eq!(bucket_quantile(0.75, b), 150.0);
    }

    #[test]
    fn non_monotonic_counts_take_the_envelope() {
        // The 200 bucket dips below the 100 one: it counts as 60.
        let b = buckets(&[(100.0, 60.0), (200.0, 40.0), (500.0, 100.0), (INF, 100.0)]);
        let want = 200.0 + 300.0 * (30.0 / 40.0);
        assert!(close(bucket_quantile(0.9, b.clone()), want), "{}", bucket_quantile(0.9, b.clone()));
        // The search finds the first bucket that reaches the rank after the fix: 60 ≥ 50.
        assert!(close(bucket_quantile(0.5, b), 100.0 * 50.0 / 60.0));
        // A total below an inner count: the +Inf bucket is raised too.
        let b = buckets(&[(100.0, 10.0), (INF, 4.0)]);
        assert_eq!(bucket_quantile(0.5, b), 50.0);
    }

    #[test]
    fn floating_point_noise_is_no_step() {
        // 1e-15 more in the 200 bucket than the 100 one is the same count: the quantile
        // does not interpolate into (100, 200] over it.
        let b = buckets(&[(100.0, 1.0), (200.0, 1.0 + 1e-15), (INF, 1.0 + 1e-15)]);
        assert!(close(bucket_quantile(0.99, b.clone()), 99.0));
        assert_eq!(bucket_quantile(1.0, b), 100.0);
    }
}
