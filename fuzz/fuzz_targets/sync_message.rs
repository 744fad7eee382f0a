//! Fuzz target `sync_message`: see [`huddle::fuzzing::sync_message`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::sync_message(data));
