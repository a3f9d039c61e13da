//! mirror: a concurrent, resumable OCI image mirroring engine.
//!
//! The engine (stores, plan, transfer) lands on top of `registry-client`;
//! for now the library holds the command line.

pub mod cli;
