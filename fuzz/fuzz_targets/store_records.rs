//! Fuzz target `store_records`: see [`huddle::fuzzing::store_records`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::store_records(data));
