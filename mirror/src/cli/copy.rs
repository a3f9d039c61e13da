//! `mirror copy SRC DST [SRC DST ...]` and `--from-file`.

use std::path::PathBuf;

use clap::Args;

use super::credentials::{hosts, AuthFileArg, DestLogin, Logins, SrcLogin};
use super::error::{CommandResult, Failure};
use super::run::{exit_code, open_state, run_jobs, stores, EngineArgs};
use super::{RegistryArgs, StateArgs};
use mirror::endpoint::Endpoint;
use mirror::graph::Selection;
use mirror::no_match::NoMatch;
use mirror::plan::compare;
use mirror::platform::PlatformFilter;
use mirror::transfer::CopyOptions;

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
    /// Keep only these platforms of a multi-platform index (repeatable);
    /// this writes a new index, so its digest changes.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<PlatformFilter>,
    /// A single-platform image that --platform does not name: `warn`
    /// (copy it as it is, and say so) or `error` (fail that image).
    #[arg(long, value_enum, default_value_t = NoMatch::Warn)]
    no_match: NoMatch,
    /// Copy non-distributable (foreign) layers too.
    #[arg(long)]
    include_foreign: bool,
    #[command(flatten)]
    referrers: super::ReferrerArgs,
    /// Walk every image and check each blob at the target even when the
    /// target tag already holds the source's digest (repairs a target
    /// whose blobs went missing). Without it an unchanged image costs two
    /// HEAD requests and moves nothing.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    src_login: SrcLogin,
    #[command(flatten)]
    dest_login: DestLogin,
    #[command(flatten)]
    authfile: AuthFileArg,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    state: StateArgs,
}

pub async fn run(args: CopyArgs) -> CommandResult {
    let pairs = read_pairs(&args).map_err(Failure::usage)?;
    let sources = hosts(pairs.iter().map(|(s, _)| s));
    let destinations = hosts(pairs.iter().map(|(_, d)| d));
    let logins = Logins::read(
        Some(&args.src_login),
        Some(&args.dest_login),
        &args.authfile,
    )?;
    let credentials = logins.store(&sources, &destinations, Default::default())?;
    let client = args
        .registry
        .client_asking(args.engine.jobs, credentials)
        .map_err(Failure::usage)?;
    let state = open_state(&args.state)?;
    let stores = stores(client, &args.registry, &state);
    let selection = Selection {
        platforms: args.platforms.clone(),
        include_foreign: args.include_foreign,
        no_match: args.no_match,
        referrers: args.referrers.selection(),
        cosign_tags: args.referrers.cosign_tags,
    };
    let mut jobs = Vec::new();
    for (src, dst) in &pairs {
        jobs.push(
            stores
                .job(src, dst, selection.clone())
                .map_err(Failure::usage)?,
        );
    }
    let jobs_n = args.engine.jobs as usize;
    if !args.force {
        // Sync's incremental check: two HEADs per image, nothing moved
        // for one the target already holds.
        compare(&mut jobs, jobs_n, false).await;
    }
    let options = CopyOptions {
        jobs: jobs_n,
        spools: Some(state.spools().clone()),
        ..CopyOptions::default()
    };
    let report = run_jobs(&jobs, options, &args.engine, &state).await?;
    logins.hint(&report, &sources, &destinations);
    Ok(exit_code(&report))
}

/// The pairs from the arguments and the file, each side parsed; errors name
/// the argument or the file and line.
fn read_pairs(args: &CopyArgs) -> Result<Vec<(Endpoint, Endpoint)>, String> {
    if !args.pairs.len().is_multiple_of(2) {
        return Err(format!(
            "copy takes SOURCE DESTINATION pairs; {:?} has no destination",
            args.pairs.last().map(String::as_str).unwrap_or_default()
        ));
    }
    let mut out = Vec::new();
    for chunk in args.pairs.chunks(2) {
        out.push((
            Endpoint::parse(&chunk[0]).map_err(|e| e.to_string())?,
            Endpoint::parse(&chunk[1]).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(path) = &args.from_file {
        for (at, line) in super::lines::read(path)? {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 2 {
                return Err(format!(
                    "{at}: expected `SOURCE DESTINATION`, found {} fields",
                    fields.len()
                ));
            }
            let parse = |f: &str| Endpoint::parse(f).map_err(|e| format!("{at}: {e}"));
            out.push((parse(fields[0])?, parse(fields[1])?));
        }
    }
    if out.is_empty() {
        return Err("nothing to copy: give SOURCE DESTINATION pairs or --from-file".into());
    }
    Ok(out)
}
