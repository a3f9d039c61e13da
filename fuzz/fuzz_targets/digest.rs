#![no_main]
//! Digests (parse → display is the input) and saved hasher states (`registry_client::fuzzing::digest`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::digest(data));
