//! Fuzz target `enroll_frame`: see [`huddle::fuzzing::enroll_frame`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::enroll_frame(data));
