//! `mirror sync`: keep lists of images current from a config file, cheaply
//! when nothing changed.
//!
//! [`config`] reads the YAML (or [`skopeo`] a skopeo sync file) into
//! entries; [`plan`] lists tags, picks them with [`select`], names targets
//! with [`template`]s, keeps this [`shard`]'s images and compares digests
//! with HEAD requests; [`run`] copies what differs through the engine and
//! builds the report. [`lock`] keeps two runs of one config apart.

pub mod config;
pub mod lock;
pub mod plan;
pub mod run;
pub mod select;
pub mod shard;
pub mod skopeo;
pub mod template;

use std::sync::Arc;

use registry_client::{Client, ClientConfig, CredentialChain, StaticCredentials};

pub use config::{ConfigError, SyncConfig};
pub use run::{Status, SyncImage, SyncReport};
pub use shard::Shard;

/// A client for a config's registries: its credentials first, then
/// docker's config.json; its CA files and plain-HTTP registries.
pub fn client(config: &SyncConfig) -> Result<Client, registry_client::Error> {
    let mut explicit = StaticCredentials::new();
    for r in &config.registries {
        if let Some(c) = &r.credential {
            explicit.insert(&r.host, c.clone());
        }
    }
    let chain = CredentialChain::explicit_then_docker(explicit)?;
    Client::new(ClientConfig {
        insecure_registries: config
            .registries
            .iter()
            .filter(|r| r.insecure)
            .map(|r| r.host.clone())
            .collect(),
        tls_registries: config
            .registries
            .iter()
            .filter(|r| r.tls)
            .map(|r| r.host.clone())
            .collect(),
        ca_files: config
            .registries
            .iter()
            .flat_map(|r| r.ca_files.iter().cloned())
            .collect(),
        credentials: Arc::new(chain),
        host_requests: config
            .registries
            .iter()
            .filter_map(|r| Some((r.host.clone(), r.max_requests_per_host?)))
            .collect(),
        max_requests_per_host: config
            .max_requests_per_host
            .or(ClientConfig::default().max_requests_per_host),
        read_timeout: config
            .read_timeout
            .unwrap_or(ClientConfig::default().read_timeout),
        http: config.http,
        ..ClientConfig::default()
    })
}
