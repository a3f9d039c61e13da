//! `mirror azureml sync`: the preset as a sync run (concurrent,
//! incremental: an unchanged image costs two HEAD requests, and a listing
//! of its referrers at each side where sync compares them), with each
//! image's referrers (signatures, SBOMs, attestations: one listing per
//! manifest at the source when an image is copied; `--no-referrers` turns
//! them off), then one pull tried with the job's credentials, then the job
//! variables on standard output (none when that pull is refused: exit 3);
//! progress and the summary go to standard error. With `--server-side`
//! the target registry imports the images instead (see `server_side`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::check::job_client;
use super::env::VariablesOut;
use super::login::{Logins, Resolved};
use super::server_side::{self, ServerSideArgs};
use super::PresetArgs;
use crate::cli::error::{CommandResult, Failure};
use crate::cli::out::{say, Stream};
use crate::cli::sync::{run_config, Report, RunArgs};

/// The preset's ways to give a login, for the hint after an auth failure.
const AZUREML_LOGIN: &str = "--username NAME with --password-env VAR (or --password-stdin) or --entra-token azure-cli|azure-sdk|env:VAR for your registry, --source-username/--source-entra-token for the source, or --authfile PATH";
use crate::cli::{exit, OutputFormat, RegistryArgs};
use mirror::azureml::check::{try_pull, Pull};
use mirror::azureml::preset::Preset;
use mirror::azureml::variables::JobVariables;
use mirror::sync::lock::default_lock_path;
use registry_client::{Credential, ErrorKind, Secret};

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
    #[command(flatten)]
    server_side: ServerSideArgs,
}

pub async fn run(args: SyncArgs) -> CommandResult {
    let proxy = args.registries.resolved_proxy().map_err(Failure::usage)?;
    let planned = args.preset.plan(&args.logins.entra(), &proxy).await?;
    let preset = planned.preset.clone();
    let Resolved {
        target: target_credential,
        source: source_credential,
        job,
    } = args.logins.resolve(&proxy).await?;
    let job = job.or_else(|| match &target_credential {
        Some(Credential::Basic { username, password }) => {
            say!(
                "note: the job variables carry the push credentials; give --pull-username for a pull-only token"
            );
            Some((username.clone(), password.clone()))
        }
        _ => None,
    });
    let lock_path = args.lock_file.clone().unwrap_or_else(|| {
        default_lock_path(
            Path::new("/mirror/azureml"),
            Some(&preset.target.to_string()),
            None,
        )
    });
    let output = Report {
        format: OutputFormat::Text,
        to: Stream::Stderr,
        changes_exit_code: args.run.changes_exit_code.unwrap_or(exit::OK),
        login_flags: Some(AZUREML_LOGIN),
    };

    let (code, report) = if args.server_side.server_side {
        let logins = server_side::Logins {
            target: target_credential,
            source: source_credential,
            proxy: &proxy,
            entra: args.logins.entra(),
        };
        server_side::run(
            &args.server_side,
            planned,
            &args.preset,
            logins,
            &args.registries,
            &args.run,
            &lock_path,
            output,
        )
        .await?
    } else {
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
        args.registries.proxy.apply_to(&mut config);

        say!(
            "mirroring {} runtime images{} for {}: {} → {} ({} → {})",
            config.entries.len(),
            if preset.referrers {
                " and their referrers"
            } else {
                ""
            },
            preset.region,
            preset.source,
            preset.target,
            mirror::azureml::images::source_tag(&preset.region),
            mirror::azureml::images::target_tag(&preset.region, preset.regional_tags),
        );
        run_config(&config, &args.run, None, &lock_path, output).await?
    };
    if report.failed > 0 {
        say!(
            "not printing the job variables: {} of {} images are not in place",
            report.failed,
            report.images.len()
        );
        return Ok(code);
    }

    let (username, password) = match job {
        Some((username, password)) if args.run.dry_run => {
            say!("dry run: the job's credentials were not tried");
            (username, password)
        }
        Some((username, password)) => {
            pull_as_the_job(&args.registries, &preset, &username, &password).await?;
            (username, password)
        }
        None => {
            say!(
                "warning: no pull credentials given: the job variables hold placeholders; \
                 give --pull-username NAME --pull-password-env VAR (an ACR token with pull scope)"
            );
            ("<username>".into(), Secret::new("<password>"))
        }
    };
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

/// Before printing variables the job will carry, the pull the runtime makes
/// first (the bootstrapper's image), tried as `azureml check` tries it, with
/// the job's credentials alone. Refused: an error naming the image, the
/// registry and the cause (exit 3), and no variables. Not askable (the
/// registry did not answer): a warning, and the variables untried.
async fn pull_as_the_job(
    registries: &RegistryArgs,
    preset: &Preset,
    username: &str,
    password: &Secret,
) -> Result<(), Failure> {
    let images = preset.images().map_err(Failure::usage)?;
    let Some(image) = images.first() else {
        return Ok(());
    };
    let target = image
        .target
        .tag(&image.target_tag)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let client = job_client(registries, preset, username.to_string(), password.clone())
        .map_err(|e| Failure::usage(e.to_string()))?;
    match try_pull(&client, &target).await {
        (Pull::Allowed, _) => {
            say!("the job's credentials ({username:?}) can pull {target}");
            Ok(())
        }
        (Pull::Denied, cause) => Err(Failure::of_kind(
            ErrorKind::Auth,
            format!(
                "the job cannot pull {target} from {}: {}; not printing the job variables \
                 (check the job's user {username:?} and its password; `mirror azureml check` \
                 tries every image)",
                preset.target.registry,
                cause.unwrap_or_default()
            ),
        )),
        (Pull::NotChecked, cause) => {
            say!(
                "warning: could not try a pull as the job ({}); the job variables are untried",
                cause.unwrap_or_default()
            );
            Ok(())
        }
    }
}
