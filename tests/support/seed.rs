//! The seed of a randomized test: fixed unless a random one is asked for, so a red CI run
//! is the change's and not the draw's; a drawn seed is printed, so its run can be replayed.

/// The seed `var` asks for: a number replays that seed, `random` draws one (and prints
/// it), unset is `fixed`. Anything else is a mistake worth stopping on.
pub fn seed(var: &str, fixed: u64) -> u64 {
    match std::env::var(var).as_deref() {
        Err(_) => fixed,
        Ok("random") => {
            let drawn = fastrand::u64(..);
            eprintln!("{var}=random drew {var}={drawn}");
            drawn
        }
        Ok(n) => n.parse().unwrap_or_else(|_| panic!("{var}={n:?}: expected a number or `random`")),
    }
}

/// Proptest's seed: proptest draws one per run unless told, so the same rule holds
/// through its own variable, `PROPTEST_RNG_SEED` (a number, or `random`).
#[allow(dead_code)] // only the proptest files use it
pub fn proptest() -> proptest::test_runner::RngSeed {
    proptest::test_runner::RngSeed::Fixed(seed("PROPTEST_RNG_SEED", FIXED))
}

/// The seed of every randomized test when no other is asked for.
pub const FIXED: u64 = 27;
