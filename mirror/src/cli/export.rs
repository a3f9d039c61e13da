//! `mirror export`: images into one bundle (an OCI archive or layout) to
//! carry across an air gap, from references, a sync config or the AzureML
//! preset; `--since` leaves out what an earlier bundle carried;
//! `--referrers` (or a config entry's `referrers:`) carries signatures,
//! SBOMs and attestations with their images; `--format docker` makes the
//! archive one `docker load` and `podman load` take too.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::error::{CommandResult, Failure};
use super::out::say;
use super::run::{exit_code, open_state, run_jobs, stores, EngineArgs};
use super::{exit, ProgressMode, RegistryArgs, StateArgs};
use mirror::azureml::images::{source_tag, RUNTIME_REPOSITORIES};
use mirror::azureml::preset::Location;
use mirror::endpoint::{split_file, Endpoint, FileKind};
use mirror::graph::Selection;
use mirror::plan::State;
use mirror::platform::PlatformFilter;
use mirror::sync::expand::expand;
use mirror::transfer::CopyOptions;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("azureml").multiple(true).args(["azureml_region", "workspace"])))]
pub struct ExportArgs {
    /// Images to export: `HOST/REPO:TAG` (or `oci:DIR:NAME`).
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    /// Read images from a file: one per line; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Export the images a sync config selects (its sources; its targets
    /// are ignored). Its registry settings and credentials are used, and
    /// each entry's platforms (--platform overrides them all).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Export the six AzureML runtime images of this region (`{region}-stable`).
    #[arg(long, value_name = "REGION")]
    azureml_region: Option<String>,
    /// With --azureml-region or --workspace: where the runtime images are
    /// read (default mcr.microsoft.com/azureml/runtime).
    #[arg(long, value_name = "HOST[/PREFIX]", requires = "azureml")]
    source: Option<String>,
    /// The AzureML runtime images of this workspace's region (with
    /// --resource-group; --azureml-region, given too, must agree).
    #[command(flatten)]
    workspace: super::azureml::workspace::WorkspaceArgs,
    /// The bundle: `oci-archive:PATH`, a plain PATH (an archive too) or
    /// `oci:DIR` (a layout directory).
    #[arg(long, value_name = "BUNDLE")]
    to: String,
    /// `oci`: an OCI archive or layout. `docker`: an OCI archive that
    /// `docker load` and `podman load` take too (a `manifest.json` beside
    /// `index.json`): one platform per image, so a multi-platform image
    /// needs --platform; every layer must be in it (no --since).
    #[arg(long, value_enum, default_value_t = BundleFormat::Oci)]
    format: BundleFormat,
    /// Leave out the blobs the receiver already holds: an earlier bundle
    /// (archive or layout), or the `BUNDLE.blobs` list export writes beside
    /// each archive. The new bundle's list holds the old list's blobs and
    /// all its images use, so it serves the next --since.
    #[arg(long, value_name = "OLD_BUNDLE_OR_LIST")]
    since: Option<PathBuf>,
    /// Keep only these platforms of a multi-platform index (repeatable);
    /// this writes a new index, so its digest changes.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<PlatformFilter>,
    #[command(flatten)]
    referrers: super::ReferrerArgs,
    #[command(flatten)]
    src_login: super::credentials::SrcLogin,
    #[command(flatten)]
    authfile: super::credentials::AuthFileArg,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// What the bundle is for: OCI readers, or `docker load` as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BundleFormat {
    Oci,
    Docker,
}

/// Refuse the options a `docker load` archive cannot be written with.
fn check_format(format: BundleFormat, kind: FileKind, since: bool) -> Result<(), String> {
    if format != BundleFormat::Docker {
        return Ok(());
    }
    if kind != FileKind::Archive {
        return Err(
            "--format docker writes an archive (docker load reads a tar); give --to oci-archive:PATH or PATH"
                .into(),
        );
    }
    if since {
        return Err(
            "--format docker needs every layer in the archive, and --since leaves some out; export a whole bundle"
                .into(),
        );
    }
    Ok(())
}

/// Where the bundle goes: an archive or a layout directory.
#[derive(Debug)]
struct BundleTarget {
    path: PathBuf,
    kind: FileKind,
}

