//! The statistic: known values, its boundary, counter resets, no data, and its error
//! rate on healthy streams drawn with a fixed seed.

use super::*;

const ALPHA: f64 = 0.01;

/// A stream of `n` requests failing with probability `p`, counts after each.
fn stream(rng: &mut fastrand::Rng, p: f64, n: u64) -> impl Iterator<Item = Counts> + '_ {
    let mut c = Counts::default();
    (0..n).map(move |_| {
        c.requests += 1;
        c.failures += u64::from(rng.f64() < p);
        c
    })
}

#[test]
fn known_values() {
    let t = Sequential::new(0.01, ALPHA);
    assert_eq!(t.evidence(Counts::default()).log_e, 0.0, "no data: E = 1, no evidence either way");
    assert!((t.evidence(Counts::default()).boundary - 100f64.ln()).abs() < 1e-12);
    // One arm by hand: odds ratio 2^(1/2) against 1 %.
    let q = share_of(odds(0.01) * 2f64.sqrt());
    let one = |n: f64, x: f64| x * (q / 0.01).ln() + (n - x) * ((1.0 - q) / 0.99).ln();
    let (n, x) = (50.0, 3.0);
    let mean: f64 = (1..=GRID)
        .map(|k| share_of(odds(0.01) * 2f64.powf(f64::from(k) / 2.0)))
        .map(|q| (x * (q / 0.01).ln() + (n - x) * ((1.0 - q) / 0.99).ln()).exp())
        .sum::<f64>()
        / f64::from(GRID);
    let got = t.evidence(Counts { requests: 50, failures: 3 }).log_e;
    assert!((got - mean.ln()).abs() < 1e-9, "{got} vs {}", mean.ln());
    assert!(got > one(n, x) - (f64::from(GRID)).ln(), "the mixture is at least one arm's share");
    // Only successes: evidence against "bad" grows negative, never rejects.
    assert!(t.evidence(Counts { requests: 10_000, failures: 0 }).log_e < 0.0);
}

#[test]
fn a_canary_failing_every_request_is_rejected_within_a_few_requests() {
    let t = Sequential::new(0.01, ALPHA);
    let first = (1..100).find(|n| t.evidence(Counts { requests: *n, failures: *n }).rejects()).unwrap();
    // The best arm (q = 0.9985) gains ln(99.8) = 4.6 nats per failure; the mixture pays
    // ln 32 = 3.5 for not knowing it: two failures (8.5 nats) pass ln 100 = 4.6.
    assert_eq!(first, 2, "two 500s in a row are enough at 99 % confidence");
    // 30 % of 5xx: rejected at 1 %, not at the bound of 50 %.
    let c = Counts { requests: 41, failures: 12 };
    assert!(t.evidence(c).rejects());
    assert!(!Sequential::new(0.5, ALPHA).evidence(c).rejects());
}

#[test]
fn the_boundary_is_the_confidence() {
    // 5 failures in 60 requests against 1 %: E = 62.6.
    let c = Counts { requests: 60, failures: 5 };
    let e = Sequential::new(0.01, ALPHA).evidence(c);
    assert!((e.log_e.exp() - 62.57).abs() < 0.01, "{e:?}");
    // Rejected at 90 % and 98 % confidence, not at 99 %: the same evidence, another bar.
    assert!(Sequential::new(0.01, 0.1).evidence(c).rejects());
    assert!(Sequential::new(0.01, 0.02).evidence(c).rejects());
    assert!(!e.rejects());
}

#[test]
fn counter_resets_add_nothing_and_counts_add_up() {
    let before = Counts { requests: 120, failures: 7 };
    assert_eq!(before.since(Counts { requests: 130, failures: 9 }), Counts { requests: 10, failures: 2 });
    // A restarted gateway reads lower: nothing is added, nothing is taken away.
    assert_eq!(before.since(Counts { requests: 3, failures: 0 }), Counts::default());
    assert_eq!(before + Counts { requests: 1, failures: 1 }, Counts { requests: 121, failures: 8 });
    assert_eq!(Counts::default().share(), None);
    assert_eq!(Counts { requests: 4, failures: 1 }.share(), Some(0.25));
    // More failures than requests (two counters read at different scrapes) is read as all.
    assert_eq!(Counts { requests: 2, failures: 5 }.share(), Some(1.0));
}

#[test]
fn a_healthy_stream_of_ten_thousand_requests_is_never_rejected() {
    let t = Sequential::new(0.01, ALPHA);
    let mut rng = fastrand::Rng::with_seed(28);
    let mut checked = 0;
    for c in stream(&mut rng, 0.005, 10_000) {
        assert!(!t.evidence(c).rejects(), "rejected a 0.5 % stream against a 1 % bound at {c:?}");
        checked += 1;
    }
    assert_eq!(checked, 10_000);
}

#[test]
fn at_the_bound_itself_at_most_alpha_of_releases_are_rejected_though_checked_after_every_request() {
    // The worst healthy case, p = p0, looked at after every request: Ville's inequality.
    let t = Sequential::new(0.01, ALPHA);
    let mut rng = fastrand::Rng::with_seed(29);
    let releases = 2_000;
    let rejected = (0..releases).filter(|_| stream(&mut rng, 0.01, 1_500).any(|c| t.evidence(c).rejects())).count();
    assert!(rejected as f64 / f64::from(releases) <= ALPHA, "{rejected} of {releases}");
}

#[test]
fn baseline_rejects_a_canary_worse_than_its_stable_and_not_one_as_bad_as_it() {
    let mut rng = fastrand::Rng::with_seed(30);
    let mut draw = |n: u64, p: f64| Counts { requests: n, failures: (0..n).filter(|_| rng.f64() < p).count() as u64 };
    // Both sides fail 20 % (act 2's load hits both): the canary is no worse. Not rejected.
    let mut alike = Baseline::new(ALPHA);
    for _ in 0..200 {
        alike.observe(draw(3, 0.2), draw(27, 0.2));
    }
    assert!(!alike.evidence().rejects(), "{:?}", alike.evidence());
    // The canary fails 20 %, the stable 1 %: rejected.
    let mut worse = Baseline::new(ALPHA);
    let mut at = None;
    for i in 0..200 {
        worse.observe(draw(3, 0.2), draw(27, 0.01));
        if worse.evidence().rejects() {
            at = Some(i);
            break;
        }
    }
    assert!(at.is_some_and(|i| i < 60), "{at:?}");
    // Nothing seen: no evidence.
    let mut idle = Baseline::new(ALPHA);
    idle.observe(Counts::default(), Counts { requests: 10, failures: 1 });
    idle.observe(Counts { requests: 3, failures: 0 }, Counts { requests: 10, failures: 0 });
    assert_eq!(idle.evidence().log_e, 0.0);
}
