//! Running copy jobs from the command line: the engine with progress,
//! Ctrl-C handling, the report and the exit code. Shared by `copy`,
//! `export` and `import`, so they behave alike.

use std::sync::Arc;

use super::render::Renderer;
use super::{exit, OutputFormat, ProgressMode};
use crate::report::RunReport;
use crate::state::StateDir;
use crate::transfer::{CopyJob, CopyOptions, Engine};

/// How to show a run.
pub struct Show {
    pub progress: ProgressMode,
    pub output: OutputFormat,
}

/// Run `jobs` and print the report; returns the run's report, or `Err`
/// with the exit code when it was interrupted.
pub async fn run_jobs(
    jobs: Vec<CopyJob>,
    options: CopyOptions,
    show: &Show,
    state: &StateDir,
) -> Result<RunReport, i32> {
    let renderer = Arc::new(Renderer::new(show.progress, jobs.len()));
    let engine = Engine::new(options, renderer.clone());
    let ticker = renderer.start_ticker();
    let report = tokio::select! {
        report = engine.run(jobs) => report,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run cancels every transfer: layout writes discard
            // their temporary files, upload sessions are never committed,
            // no tag has moved for an unfinished image, and partial
            // downloads record how far they got.
            ticker.abort();
            renderer.finish();
            eprintln!(
                "interrupted: stopped; nothing partial is visible at the targets; run the same command again to continue (state in {})",
                state.path().display()
            );
            return Err(exit::INTERRUPTED);
        }
    };
    ticker.abort();
    renderer.finish();
    match show.output {
        OutputFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: writing the report: {e}"),
        },
        OutputFormat::Text => print!("{}", super::render::summary(&report)),
    }
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

/// Open and lock the state directory, or the exit code for why not.
pub fn open_state(args: &super::StateArgs) -> Result<StateDir, i32> {
    match args.open() {
        Ok(s) => Ok(s),
        Err(e @ crate::state::StateError::Locked { .. }) => {
            eprintln!("error: {e}");
            Err(exit::LOCKED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::USAGE)
        }
    }
}
