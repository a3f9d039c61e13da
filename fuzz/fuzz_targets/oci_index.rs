#![no_main]
//! A layout's or bundle's index.json (`mirror::fuzzing::oci_index`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::oci_index(data));
