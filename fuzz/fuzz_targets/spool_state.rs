#![no_main]
//! A spooled download's checkpoint and data file (`mirror::fuzzing::spool_state`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::spool_state(data));
