#![no_main]
//! A blob GET's Content-Range, an upload status's Range (`registry_client::fuzzing::content_range`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::content_range(data));
