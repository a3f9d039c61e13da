//! `mirror sync CONFIG` (or `--from-skopeo FILE --target DEST`): keep the
//! config's images current, copying only what differs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::credentials::say_login_hints;
use super::error::{CommandResult, Failure};
pub use super::out::Stream;
use super::out::{self, say};
use super::render::{human_bytes, Renderer};
use super::{exit, OutputFormat, ProgressMode};
use mirror::progress::NoProgress;
use mirror::sync::lock::{default_lock_path, RunLock};
use mirror::sync::run::{sync, SyncOptions};
use mirror::sync::{self as engine, Shard, Status, SyncConfig, SyncReport};
use mirror::transfer::CopyOptions;
use registry_client::ErrorKind;

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The sync config (YAML); see examples/sync.yaml.
    #[arg(
        value_name = "CONFIG",
        required_unless_present = "from_skopeo",
        conflicts_with = "from_skopeo"
    )]
    config: Option<PathBuf>,
    /// Read a skopeo sync YAML file instead (images, images-by-tag-regex,
    /// images-by-semver, credentials, tls-verify, cert-dir); needs --target.
    #[arg(long, value_name = "FILE", requires = "target")]
    from_skopeo: Option<PathBuf>,
    /// With --from-skopeo: where images go, `HOST/PREFIX` or `oci:DIR`;
    /// like skopeo, each lands under the last part of its repository name.
    #[arg(long, value_name = "DEST")]
    target: Option<String>,
    /// Take only this worker's share of the images: I/N, 0 <= I < N.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// The lock that keeps two runs of this config apart (default: in
    /// $XDG_RUNTIME_DIR or the temporary directory, named after the config).
    #[arg(long, value_name = "PATH")]
    lock_file: Option<PathBuf>,
    /// An entry whose filters match no tag, or a single-platform image its
    /// `platforms:` do not name: `warn` (in the report and on standard
    /// error) or `error` (a failure, exit 1). Default: the config's
    /// `no_match:`, else `warn`.
    #[arg(long, value_enum)]
    no_match: Option<mirror::no_match::NoMatch>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    proxy: super::ProxyArgs,
    /// The report on standard output: a text summary or JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// How a sync runs and reports; shared with `mirror azureml sync`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print what would be copied and the blob bytes missing at the
    /// targets; copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the JSON report to this file too.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Keep partial downloads and open upload sessions here, so a rerun
    /// after a crash, kill or Ctrl-C continues them (as `mirror copy` does).
    /// Runs may share one: each partial download and upload session is
    /// locked on its own. Default: none, every run starts its blobs afresh.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// With --state-dir: blobs at least this large are kept there while
    /// they stream from a registry (default 64M).
    #[arg(long, value_name = "SIZE", value_parser = mirror::units::parse_size, requires = "state_dir")]
    pub spool_threshold: Option<u64>,
    /// Blob streams in flight at once (a blob of up to 1 MiB takes a
    /// quarter of one), with four times as many small requests (default:
    /// the config's `jobs`, else 8).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// The exit code for "everything succeeded and something was copied"
    /// (with --dry-run: would be). Default 0, as for any success (cron,
    /// CI and Kubernetes Jobs count anything else as a failure);
    /// `--changes-exit-code 5` tells a run that changed something apart.
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(i32).range(0..=255))]
    pub changes_exit_code: Option<i32>,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub authfile: super::credentials::AuthFileArg,
}

pub async fn run(args: SyncArgs, limits: &[String]) -> CommandResult {
    let (mut config, config_path) = load(&args).map_err(Failure::usage)?;
    if let Some(n) = args.no_match {
        config.no_match = n;
    }
    args.proxy.apply_to(&mut config);
    // The config's limits, then the command line's.
    mirror::limits::set(super::limits_with(config.limits, limits)?);
    let lock_path = args
        .lock_file
        .clone()
        .unwrap_or_else(|| default_lock_path(&config_path, args.target.as_deref(), args.shard));
    let (code, _report) = run_config(
        &config,
        &args.run,
        args.shard,
        &lock_path,
        Report {
            format: args.output,
            to: Stream::Stdout,
            // Success is 0 unless the caller asks to tell changes apart.
            changes_exit_code: args.run.changes_exit_code.unwrap_or(exit::OK),
            login_flags: Some(CONFIG_LOGIN),
        },
    )
    .await?;
    Ok(code)
}

