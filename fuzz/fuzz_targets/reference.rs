#![no_main]
//! Image references: parse → display → parse (`registry_client::fuzzing::reference`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| registry_client::fuzzing::reference(data));
