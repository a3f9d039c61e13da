//! `mirror azureml sync`: the preset as a sync run (concurrent,
//! incremental: an unchanged image costs two HEAD requests), then the job
//! variables on standard output; progress and the summary go to standard
//! error.

use std::path::{Path, PathBuf};

use clap::Args;

use super::env::VariablesOut;
use super::login::{Logins, Resolved};
use super::PresetArgs;
use crate::cli::error::{CommandResult, Failure};
use crate::cli::out::{say, Stream};
use crate::cli::sync::{run_config, Report, RunArgs};
use crate::cli::{exit, OutputFormat, RegistryArgs};
use mirror::azureml::variables::JobVariables;
use mirror::sync::lock::default_lock_path;
use registry_client::{Credential, Secret};

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    preset: PresetArgs,
    #[command(flatten)]
    logins: Logins,
    #[command(flatten)]
    registries: RegistryArgs,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    variables: VariablesOut,
    /// The lock that keeps two runs for one target apart (default: in
    /// $XDG_RUNTIME_DIR or the temporary directory, named after the target).
    #[arg(long, value_name = "PATH")]
    lock_file: Option<PathBuf>,
}

pub async fn run(args: SyncArgs) -> CommandResult {
    let preset = args.preset.preset().map_err(Failure::usage)?;
    let Resolved {
        target: target_credential,
        source: source_credential,
        job,
    } = args.logins.resolve().await?;
    let job = job.or_else(|| match &target_credential {
        Some(Credential::Basic { username, password }) => {
            say!(
                "note: the job variables carry the push credentials; give --pull-username for a pull-only token"
            );
            Some((username.clone(), password.clone()))
        }
        _ => None,
    });

    let mut registries = vec![args
        .registries
        .registry_settings(&preset.target.registry, target_credential)];
    if preset.source.registry != preset.target.registry {
        registries.push(
            args.registries
                .registry_settings(&preset.source.registry, source_credential),
        );
    }
    let mut config = preset
        .sync_config(registries, args.run.jobs.map(usize::from))
        .map_err(Failure::usage)?;
    config.max_requests_per_host = args.registries.max_requests_per_host.map(usize::from);
    config.read_timeout = args.registries.read_timeout;
    config.http = args.registries.http;

    say!(
        "mirroring {} runtime images for {}: {} → {} ({} → {})",
        config.entries.len(),
        preset.region,
        preset.source,
        preset.target,
        mirror::azureml::images::source_tag(&preset.region),
        mirror::azureml::images::target_tag(&preset.region, preset.regional_tags),
    );
    let lock_path = args.lock_file.clone().unwrap_or_else(|| {
        default_lock_path(
            Path::new("/mirror/azureml"),
            Some(&preset.target.to_string()),
            None,
        )
    });
    let (code, report) = run_config(
        &config,
        &args.run,
        None,
        &lock_path,
        Report {
            format: OutputFormat::Text,
            to: Stream::Stderr,
            changes_exit_code: args.run.changes_exit_code.unwrap_or(exit::OK),
        },
    )
    .await?;
    if report.failed > 0 {
        say!(
            "not printing the job variables: {} of {} images are not in place",
            report.failed,
            report.images.len()
        );
        return Ok(code);
    }

    let (username, password) = job.unwrap_or_else(|| {
        say!(
            "warning: no pull credentials given: the job variables hold placeholders; \
             give --pull-username NAME --pull-password-env VAR (an ACR token with pull scope)"
        );
        ("<username>".into(), Secret::new("<password>"))
    });
    let vars = JobVariables {
        registry: preset.target.registry.clone(),
        username,
        password,
        repo_prefix: preset.target.prefix.clone(),
        regional_tag_prefix: preset.regional_tags,
    };
    match args.variables.write(&vars) {
        Ok(()) => Ok(code),
        Err(e) => Err(Failure::failed(e)),
    }
}
