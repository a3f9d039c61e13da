#![no_main]
//! The Link header of tag and catalog pages (`registry_client::fuzzing::link`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::link(data));
