#![no_main]
//! Skopeo sync YAML (`mirror::fuzzing::skopeo_config`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::skopeo_config(data));
