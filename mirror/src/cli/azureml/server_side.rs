//! `mirror azureml sync --server-side`: the customer's registry imports
//! each runtime image itself (ACR `importImage`, what `az acr import`
//! does), for a machine that reaches Resource Manager and the target but
//! not the source. Around the imports the data plane is asked: before,
//! which images are current already (they are not imported again); after,
//! whether each target tag holds the source's digest. The same report,
//! exit codes, lock and job variables as the streaming sync.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use registry_client::{Credential, ErrorKind, Proxy};

use super::workspace::{arm_failure, EntraLogin};
use super::{Planned, PresetArgs};
use crate::cli::error::Failure;
use crate::cli::out::say;
use crate::cli::sync::{conclude, Report, RunArgs};
use crate::cli::RegistryArgs;
use mirror::azureml::arm::{ArmClient, ArmErrorKind, ImportMode, Registry, ResourceId};
use mirror::azureml::preset::{Preset, PresetImage};
use mirror::azureml::server_side::{
    import_all, import_request, verify, Landed, ServerSideOptions, SourceSide,
};
use mirror::sync::lock::RunLock;
use mirror::sync::{Status, SyncImage, SyncReport};

#[derive(Debug, Args)]
pub struct ServerSideArgs {
    /// Have the target registry import each image itself (ACR
    /// importImage, as `az acr import` does): this machine then needs to
    /// reach only Azure Resource Manager and the target (the source is
    /// asked for its digests where it can be). Needs the registry in
    /// Azure (--workspace, or --registry-resource-group) and a role that
    /// allows importImage on it.
    #[arg(long)]
    pub server_side: bool,
    /// With --server-side: how long each import may take, from its request
    /// to its end (`30m`, `90s`).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = mirror::units::parse_duration, requires = "server_side")]
    pub import_timeout: Duration,
    /// With --server-side, when no workspace names the registry: the
    /// target registry's resource group (its name is the login server's
    /// first label: `contoso` for contoso.azurecr.io).
    #[arg(long, value_name = "GROUP", requires = "server_side")]
    pub registry_resource_group: Option<String>,
    /// With --server-side: do not ask the source from this machine (it
    /// cannot reach it): every image is imported, and afterwards only the
    /// target's tags are checked.
    #[arg(long, requires = "server_side")]
    pub no_source_check: bool,
}

/// The logins read for the run, and how Resource Manager is asked.
pub struct Logins<'a> {
    pub target: Option<Credential>,
    pub source: Option<Credential>,
    pub proxy: &'a Proxy,
    pub entra: EntraLogin<'a>,
}

