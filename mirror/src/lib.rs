//! mirror: a concurrent, resumable OCI image mirroring engine.
//!
//! Data flows one way: what to copy ([`endpoint`]: where an image lives)
//! → plan ([`plan`]: jobs over stores from one factory, compared with two
//! HEADs) → transfer ([`transfer`]: one engine walking each image's
//! [`graph`] over [`store`]s) → report ([`report`]), with [`progress`]
//! events along the way. Every command is a function here that returns a
//! report ([`sync::run::sync`], [`export`], [`import`], [`verify`], the
//! [`azureml`] preset); the binary only parses arguments and renders.

pub mod azureml;
pub mod bundle;
pub mod delta;
pub mod endpoint;
pub mod export;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod import;
pub mod ledger;
pub mod limits;
pub mod no_match;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod regular_file;
pub mod report;
pub mod settings;
pub mod state;
pub mod store;
pub mod sync;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod transfer;
pub mod units;
pub mod verify;
