//! The fuzz targets' short run, every CI run: each target gets a stream of mutated
//! real-shaped inputs (`tests/support/fuzz_input.rs`) and must answer every one as its
//! reader expects (`tests/support/fuzz.rs`); the seeds themselves and every input that
//! once failed (`tests/fixtures/fuzz/<target>/`) are replayed. No timing is asserted
//! here: `cargo bench --bench fuzz` runs the long, timed version (RELIABILITY.md).
//!
//! The seed is fixed (`support/seed.rs`), so CI fails for the change and not for a draw;
//! `FUZZ_SEED=random` draws one (printed), for a run that explores. A failure names its
//! seed: `FUZZ_SEED=<seed> cargo test --test fuzz` replays it (`FUZZ_INPUTS` sets the
//! count, 2,000 per target by default).

#[path = "support/fuzz.rs"]
mod fuzz;
#[path = "support/fuzz_input.rs"]
mod fuzz_input;
#[path = "support/seed.rs"]
mod seed;

use fuzz::Target;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn smoke(target: Target) {
    let seed = seed::seed("FUZZ_SEED", seed::FIXED);
    let inputs = env("FUZZ_INPUTS").unwrap_or(2_000);
    let mut mutator = fuzz_input::Mutator::new(target, seed);
    let mut input = Vec::new();
    for i in 0..inputs {
        mutator.next_into(&mut input);
        if let Err(why) = fuzz::run(target, &input) {
            let saved = std::env::temp_dir().join(format!("fuzz-{}-{seed}-{i}", target.name()));
            std::fs::write(&saved, &input).unwrap();
            panic!(
                "{}: input {i} of FUZZ_SEED={seed} failed (saved to {}; add it to tests/fixtures/fuzz/{}/): {why}",
                target.name(),
                saved.display(),
                target.name()
            );
        }
    }
    eprintln!("{}: {inputs} inputs of FUZZ_SEED={seed} passed", target.name());
}

#[test]
fn mutate_deployments() {
    smoke(Target::MutateDeployments);
}

#[test]
fn validate_deployments() {
    smoke(Target::ValidateDeployments);
}

#[test]
fn validate_canaries() {
    smoke(Target::ValidateCanaries);
}

#[test]
fn convert() {
    smoke(Target::Convert);
}

#[test]
fn annotations() {
    smoke(Target::Annotations);
}

#[test]
fn duration() {
    smoke(Target::Duration);
}

#[test]
fn template() {
    smoke(Target::Template);
}

#[test]
fn every_seed_and_every_past_failure_passes() {
    for target in Target::ALL {
        for (i, seed) in fuzz_input::seeds(target).iter().enumerate() {
            fuzz::run(target, seed).unwrap_or_else(|why| panic!("{} seed {i}: {why}", target.name()));
        }
        for (path, input) in fuzz::regressions(target) {
            fuzz::run(target, &input).unwrap_or_else(|why| panic!("{}: {why}", path.display()));
        }
    }
}

/// The checks are not blind: an answer broken in each way they look for is refused.
#[test]
fn the_checks_catch_what_they_are_for() {
    use apisix_canary::admission::{self, AdmissionResponse, Hook};
    let review =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/admission/set-image.json")).unwrap();
    let (answer, _) = admission::review(Hook::MutateDeployments, &review);
    assert!(answer.allowed && answer.patch.is_some(), "the set-image review is a release: {answer:?}");
    assert_eq!(fuzz::judge_review(&review, &answer, Some(&answer)), Ok(()));
    let broken = |change: &dyn Fn(&mut AdmissionResponse)| {
        let mut bad = answer.clone();
        change(&mut bad);
        fuzz::judge_review(&review, &bad, None).expect_err("a broken answer passed")
    };
    assert!(broken(&|r| r.uid = "another".into()).contains("answered as"));
    assert!(broken(&|r| r.allowed = false).contains("denial"));
    let off = br#"[{"op":"remove","path":"/spec/nothing"}]"#.to_vec();
    assert!(broken(&|r| r.patch = Some(off.clone())).contains("does not apply"));
    let mut other = answer.clone();
    other.warnings.get_or_insert_default().push("said only by one parse".into());
    assert!(fuzz::judge_review(&review, &answer, Some(&other)).unwrap_err().contains("full parse"));
    // Bytes that are not JSON must be denied as malformed, not answered as a review.
    let (not_json, _) = admission::review(Hook::ValidateCanaries, b"\xff\x00not json");
    assert_eq!((not_json.allowed, not_json.result.code), (false, 400));
    let mut allowed = not_json.clone();
    allowed.allowed = true;
    assert!(fuzz::judge_review(b"\xff\x00not json", &allowed, None).unwrap_err().contains("not JSON"));
    // An out-of-range plan is refused with errors, which the check accepts; the lines of
    // the annotation target read as keys under our prefix unless they name their own.
    assert!(fuzz::check(Target::Annotations, b"route=podinfo\nmax-weight=500\n").is_ok(), "refused, not run");
    assert!(fuzz::annotation_map(b"route=a\nx/y=1").contains_key("apisix-canary.dev/route"));
    assert!(fuzz::annotation_map(b"route=a\nx/y=1").contains_key("x/y"));
}