/// Imports what is not current, checks what landed, and reports it as a
/// sync does. The report's exit code and the report.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    args: &ServerSideArgs,
    planned: Planned,
    flags: &PresetArgs,
    logins: Logins<'_>,
    registries: &RegistryArgs,
    run: &RunArgs,
    lock_path: &Path,
    output: Report,
) -> Result<(i32, SyncReport), Failure> {
    let started = Instant::now();
    let preset = planned.preset;
    if run.state_dir.is_some() {
        return Err(Failure::usage(
            "--state-dir: a server-side copy moves no bytes through this machine, so it keeps no state",
        ));
    }
    let source_credentials = match logins.source.clone() {
        None => None,
        Some(Credential::Basic { username, password }) => Some((username, password)),
        Some(_) => {
            return Err(Failure::usage(
                "--server-side: the registry logs in to the source with a user name and password \
                 (--source-username with --source-password-env or --source-password-stdin), not an Entra token",
            ))
        }
    };
    let arm = match planned.arm {
        Some(arm) => arm,
        None => flags.workspace.arm(&logins.entra, logins.proxy)?,
    };
    let registry = match planned.registry {
        Some(r) => r,
        None => registry_by_group(args, flags, &arm, &preset).await?,
    };
    let jobs = run.jobs.map(usize::from).unwrap_or(6);
    let options = ServerSideOptions {
        jobs,
        deadline: args.import_timeout,
        mode: ImportMode::Force,
        source_credentials,
        source_resource_id: None,
    };
    let images = preset.images().map_err(Failure::usage)?;
    // Every request is checked before the first is sent.
    for image in &images {
        import_request(image, &registry.login_server, &options).map_err(Failure::usage)?;
    }

    let _lock = RunLock::acquire(lock_path)?;
    let client = super::preset_client(
        registries,
        &preset,
        logins.target,
        logins.source,
        run.authfile.authfile.as_deref(),
    )
    .map_err(Failure::usage)?;
    let side = if args.no_source_check {
        SourceSide::Skip
    } else {
        SourceSide::Ask
    };
    say!(
        "importing {} runtime images for {} into {} server-side ({}): {} → {} ({} → {})",
        images.len(),
        preset.region,
        registry.id.name,
        registry.login_server,
        preset.source,
        preset.target,
        mirror::azureml::images::source_tag(&preset.region),
        mirror::azureml::images::target_tag(&preset.region, preset.regional_tags),
    );
    if preset.referrers {
        say!(
            "note: importImage copies no referrers: signatures and SBOMs stay at the source \
             (stream with `mirror azureml sync` to copy them; `--no-referrers` silences this)"
        );
    }

    // One row per image, in the preset's order, as the streaming sync
    // reports; the current ones are not imported again.
    let before = verify(&images, &client, side, jobs).await;
    let mut rows: Vec<SyncImage> = images
        .iter()
        .zip(&before)
        .map(|(image, v)| {
            let mut r = row(image, Status::Current);
            r.source_digest = v.source_digest.clone();
            r.previous_target_digest = v.target_digest.clone();
            r.target_digest = v.target_digest.clone();
            if v.landed != Landed::Same {
                r.status = Status::WouldCopy;
                r.warnings.extend(v.note.clone());
            }
            r
        })
        .collect();
    let stale: Vec<usize> = (0..images.len())
        .filter(|&i| rows[i].status == Status::WouldCopy)
        .collect();

    if run.dry_run {
        for &i in &stale {
            say!(
                "dry run: would ask {} to import {} as {}",
                registry.id.name,
                rows[i].source,
                rows[i].target
            );
        }
        let report = SyncReport::of(rows, true, started.elapsed().as_secs_f64());
        let code = conclude(&report, run, output)?;
        return Ok((code, report));
    }

    let to_import: Vec<PresetImage> = stale.iter().map(|&i| images[i].clone()).collect();
    let outcomes = tokio::select! {
        o = import_all(&arm, &registry.id, &registry.login_server, &to_import, &options) => o,
        _ = tokio::signal::ctrl_c() => {
            return Err(Failure::interrupted(
                "interrupted: the registry may still finish the imports already asked for (run again to check)",
            ));
        }
    };
    let landed: Vec<PresetImage> = to_import
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.result.is_ok())
        .map(|(i, _)| i.clone())
        .collect();
    let mut after = verify(&landed, &client, side, jobs).await.into_iter();
    for (&i, outcome) in stale.iter().zip(&outcomes) {
        let r = &mut rows[i];
        r.status = Status::Failed;
        r.warnings.clear();
        match &outcome.result {
            Err(e) => {
                r.error = Some(e.to_string());
                r.error_kind = (e.kind == ArmErrorKind::Auth).then_some(ErrorKind::Auth);
            }
            // One verification per landed import, in their order.
            Ok(_) => match after.next() {
                Some(v) => {
                    r.source_digest = v.source_digest.clone();
                    r.target_digest = v.target_digest.clone();
                    if v.ok() {
                        r.status = Status::Imported;
                        r.warnings.extend(v.note);
                    } else {
                        r.error = Some(format!(
                            "the import ended well, but {}",
                            v.note
                                .unwrap_or_else(|| "the target could not be checked".into())
                        ));
                    }
                }
                None => r.error = Some("the import ended well, but was not checked".into()),
            },
        }
    }
    let report = SyncReport::of(rows, false, started.elapsed().as_secs_f64());
    // Refused by Resource Manager, not by a registry: this hint, not the
    // registries' login hint.
    let output = Report {
        login_flags: None,
        ..output
    };
    if report.any_auth_failure() {
        say!(
            "hint: Resource Manager refused an import: the identity needs a role that allows \
             Microsoft.ContainerRegistry/registries/importImage/action on {} (Contributor, or a custom role)",
            registry.id.name
        );
    }
    let code = conclude(&report, run, output)?;
    Ok((code, report))
}

fn row(image: &PresetImage, status: Status) -> SyncImage {
    SyncImage::new(
        format!("{}:{}", image.source, image.source_tag),
        format!("{}:{}", image.target, image.target_tag),
        status,
    )
}

/// `--registry-resource-group`: the target by its name (the login
/// server's first label) in the subscription, checked to be the target.
async fn registry_by_group(
    args: &ServerSideArgs,
    flags: &PresetArgs,
    arm: &ArmClient,
    preset: &Preset,
) -> Result<Registry, Failure> {
    let Some(group) = &args.registry_resource_group else {
        return Err(Failure::usage(format!(
            "--server-side: which Azure registry is {}? Give --workspace and --resource-group \
             (the workspace's attached registry), or --registry-resource-group GROUP",
            preset.target.registry
        )));
    };
    let host = &preset.target.registry;
    let name = host.split('.').next().unwrap_or_default();
    let id = ResourceId::registry(&flags.workspace.subscription()?, group, name);
    id.check()
        .map_err(|e| Failure::usage(format!("--registry-resource-group: {e}")))?;
    let registry = arm.registry(&id).await.map_err(arm_failure)?;
    if !registry.login_server.eq_ignore_ascii_case(host) {
        return Err(Failure::usage(format!(
            "{}: its login server is {}, not the target {host}",
            id.describe("container registry"),
            registry.login_server
        )));
    }
    Ok(registry)
}
