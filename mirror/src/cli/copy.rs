//! `mirror copy SRC DST [SRC DST ...]` and `--from-file`.

use std::path::PathBuf;

use clap::Args;

use super::run::{exit_code, run_jobs, Show};
use super::{exit, OutputFormat, ProgressMode, RegistryArgs, StateArgs};
use crate::endpoint::Endpoint;
use crate::plan::Planner;
use crate::platform::PlatformFilter;
use crate::transfer::CopyOptions;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Pairs of SOURCE and DESTINATION: `HOST/REPO[:TAG|@DIGEST]`,
    /// `oci:PATH[:NAME]` or `oci-archive:PATH[:NAME]`. A destination without
    /// a tag keeps the source's.
    #[arg(value_name = "SRC DST")]
    pairs: Vec<String>,
    /// Read pairs from a file: one `SRC DST` per line; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Requests and blob streams in flight at once, across all images.
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Keep only these platforms of a multi-platform index (repeatable);
    /// this writes a new index, so its digest changes.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<PlatformFilter>,
    /// Copy non-distributable (foreign) layers too.
    #[arg(long)]
    include_foreign: bool,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// The report on standard output: a text summary or JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    state: StateArgs,
}

pub async fn run(args: CopyArgs) -> i32 {
    let pairs = match read_pairs(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let client = match args.registry.client(args.jobs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    let state = match super::run::open_state(&args.state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut planner = Planner::new(client)
        .with_uploads(args.registry.uploads())
        .with_sessions(state.uploads().clone());
    let mut jobs = Vec::new();
    for (src, dst) in &pairs {
        match planner.copy(src, dst) {
            Ok(j) => jobs.push(j),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        }
    }
    let options = CopyOptions {
        jobs: args.jobs as usize,
        platforms: args.platforms.clone(),
        include_foreign: args.include_foreign,
        spools: Some(state.spools().clone()),
        ..CopyOptions::default()
    };
    let show = Show {
        progress: args.progress,
        output: args.output,
    };
    match run_jobs(jobs, options, &show, &state).await {
        Ok(report) => exit_code(&report),
        Err(code) => code,
    }
}

/// The pairs from the arguments and the file, each side parsed; errors name
/// the argument or the file and line.
fn read_pairs(args: &CopyArgs) -> Result<Vec<(Endpoint, Endpoint)>, String> {
    let mut words: Vec<(String, String)> = Vec::new();
    if !args.pairs.len().is_multiple_of(2) {
        return Err(format!(
            "copy takes SOURCE DESTINATION pairs; {:?} has no destination",
            args.pairs.last().map(String::as_str).unwrap_or_default()
        ));
    }
    for chunk in args.pairs.chunks(2) {
        words.push((chunk[0].clone(), chunk[1].clone()));
    }
    let mut out = Vec::new();
    for (s, d) in words {
        out.push((
            Endpoint::parse(&s).map_err(|e| e.to_string())?,
            Endpoint::parse(&d).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(path) = &args.from_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 2 {
                return Err(format!(
                    "{}: expected `SOURCE DESTINATION`, found {} fields",
                    at(),
                    fields.len()
                ));
            }
            let parse = |f: &str| Endpoint::parse(f).map_err(|e| format!("{}: {e}", at()));
            out.push((parse(fields[0])?, parse(fields[1])?));
        }
    }
    if out.is_empty() {
        return Err("nothing to copy: give SOURCE DESTINATION pairs or --from-file".into());
    }
    Ok(out)
}
