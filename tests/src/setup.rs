//! Starting points many tests share: a registry ready to use, or one behind
//! a fault proxy.

use registry_client::{Client, Repository};

use crate::images::{client, repo};
use crate::{FaultProxy, Registry};

/// An open registry, an anonymous client for it and its repository `name`.
pub async fn open_registry_with_repo(name: &str) -> (Registry, Client, Repository) {
    let reg = Registry::start_open().await.unwrap();
    let c = client(&reg.host(), None);
    let r = repo(&reg.host(), name);
    (reg, c, r)
}

/// An open registry with a fault proxy in front of it (talk to the proxy's
/// host to meet its faults).
pub async fn open_registry_behind_proxy() -> (Registry, FaultProxy) {
    let reg = Registry::start_open().await.unwrap();
    let proxy = FaultProxy::start(&reg.base_url()).await.unwrap();
    (reg, proxy)
}
