#![no_main]
//! Mirror sync YAML (`mirror::fuzzing::sync_config`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::sync_config(data));
