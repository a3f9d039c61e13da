#![no_main]
//! WWW-Authenticate challenges and the scopes they ask for (`registry_client::fuzzing::challenge`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::challenge(data));
