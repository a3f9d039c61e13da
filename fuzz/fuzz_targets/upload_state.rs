#![no_main]
//! An upload session record (`mirror::fuzzing::upload_state`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::upload_state(data));
