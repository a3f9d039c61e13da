//! mirror: a concurrent, resumable OCI image mirroring engine.

pub mod cli;
pub mod store;