/// How a run reports when it is done.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub format: OutputFormat,
    /// Standard error when standard output carries something else (the
    /// AzureML job variables).
    pub to: Stream,
    /// The exit code for "all succeeded, something changed".
    pub changes_exit_code: i32,
    /// How this command takes a login, for the hint after an auth failure;
    /// `None` when the refusals were not the registries' (Resource
    /// Manager's, for server-side imports: that run gives its own hint).
    pub login_flags: Option<&'static str>,
}

/// A sync config's way to give a registry its login.
pub const CONFIG_LOGIN: &str =
    "the registry's `credentials:` in the config (registries[].credentials), or --authfile PATH";

/// Runs a loaded config under its lock through the library's sync, with
/// progress and the report. Returns the exit code and the report.
pub async fn run_config(
    config: &SyncConfig,
    args: &RunArgs,
    shard: Option<Shard>,
    lock_path: &Path,
    output: Report,
) -> Result<(i32, SyncReport), Failure> {
    let _lock = RunLock::acquire(lock_path)?;
    // A dry run writes nothing, so it needs no state.
    let state = match (&args.state_dir, args.dry_run) {
        (Some(dir), false) => {
            let threshold = args
                .spool_threshold
                .unwrap_or(mirror::state::DEFAULT_SPOOL_THRESHOLD);
            Some(mirror::state::StateDir::open(dir, threshold)?)
        }
        _ => None,
    };
    let jobs = args
        .jobs
        .map(usize::from)
        .or(config.jobs)
        .unwrap_or(CopyOptions::default().jobs);
    let client = config
        .client_settings()
        .for_jobs(jobs)
        .client_with_auth_file(args.authfile.authfile.as_deref())
        .map_err(Failure::usage)?;
    let options = SyncOptions {
        jobs,
        dry_run: args.dry_run,
        shard,
        spools: state.as_ref().map(|s| s.spools().clone()),
        sessions: state.as_ref().map(|s| s.uploads().clone()),
    };
    let mode = if args.dry_run {
        ProgressMode::None
    } else {
        args.progress
    };
    let renderer = Arc::new(Renderer::new(mode, 0).announcing_plan());
    let ticker = renderer.start_ticker();
    let progress: Arc<dyn mirror::progress::Progress> = if args.dry_run {
        Arc::new(NoProgress)
    } else {
        renderer.clone()
    };
    let report = tokio::select! {
        r = sync(config, client, &options, progress) => r,
        _ = tokio::signal::ctrl_c() => {
            ticker.abort();
            renderer.finish();
            return Err(Failure::interrupted("interrupted: stopped; nothing partial is visible at the targets (run again to continue)"));
        }
    };
    ticker.abort();
    renderer.finish();
    let code = conclude(&report, args, output)?;
    Ok((code, report))
}

/// After a sync (streaming or server-side): the warnings and any login
/// hint on standard error, the `--report` file, the report, and the exit
/// code the report means.
pub fn conclude(report: &SyncReport, args: &RunArgs, output: Report) -> Result<i32, Failure> {
    // On standard error too: a scheduled job's log shows it whatever the
    // report's format and destination.
    for w in report
        .warnings
        .iter()
        .chain(report.images.iter().flat_map(|i| &i.warnings))
    {
        say!("warning: {w}");
    }

    if let (true, Some(flags)) = (report.any_auth_failure(), output.login_flags) {
        say_login_hints(
            report
                .images
                .iter()
                .filter(|i| i.error_kind == Some(ErrorKind::Auth))
                .filter_map(|i| i.error.as_deref()),
            &[(&registry_hosts(report), flags.to_string())],
        );
    }

    let mut code = match exit_code(report) {
        exit::CHANGED => output.changes_exit_code,
        c => c,
    };
    if let Some(path) = &args.report {
        if let Err(e) = write_report(path, report) {
            say!("error: writing the report {}: {e}", path.display());
            code = code.max(exit::FAILED);
        }
    }
    out::write(output.to, &out::render(output.format, report, summary)?)?;
    Ok(code)
}

