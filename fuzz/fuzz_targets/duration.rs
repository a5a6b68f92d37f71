#![no_main]
#![allow(dead_code)]

#[path = "../../tests/support/fuzz.rs"]
mod fuzz;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Err(why) = fuzz::check_timed(fuzz::Target::Duration, input) {
        panic!("duration: {why}");
    }
});