/// `oci-archive:PATH`, `oci:DIR` or a plain path (an archive), without a
/// name: a bundle holds many images, each named after its source.
fn bundle_target(to: &str) -> Result<BundleTarget, String> {
    let (kind, path, name) = match split_file(to) {
        Some(file) => file.map_err(|e| format!("--to {to}: {e}"))?,
        None => (FileKind::Archive, to, None),
    };
    if name.is_some() {
        return Err(format!(
            "--to {to}: a bundle names each image after its source; give the path only"
        ));
    }
    Ok(BundleTarget {
        path: PathBuf::from(path),
        kind,
    })
}

/// `--azureml-region`, or the workspace's region (Resource Manager asked
/// through the run's proxy, with the Azure CLI's token unless
/// `--arm-token` says).
async fn azureml_region(args: &ExportArgs) -> Result<Option<String>, Failure> {
    let given = args
        .azureml_region
        .as_deref()
        .map(mirror::azureml::regions::check)
        .transpose()
        .map_err(Failure::usage)?;
    if args.workspace.workspace.is_none() {
        return Ok(given.map(str::to_string));
    }
    let proxy = args.registry.resolved_proxy().map_err(Failure::usage)?;
    let arm = args
        .workspace
        .arm(&super::azureml::workspace::EntraLogin::NONE, &proxy)?;
    args.workspace.region(&arm, given).await
}

/// The AzureML runtime images of `region` (checked, or as Resource
/// Manager named it) under `source` (`HOST[/PREFIX]`).
fn azureml_images(region: &str, source: Option<&str>) -> Result<Vec<String>, String> {
    let source = match source {
        Some(s) => Location::parse(s).map_err(|e| format!("--source {e}"))?,
        None => Location::mcr(),
    };
    RUNTIME_REPOSITORIES
        .iter()
        .map(|r| Ok(format!("{}:{}", source.repository(r)?, source_tag(region))))
        .collect()
}

/// The images from the arguments, the file and the preset, parsed.
fn listed_images(args: &ExportArgs, region: Option<&str>) -> Result<Vec<Endpoint>, String> {
    let mut words: Vec<(String, String)> = args
        .images
        .iter()
        .map(|w| (w.clone(), format!("argument {w:?}")))
        .collect();
    if let Some(path) = &args.from_file {
        for (at, line) in super::lines::read(path)? {
            words.push((line, at));
        }
    }
    if let Some(region) = region {
        for w in azureml_images(region, args.source.as_deref())? {
            words.push((w, "--azureml-region".into()));
        }
    }
    words
        .into_iter()
        .map(|(w, at)| Endpoint::parse(&w).map_err(|e| format!("{at}: {e}")))
        .collect()
}

