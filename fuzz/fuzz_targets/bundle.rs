//! Fuzz target `bundle`: see [`huddle::fuzzing::bundle`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::bundle(data));
