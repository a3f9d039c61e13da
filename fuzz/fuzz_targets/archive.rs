#![no_main]
//! The tar entries of a bundle (oci-archive), its index and manifests (`mirror::fuzzing::archive`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mirror::fuzzing::archive(data));
