//! Fuzz target `thread_change`: see [`huddle::fuzzing::thread_change`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::thread_change(data));
