//! Test harness for `mirror`: real servers on loopback, started and torn down by tests.
//!
//! - [`Registry`]: the real CNCF distribution registry (`docker-registry`), open, htpasswd,
//!   token auth or TLS, with its access log readable for request counting.
//! - [`TokenServer`]: a Docker/OAuth2/ACR-style token endpoint whose ES256 JWTs the real
//!   registry verifies.
//! - [`FaultProxy`]: a scripted reverse proxy that injects faults mid-stream.
//! - [`StorageHost`]: a second host standing in for blob storage behind a registry redirect.
//! - [`TestCa`]: a throwaway certificate authority for TLS tests.
//! - [`HostileRegistry`]: a purpose-built registry that misbehaves on demand, one
//!   [`Misbehaviour`] at a time (lying digests, endless bodies, redirect and 401 loops, …).
//! - [`arm_server::ArmServer`]: a stand-in for the Azure Resource Manager endpoints the AzureML
//!   preset uses (workspace, registry, `importImage` and its operation), importing for real.
//! - [`ReferrersServer`]: a purpose-built registry with the OCI 1.1 referrers API, which
//!   distribution 2.8 lacks.
//!
//! Everything binds 127.0.0.1 on a free port, lives in its own temporary directory and
//! cleans up on `Drop`, so tests can run in parallel.

pub mod arm_server;
pub mod azure_cli;
pub mod cli;
pub mod fault_proxy;
pub mod files;
pub mod fixtures;
mod gauge;
pub mod hostile_registry;
pub mod images;
pub mod memory;
pub mod peers;
pub mod podman;
pub mod proxy;
pub mod referrers_server;
pub mod registry;
pub mod sandbox;
mod server;
pub mod setup;
pub mod signed;
pub mod storage_host;
pub mod tls;
pub mod tls_front;
pub mod token_server;

#[cfg(test)]
mod harness_tests;

pub use fault_proxy::{Fault, FaultProxy, ProxyRequest, Rule};
pub use hostile_registry::{HostileRegistry, Misbehaviour};
pub use referrers_server::{ReferrersServer, ReferrersServerOptions, ServedRequest};
pub use registry::{AccessLogEntry, Registry, RegistryAuth, RegistryOptions};
pub use storage_host::{StorageHost, StorageRequest};
pub use tls::TestCa;
pub use token_server::{Grant, TokenRequest, TokenServer, TokenServerOptions, TokenUser};

/// Installs a `tracing` subscriber that writes through the test harness's captured output
/// (shown only for failing tests). Filter with `RUST_LOG`; default `info`. Safe to call from
/// every test.
pub fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be installed (e.g. by the test binary): keep it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// Only for processes we cannot hand a bound socket (the registry); there is a small race
/// with other processes, which [`Registry::start`] absorbs by retrying.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}