pub async fn run(args: ExportArgs) -> CommandResult {
    let target = bundle_target(&args.to).map_err(Failure::usage)?;
    if args.since.is_some() && target.kind != FileKind::Archive {
        return Err(Failure::usage(
            "--since writes a delta archive; give --to oci-archive:PATH or PATH",
        ));
    }
    check_format(args.format, target.kind, args.since.is_some()).map_err(Failure::usage)?;
    let region = azureml_region(&args).await?;
    let listed = listed_images(&args, region.as_deref()).map_err(Failure::usage)?;
    // A config brings its own registry settings and credentials.
    let config = match &args.config {
        Some(path) => Some(mirror::sync::config::load(path).map_err(Failure::usage)?),
        None => None,
    };
    // Every registry export reads is a source: --src-* apply to them all.
    let logins = super::credentials::Logins::read(Some(&args.src_login), None, &args.authfile)?;
    let client = match &config {
        Some(c) => {
            let settings = c.client_settings();
            let credentials = logins.store_every_source(settings.explicit_credentials())?;
            settings.client_with(credentials)
        }
        None => {
            let credentials = logins.store_every_source(Default::default())?;
            args.registry.client_asking(args.engine.jobs, credentials)
        }
    }
    .map_err(Failure::usage)?;
    // --platform and --referrers apply to every image; else each config
    // entry's own (and the rest of what the entry selects).
    let selection_of = |entry: &Selection| Selection {
        platforms: if args.platforms.is_empty() {
            entry.platforms.clone()
        } else {
            args.platforms.clone()
        },
        include_foreign: false,
        no_match: config.as_ref().map(|c| c.no_match).unwrap_or_default(),
        referrers: args
            .referrers
            .selection()
            .or_else(|| entry.referrers.clone()),
        ..entry.clone()
    };
    let mut sources: Vec<(Endpoint, Selection)> = listed
        .into_iter()
        .map(|e| (e, selection_of(&Selection::default())))
        .collect();
    let mut planning_failed = false;
    if let Some(config) = &config {
        let stores = mirror::sync::expand::stores(client.clone(), config, false);
        let expansion = expand(config, &stores, None, args.engine.jobs as usize).await;
        for warning in &expansion.warnings {
            say!("warning: {warning}");
        }
        for item in expansion.jobs {
            if let State::Failed { error, .. } = &item.state {
                say!("error: {}: {error}", item.source_label);
                planning_failed = true;
                continue;
            }
            match Endpoint::parse(&item.source_label) {
                Ok(e) => sources.push((e, selection_of(&item.selection))),
                Err(e) => {
                    say!("error: {e}");
                    planning_failed = true;
                }
            }
        }
    }
    if sources.is_empty() {
        let message = "nothing to export: give images, --from-file, --config or --azureml-region";
        return Err(if planning_failed {
            Failure::failed(message)
        } else {
            Failure::usage(message)
        });
    }
    let state = open_state(&args.state)?;
    let mut stores = stores(client, &args.registry, &state);
    if args.format == BundleFormat::Docker {
        stores = stores.with_docker_archives();
    }
    let mut held_before = None;
    if let Some(since) = &args.since {
        let held = mirror::delta::load(since)
            .await
            .map_err(|e| Failure::usage(format!("--since {}: {e}", since.display())))?;
        stores = stores.with_leave_out(held.clone());
        held_before = Some(held);
    }
    let jobs = mirror::export::jobs(&stores, &sources, target.kind, &target.path)
        .map_err(Failure::usage)?;
    let options = CopyOptions {
        jobs: args.engine.jobs as usize,
        spools: Some(state.spools().clone()),
        ..CopyOptions::default()
    };
    let report = run_jobs(&jobs, options, &args.engine, &state).await?;
    let source_hosts = super::credentials::hosts(sources.iter().map(|(e, _)| e));
    logins.hint(&report, &source_hosts, &[]);
    let mut code = exit_code(&report);
    if report.succeeded > 0 {
        // What the receiver holds after importing (what it held before
        // included): next week's --since.
        for written in mirror::export::write_blob_lists(&stores, held_before.as_ref()).await {
            match written {
                Ok(list) => {
                    if args.engine.progress != ProgressMode::None {
                        say!("wrote {} (for the next export's --since)", list.display());
                    }
                }
                Err(e) => {
                    say!("error: {e}");
                    code = code.max(exit::FAILED);
                }
            }
        }
    }
    if planning_failed {
        code = code.max(exit::FAILED);
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_targets_and_azureml_sources() {
        assert_eq!(bundle_target("week1.tar").unwrap().kind, FileKind::Archive);
        assert_eq!(
            bundle_target("oci-archive:week1.tar").unwrap().kind,
            FileKind::Archive
        );
        assert_eq!(bundle_target("oci:dir").unwrap().kind, FileKind::Layout);
        assert!(bundle_target("oci-archive:b.tar:app:v1")
            .unwrap_err()
            .contains("path only"));
        let images = azureml_images("eastus", None).unwrap();
        assert_eq!(images.len(), 6);
        assert_eq!(
            images[0],
            "mcr.microsoft.com/azureml/runtime/boot/vm-bootstrapper/binimage/linux:eastus-stable"
        );
        let images = azureml_images("eastus", Some("127.0.0.1:5000")).unwrap();
        assert_eq!(
            images[2],
            "127.0.0.1:5000/cap/lifecycler/installed:eastus-stable"
        );
    }

    #[test]
    fn a_docker_archive_is_a_whole_archive() {
        let docker = BundleFormat::Docker;
        assert!(check_format(docker, FileKind::Archive, false).is_ok());
        assert!(check_format(BundleFormat::Oci, FileKind::Layout, true).is_ok());
        let err = check_format(docker, FileKind::Layout, false).unwrap_err();
        assert!(err.contains("writes an archive"), "{err}");
        let err = check_format(docker, FileKind::Archive, true).unwrap_err();
        assert!(err.contains("--since"), "{err}");
    }
}
