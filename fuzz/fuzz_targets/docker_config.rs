#![no_main]
//! Docker's config.json and the credentials it gives (`registry_client::fuzzing::docker_config`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::docker_config(data));
