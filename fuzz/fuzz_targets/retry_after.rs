#![no_main]
//! Retry-After, seconds or an HTTP date (`registry_client::fuzzing::retry_after`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::retry_after(data));
