//! How to reach registries, and the one function that builds a registry
//! client from it. Command-line flags and sync-config keys both become
//! [`ClientSettings`], so every command reaches a registry alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use registry_client::{
    Client, ClientConfig, Credential, CredentialChain, CredentialStore, HttpVersion, Proxy,
    StaticCredentials,
};

/// How to reach one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    pub host: String,
    /// Explicit credentials; without them docker's config.json is asked.
    pub credential: Option<Credential>,
    /// Trust these CAs (PEM) besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// Plain HTTP (no TLS).
    pub insecure: bool,
    /// TLS even on loopback (a `tls:` block without `insecure: true`).
    pub tls: bool,
    pub chunk_threshold: Option<u64>,
    pub chunk_size: Option<usize>,
    /// Requests in flight to this registry, in place of the top-level value.
    pub max_requests_per_host: Option<usize>,
}
/// Every registry setting of a run.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub registries: Vec<RegistrySettings>,
    /// Requests in flight at once to one host (reads and writes each);
    /// a registry's own value wins.
    pub max_requests_per_host: Option<usize>,
    /// Give up on a response silent this long.
    pub read_timeout: Option<Duration>,
    pub http: HttpVersion,
    /// The proxy (`--proxy`, a sync config's `proxy:`); `None`: the one
    /// the environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
    pub proxy: Option<Proxy>,
    /// Trust these CAs (PEM) for an `https://` proxy (`--proxy-ca-file`,
    /// a sync config's `proxy_ca_file:`), whichever proxy is used.
    pub proxy_ca_files: Vec<PathBuf>,
}

impl ClientSettings {
    /// Unless a cap is set, allow each host the requests a run of `jobs`
    /// blob streams sends at once (`transfer::request_budget`).
    pub fn for_jobs(mut self, jobs: usize) -> Self {
        self.max_requests_per_host
            .get_or_insert(crate::transfer::request_budget(jobs));
        self
    }

    /// The settings of one host, created empty when first asked for.
    pub fn registry_mut(&mut self, host: &str) -> &mut RegistrySettings {
        let i = match self.registries.iter().position(|r| r.host == host) {
            Some(i) => i,
            None => {
                self.registries.push(RegistrySettings {
                    host: host.to_string(),
                    ..RegistrySettings::default()
                });
                self.registries.len() - 1
            }
        };
        // Found or just pushed: in bounds.
        &mut self.registries[i]
    }

    /// The credentials the registries were given.
    pub fn explicit_credentials(&self) -> StaticCredentials {
        let mut explicit = StaticCredentials::new();
        for r in &self.registries {
            if let Some(c) = &r.credential {
                explicit.insert(&r.host, c.clone());
            }
        }
        explicit
    }

    /// The registries' own credentials first, then the auth files
    /// (podman's, skopeo's and docker's; `auth_file` alone when named).
    pub fn credentials(
        &self,
        auth_file: Option<&Path>,
    ) -> Result<CredentialChain, registry_client::Error> {
        CredentialChain::explicit_then_auth_files(self.explicit_credentials(), auth_file)
    }

    /// A client with the registries' own credentials, then the auth files.
    pub fn client(&self) -> Result<Client, registry_client::Error> {
        self.client_with_auth_file(None)
    }

    /// A client with the registries' own credentials, then `auth_file`
    /// alone when named (`--authfile`), else the auth files.
    pub fn client_with_auth_file(
        &self,
        auth_file: Option<&Path>,
    ) -> Result<Client, registry_client::Error> {
        self.client_with(Arc::new(self.credentials(auth_file)?))
    }

    /// The proxy requests go through: the one given, else the
    /// environment's, trusting the proxy CA files.
    pub fn proxy(&self) -> Result<Proxy, registry_client::Error> {
        let proxy = match &self.proxy {
            Some(p) => p.clone(),
            None => Proxy::from_env()?,
        };
        Ok(self
            .proxy_ca_files
            .iter()
            .fold(proxy, |p, f| p.with_ca_file(f.clone())))
    }

    /// The one client builder: these settings, asking `credentials`.
    pub fn client_with(
        &self,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Client, registry_client::Error> {
        let defaults = ClientConfig::default();
        let config = ClientConfig::builder()
            .insecure_registries(
                self.registries
                    .iter()
                    .filter(|r| r.insecure)
                    .map(|r| r.host.clone()),
            )
            .tls_registries(
                self.registries
                    .iter()
                    .filter(|r| r.tls)
                    .map(|r| r.host.clone()),
            )
            .ca_files(
                self.registries
                    .iter()
                    .flat_map(|r| r.ca_files.iter().cloned()),
            )
            .credentials(credentials)
            .host_requests(
                self.registries
                    .iter()
                    .filter_map(|r| Some((r.host.clone(), r.max_requests_per_host?))),
            )
            .max_requests_per_host(
                self.max_requests_per_host
                    .or(defaults.max_requests_per_host),
            )
            .read_timeout(self.read_timeout.unwrap_or(defaults.read_timeout))
            .http(self.http)
            .limits(crate::limits::get().client)
            .proxy(self.proxy()?);
        Client::new(config.build())
    }
}
