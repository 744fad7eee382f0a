//! Fuzz target `invitation`: see [`huddle::fuzzing::invitation`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::invitation(data));
