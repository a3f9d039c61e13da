//! Running planned jobs from the command line: the engine with progress,
//! Ctrl-C handling, the report and the exit code. Shared by `copy`,
//! `export` and `import`, so they behave alike.

use std::sync::Arc;

use clap::Args;

use super::error::Failure;
use super::render::Renderer;
use super::{exit, OutputFormat, ProgressMode, RegistryArgs};
use mirror::plan::{execute, Job, State, Stores};
use mirror::report::RunReport;
use mirror::state::StateDir;
use mirror::transfer::{CopyOptions, Engine};
use registry_client::Client;

/// How a command that runs the copy engine runs and shows itself; shared
/// by `copy`, `export` and `import`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Blob streams in flight at once, across all images (a blob of up to
    /// 1 MiB takes a quarter of one), with four times as many small
    /// requests (manifests, HEADs, mounts).
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// The report on standard output: a text summary or JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Run the jobs that need it and print the report of all; `Err` when the
/// run was interrupted.
pub async fn run_jobs(
    jobs: &[Job],
    options: CopyOptions,
    show: &EngineArgs,
    state: &StateDir,
) -> Result<RunReport, Failure> {
    let to_run = jobs
        .iter()
        .filter(|j| matches!(j.state, State::Copy { .. } | State::Pending))
        .count();
    let renderer = Arc::new(Renderer::new(show.progress, to_run));
    let engine = Engine::new(options, renderer.clone());
    let ticker = renderer.start_ticker();
    let report = tokio::select! {
        report = execute(jobs, &engine) => report,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run cancels every transfer: layout writes discard
            // their temporary files, upload sessions are never committed,
            // no tag has moved for an unfinished image, and partial
            // downloads record how far they got.
            ticker.abort();
            renderer.finish();
            return Err(Failure::interrupted(format!(
                "interrupted: stopped; nothing partial is visible at the targets; run the same command again to continue (state in {})",
                state.path().display()
            )));
        }
    };
    ticker.abort();
    renderer.finish();
    for w in report.images.iter().flat_map(|i| &i.warnings) {
        super::out::say!("warning: {w}");
    }
    super::out::report(show.output, &report, super::render::summary)?;
    Ok(report)
}

/// The exit code for a finished run.
pub fn exit_code(report: &RunReport) -> i32 {
    if report.failed == 0 {
        exit::OK
    } else if report.any_auth_failure() {
        exit::AUTH
    } else {
        exit::FAILED
    }
}

/// The store factory a copy-engine command writes through: registries
/// reached with `client`, the flags' upload settings, upload sessions kept
/// in the state directory so a rerun continues them.
pub fn stores(client: Client, registry: &RegistryArgs, state: &StateDir) -> Stores {
    Stores::new(client)
        .with_uploads(registry.uploads())
        .with_sessions(state.uploads().clone())
}

/// Open the state directory (shared with other runs).
pub fn open_state(args: &super::StateArgs) -> Result<StateDir, Failure> {
    Ok(args.open()?)
}
