//! Fuzz target `envelope`: see [`huddle::fuzzing::envelope`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::envelope(data));
