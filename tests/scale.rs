//! The smoke version of `cargo bench --bench scale`: a few opted-in Deployments, every
//! Canary initialized by `serve`; then a few released at once, each ending, with serve's
//! tick lag, writes and Prometheus queries read the way the bench reads them. No timing
//! asserted (the figures live in BENCHMARKS.md).

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/reaction.rs"]
mod reaction;
#[path = "support/scale.rs"]
mod scale;

use std::time::Duration;

#[test]
fn serve_initializes_the_canary_of_every_opted_in_deployment() {
    let (row, initialized) = scale::run(12, Duration::from_secs(60), Duration::from_secs(1));
    assert!(initialized, "not every Canary was Initialized: {row}");
    eprintln!("{row}");
}

#[test]
fn concurrent_releases_end_and_their_cost_is_measured() {
    let r = scale::Releases { deployments: 6, releases: 4, interval: 1, rate: 40, within: Duration::from_secs(120) };
    let figures = scale::releases(r);
    let row = figures.row(&r);
    eprintln!("{}\n{row}\n{figures:?}", scale::Figures::header());
    assert!(figures.released.is_some(), "not every release ended: {row}");
    assert_eq!(figures.succeeded + figures.failed, 4, "{row}");
    assert!(figures.ticks >= 4.0, "serve measured the lag of each due step: {row}");
    assert!(figures.lag_p99.is_finite(), "{row}");
    // Each release wrote its status at least at start, at each step and at its end, and
    // the route and canary copies: the audit log saw serve's writes.
    let status = figures.writes.get("canaries/status").copied().unwrap_or(0);
    assert!(status >= 4 * 3, "{:?}", figures.writes);
    assert!(figures.writes.contains_key("apisixroutes"), "{:?}", figures.writes);
    assert!(figures.queries > 0.0, "the analysis asked Prometheus: {row}");
    // Batched: the built-in metrics of the four releases in shared queries, none alone.
    let kind = |k: &str| figures.serve_queries.get(k).copied();
    assert!(kind("builtin_batch").is_some_and(|n| n > 0.0), "{:?}", figures.serve_queries);
    assert_eq!(kind("builtin"), Some(0.0), "{:?}", figures.serve_queries);
}
