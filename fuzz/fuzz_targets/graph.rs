#![no_main]
//! Manifest and index JSON walked into the image graph (`mirror::fuzzing::graph`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::graph(data));
