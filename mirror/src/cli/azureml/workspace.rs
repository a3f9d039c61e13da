//! `--workspace NAME --resource-group RG [--subscription ID]`: starting
//! from the AzureML workspace, as the script this project replaces did.
//! Azure Resource Manager gives its region and its registry; the token
//! for it comes from the same sources as the Entra login to the registry.

use std::sync::Arc;

use clap::Args;
use registry_client::{ErrorKind, Proxy, Secret};

use crate::cli::error::Failure;
use crate::cli::out::say;
use mirror::azureml::arm::{
    ArmClient, ArmError, ArmErrorKind, Cloud, Registry, TokenProvider, Workspace,
};
use mirror::azureml::entra::{http_client, TokenSource};
use mirror::azureml::workspace::{self, Settled};

/// Where the run finds the workspace, and how it asks Resource Manager.
#[derive(Debug, Args, Clone)]
pub struct WorkspaceArgs {
    /// The AzureML workspace: Azure Resource Manager gives its region (its
    /// location) and the registry attached to it, in place of --region
    /// and --target (given too, they must agree with it).
    #[arg(long, value_name = "NAME", requires = "resource_group")]
    pub workspace: Option<String>,
    /// The workspace's resource group.
    #[arg(long, value_name = "GROUP", requires = "workspace")]
    pub resource_group: Option<String>,
    /// The subscription, by id or name (default: the Azure CLI's, as `az
    /// account set` left it).
    #[arg(long, value_name = "ID|NAME")]
    pub subscription: Option<String>,
    /// The Azure cloud: AzureCloud (the default), AzureChinaCloud,
    /// AzureUSGovernment, or the Resource Manager endpoint's https://
    /// address.
    #[arg(long, value_name = "NAME|URL", default_value = "AzureCloud", value_parser = clap::value_parser!(Cloud))]
    pub cloud: Cloud,
    /// Where the Resource Manager token comes from: azure-cli, azure-sdk,
    /// or env:VAR (a token for the management endpoint). Default: the
    /// source of --entra-token, else azure-cli.
    #[arg(long, value_name = "FROM")]
    pub arm_token: Option<TokenSource>,
}

/// A token for Resource Manager's scope from an Entra source, the SDK's
/// and `az`'s requests through the run's proxy.
struct ArmTokens {
    source: TokenSource,
    tenant: Option<String>,
    proxy: Proxy,
}

#[async_trait::async_trait]
impl TokenProvider for ArmTokens {
    async fn token(&self, scope: &str) -> Result<Secret, String> {
        self.source
            .token_for(scope, self.tenant.as_deref(), &self.proxy)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The token the registry login uses, when it is an Entra one: Resource
/// Manager asks the same source (and tenant) unless `--arm-token` says.
pub struct EntraLogin<'a> {
    pub source: Option<&'a TokenSource>,
    pub tenant: Option<&'a str>,
}

impl EntraLogin<'_> {
    pub const NONE: EntraLogin<'static> = EntraLogin {
        source: None,
        tenant: None,
    };
}

impl WorkspaceArgs {
    /// A client for Resource Manager, through `proxy`.
    pub fn arm(&self, login: &EntraLogin, proxy: &Proxy) -> Result<ArmClient, Failure> {
        let (source, tenant) = match (&self.arm_token, login.source) {
            (Some(s), _) => (s.clone(), None),
            (None, Some(s)) => (s.clone(), login.tenant.map(str::to_string)),
            (None, None) => (TokenSource::AzureCli, None),
        };
        let http = http_client(proxy).map_err(Failure::usage)?;
        let tokens = ArmTokens {
            source,
            tenant,
            proxy: proxy.clone(),
        };
        Ok(ArmClient::new(http, &self.cloud, Arc::new(tokens)))
    }

    /// The subscription: given (an id, or a name in the Azure CLI's
    /// profile), else the Azure CLI's default.
    pub fn subscription(&self) -> Result<String, Failure> {
        workspace::subscription(
            self.subscription.as_deref(),
            workspace::azure_config_dir().as_deref(),
        )
        .map_err(Failure::usage)
    }

    /// With `--workspace`: the workspace and its registry (when one is
    /// attached). `None` without `--workspace`.
    pub async fn read(
        &self,
        arm: &ArmClient,
    ) -> Result<Option<(Workspace, Option<Registry>)>, Failure> {
        let (Some(name), Some(group)) = (&self.workspace, &self.resource_group) else {
            return Ok(None);
        };
        let id = workspace::workspace_id(&self.subscription()?, group, name)
            .map_err(|e| Failure::usage(format!("--workspace: {e}")))?;
        workspace::read(arm, &id)
            .await
            .map(Some)
            .map_err(arm_failure)
    }

    /// With `--workspace`: reads it and settles the region and the target
    /// with those given (each must agree). `None` without `--workspace`.
    pub async fn settle(
        &self,
        arm: &ArmClient,
        region: Option<&str>,
        target: Option<&str>,
    ) -> Result<Option<Settled>, Failure> {
        let Some((ws, registry)) = self.read(arm).await? else {
            return Ok(None);
        };
        let (name, group) = (ws.id.name.clone(), ws.id.resource_group.clone());
        let settled = workspace::settle(ws, registry, region, target).map_err(Failure::usage)?;
        say!(
            "workspace {name} (resource group {group}): region {}, registry {}",
            settled.region,
            match &settled.registry {
                Some(Registry {
                    id, login_server, ..
                }) => format!("{} ({login_server})", id.name),
                None => format!("none attached, mirroring into {}", settled.target),
            }
        );
        Ok(Some(settled))
    }

    /// With `--workspace`: its region, checked against one given.
    pub async fn region(
        &self,
        arm: &ArmClient,
        given: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let Some((ws, _)) = self.read(arm).await? else {
            return Ok(None);
        };
        let region = workspace::checked_region(&ws, given).map_err(Failure::usage)?;
        say!(
            "workspace {} (resource group {}): region {region}",
            ws.id.name,
            ws.id.resource_group
        );
        Ok(Some(region))
    }
}

/// An error from Resource Manager as the command's failure: a refused or
/// missing token exits 3; a workspace or registry that is not there, or
/// has no registry, 2 (nothing was done); anything else 1.
pub fn arm_failure(e: ArmError) -> Failure {
    match e.kind {
        ArmErrorKind::Auth | ArmErrorKind::Token => Failure::of_kind(ErrorKind::Auth, e),
        ArmErrorKind::NotFound | ArmErrorKind::NoRegistry => Failure::usage(e),
        _ => Failure::failed(e),
    }
}