fn load(args: &SyncArgs) -> Result<(SyncConfig, PathBuf), String> {
    match (&args.from_skopeo, &args.config) {
        (Some(file), _) => {
            let target = args.target.as_deref().unwrap_or_default();
            let c = engine::skopeo::load(file, target).map_err(|e| e.to_string())?;
            Ok((c, file.clone()))
        }
        (None, Some(file)) => {
            if args.target.is_some() {
                return Err("--target goes with --from-skopeo; a config names its targets".into());
            }
            let c = engine::config::load(file).map_err(|e| e.to_string())?;
            Ok((c, file.clone()))
        }
        (None, None) => Err("give a config file or --from-skopeo FILE".into()),
    }
}

/// Failures first (auth apart), then "changes made", then "all current".
/// The registry hosts of a report's images, sources and targets.
fn registry_hosts(report: &SyncReport) -> Vec<String> {
    let mut hosts: Vec<String> = report
        .images
        .iter()
        .flat_map(|i| [&i.source, &i.target])
        .filter_map(|r| r.split_once('/').map(|(host, _)| host.to_string()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn exit_code(report: &SyncReport) -> i32 {
    if report.failed > 0 {
        if report.any_auth_failure() {
            exit::AUTH
        } else {
            exit::FAILED
        }
    } else if report.copied > 0 || report.would_copy > 0 {
        exit::CHANGED
    } else {
        exit::OK
    }
}

/// Written whole under a temporary name, then renamed, so a reader never
/// sees half a report.
fn write_report(path: &Path, report: &SyncReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    // Whole or not at all, and never through a link planted beside it.
    mirror::state::write_atomic(path, &json)
}

/// The text report: one line per image, then totals.
fn summary(report: &SyncReport) -> String {
    let mut out = String::new();
    for i in &report.images {
        let digest = |d: &Option<registry_client::Digest>| {
            d.as_ref().map(|d| d.to_string()).unwrap_or_default()
        };
        match i.status {
            Status::Current => {
                out += &format!(
                    "current     {} → {} {}\n",
                    i.source,
                    i.target,
                    digest(&i.target_digest)
                )
            }
            Status::Copied => {
                out += &format!(
                    "copied      {} → {} {} (copied {}, present {}, mounted {}; {})\n",
                    i.source,
                    i.target,
                    digest(&i.target_digest),
                    i.blobs_copied,
                    i.blobs_present,
                    i.blobs_mounted,
                    human_bytes(i.bytes_copied)
                );
                if let Some(why) = &i.digest_changed {
                    out += &format!("            note: digest changed: {why}\n");
                }
            }
            Status::Imported => {
                out += &format!(
                    "imported    {} → {} {} (by the registry, server-side)\n",
                    i.source,
                    i.target,
                    digest(&i.target_digest)
                );
            }
            Status::WouldCopy => {
                out += &format!(
                    "would copy  {} → {} {} ({} missing at the target)\n",
                    i.source,
                    i.target,
                    digest(&i.source_digest),
                    human_bytes(i.bytes_missing.unwrap_or(0))
                )
            }
            Status::Failed => {
                out += &format!(
                    "FAILED      {} → {}: {}\n",
                    i.source,
                    i.target,
                    i.error.as_deref().unwrap_or("")
                )
            }
        }
    }
    let warnings = report.warnings.len()
        + report
            .images
            .iter()
            .map(|i| i.warnings.len())
            .sum::<usize>();
    let warned = match warnings {
        0 => String::new(),
        1 => ", 1 warning (on standard error)".into(),
        n => format!(", {n} warnings (on standard error)"),
    };
    if report.dry_run {
        out += &format!(
            "dry run: {} images: {} current, {} to copy ({} missing), {} failed{warned}\n",
            report.images.len(),
            report.current,
            report.would_copy,
            human_bytes(report.bytes_missing.unwrap_or(0)),
            report.failed
        );
    } else {
        let imported = report
            .images
            .iter()
            .filter(|i| i.status == Status::Imported)
            .count();
        let copied = match imported {
            0 => format!("{} copied", report.copied),
            n => format!("{} imported", n),
        };
        out += &format!(
            "{} images: {} current, {copied}, {} failed{warned}; {} moved in {:.1}s\n",
            report.images.len(),
            report.current,
            report.failed,
            human_bytes(report.bytes_copied),
            report.seconds
        );
    }
    out
}
