//! `mirror sync`: keep lists of images current from a config file, cheaply
//! when nothing changed.
//!
//! [`config`] reads the YAML (or [`skopeo`] a skopeo sync file) into
//! entries; [`expand`] lists tags, picks them with [`select`], names targets
//! with [`template`]s, keeps this [`shard`]'s images and compares digests
//! with HEAD requests; [`run`] copies what differs through the engine and
//! builds the report. [`lock`] keeps two runs of one config apart.

pub mod config;
pub mod expand;
pub mod lock;
pub mod run;
pub mod select;
pub mod shard;
pub mod skopeo;
pub mod template;

pub use config::{ConfigError, SyncConfig};
pub use run::{Status, SyncImage, SyncReport};
pub use shard::Shard;
