//! `mirror azureml …`: the AzureML preset. `sync` brings the runtime
//! images into the customer's registry and prints the job variables;
//! `check` says whether they are there, current and pullable; `env`
//! prints the job variables alone.

mod check;
mod env;
mod login;
mod server_side;
mod sync;
pub mod workspace;

use clap::{Args, Subcommand};
use registry_client::{Client, Credential, CredentialChain, Proxy, StaticCredentials};

use super::error::{CommandResult, Failure};
use super::exit;
use mirror::azureml::arm::{ArmClient, Registry};
use mirror::azureml::preset::{Location, Preset};
use mirror::azureml::regions;
use workspace::{EntraLogin, WorkspaceArgs};

#[derive(Debug, Subcommand)]
pub enum AzuremlCommand {
    /// Mirror the runtime images (`{region}-stable` → `stable`) into the
    /// customer's registry, then print the job variables.
    Sync(sync::SyncArgs),
    /// For each runtime image: is it in the target, the same as the
    /// source, and can the job's credentials pull it?
    Check(check::CheckArgs),
    /// Print AZUREML_COMPUTE_USE_COMMON_RUNTIME and
    /// AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE for a target registry.
    Env(env::EnvArgs),
}

pub async fn run(command: AzuremlCommand) -> CommandResult {
    match command {
        AzuremlCommand::Sync(args) => sync::run(args).await,
        AzuremlCommand::Check(args) => check::run(args).await,
        AzuremlCommand::Env(args) => {
            env::env(args).await?;
            Ok(exit::OK)
        }
    }
}

/// Which images, from where, to where.
#[derive(Debug, Args)]
pub struct PresetArgs {
    /// The Azure region whose runtime tags to mirror (`eastus` takes the
    /// `eastus-stable` tags); with --workspace, its location.
    #[arg(long, value_name = "REGION", required_unless_present = "workspace")]
    region: Option<String>,
    /// The customer's registry, optionally with a prefix for the images:
    /// `contoso.azurecr.io` or `contoso.azurecr.io/azureml`; with
    /// --workspace, the registry attached to it.
    #[arg(
        long,
        value_name = "HOST[/PREFIX]",
        required_unless_present = "workspace"
    )]
    target: Option<String>,
    /// Put the images under this prefix in the target (the same as
    /// --target HOST/PREFIX).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Where the images come from: the AzureML system registry (`HOST`,
    /// with --source-username or --source-entra-token) or the public
    /// Microsoft Container Registry (the default:
    /// mcr.microsoft.com/azureml/runtime, anonymous).
    #[arg(long, value_name = "HOST[/PREFIX]")]
    source: Option<String>,
    /// Keep the regional tags in the target (`eastus-stable`, and
    /// `regional_tag_prefix: true` in the job variables).
    #[arg(long)]
    regional_tags: bool,
    /// Mirror this repository too, named as in the system registry
    /// (`cap/new-capability/installed`); repeatable.
    #[arg(long, value_name = "REPO")]
    extra: Vec<String>,
    /// Leave the images' referrers (signatures, SBOMs, attestations) out:
    /// `sync` copies none and `check` does not count them. By default both
    /// do, so a signature policy on the target finds the source's.
    #[arg(long)]
    no_referrers: bool,
    #[command(flatten)]
    workspace: WorkspaceArgs,
}

/// The preset, and what Resource Manager said when the workspace was
/// asked.
pub struct Planned {
    pub preset: Preset,
    /// The client that asked (for server-side imports).
    pub arm: Option<ArmClient>,
    /// The workspace's registry, when it is the target.
    pub registry: Option<Registry>,
}

/// A client for the preset's two registries: each given login for its own
/// registry, then the auth files (`authfile` alone when given).
pub fn preset_client(
    registries: &super::RegistryArgs,
    preset: &Preset,
    target: Option<Credential>,
    source: Option<Credential>,
    authfile: Option<&std::path::Path>,
) -> Result<Client, registry_client::Error> {
    let mut explicit = StaticCredentials::new();
    if let Some(c) = target {
        explicit.insert(&preset.target.registry, c);
    }
    if let Some(c) = source {
        explicit.insert(&preset.source.registry, c);
    }
    let chain = CredentialChain::explicit_then_auth_files(explicit, authfile)?;
    registries.client_with(std::sync::Arc::new(chain))
}

/// The target a workspace settled (`host`), under the prefix given with
/// `--target HOST/PREFIX` or `--prefix`.
pub fn settled_target(host: String, given: Option<Location>, prefix: Option<&str>) -> Location {
    Location {
        registry: host,
        prefix: match given {
            Some(l) => l.prefix,
            None => prefix.map(str::to_string),
        },
    }
}

/// `--target HOST[/PREFIX]` with `--prefix PREFIX`: the one reading of the
/// customer's registry, for every azureml command (the job variables split
/// it into `url` and `repo_prefix`).
pub fn target_location(target: &str, prefix: Option<&str>) -> Result<Location, String> {
    let mut location = Location::parse(target).map_err(|e| format!("--target {e}"))?;
    if let Some(p) = prefix {
        if location.prefix.is_some() {
            return Err("give the prefix once: in --target HOST/PREFIX or --prefix".into());
        }
        location.prefix = Some(p.trim_matches('/').to_string()).filter(|p| !p.is_empty());
    }
    Ok(location)
}

impl PresetArgs {
    /// The preset from the flags, the workspace's region and registry
    /// filling in (and checking) the region and the target; Resource
    /// Manager asked with `login`'s token source, through `proxy`.
    pub async fn plan(&self, login: &EntraLogin<'_>, proxy: &Proxy) -> Result<Planned, Failure> {
        let given = self
            .target
            .as_deref()
            .map(|t| target_location(t, self.prefix.as_deref()))
            .transpose()
            .map_err(Failure::usage)?;
        let given_region = self
            .region
            .as_deref()
            .map(regions::check)
            .transpose()
            .map_err(Failure::usage)?;
        let source = match &self.source {
            Some(s) => Location::parse(s).map_err(|e| Failure::usage(format!("--source {e}")))?,
            None => Location::mcr(),
        };
        let (region, target, arm, registry) = match (given_region, given) {
            (Some(region), Some(target)) if self.workspace.workspace.is_none() => {
                (region.to_string(), target, None, None)
            }
            (given_region, given) => {
                let arm = self.workspace.arm(login, proxy)?;
                let given_host = given.as_ref().map(|l| l.registry.as_str());
                let settled = self
                    .workspace
                    .settle(&arm, given_region, given_host)
                    .await?
                    .ok_or_else(|| {
                        Failure::usage(
                            "give --region and --target, or --workspace and --resource-group",
                        )
                    })?;
                let target = settled_target(settled.target, given, self.prefix.as_deref());
                (settled.region, target, Some(arm), settled.registry)
            }
        };
        let preset = Preset {
            region,
            source,
            target,
            regional_tags: self.regional_tags,
            extra: self.extra.clone(),
            referrers: !self.no_referrers,
        };
        // Bad repository names are usage errors, found before any copy.
        preset.images().map_err(Failure::usage)?;
        Ok(Planned {
            preset,
            arm,
            registry,
        })
    }
}
