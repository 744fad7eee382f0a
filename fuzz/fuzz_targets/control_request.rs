//! Fuzz target `control_request`: see [`huddle::fuzzing::control_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::control_request(data));
