//! `mirror import BUNDLE --to HOST[/PREFIX]`: every image of a bundle back
//! into a registry under its original repository and tag, through the
//! copy engine (see `mirror::import`).

use clap::Args;
use registry_client::Repository;

use super::credentials::{AuthFileArg, DestLogin, Logins};
use super::error::{CommandResult, Failure};
use super::run::{exit_code, open_state, run_jobs, stores, EngineArgs};
use super::{RegistryArgs, StateArgs};
use mirror::azureml::images::under_prefix;
use mirror::bundle::Bundle;
use mirror::import;
use mirror::plan::Job;
use mirror::transfer::CopyOptions;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle: an archive (`oci-archive:PATH` or PATH) or a layout
    /// directory (`oci:DIR` or DIR).
    #[arg(value_name = "BUNDLE")]
    bundle: String,
    /// The registry, and a path prefix to put every repository under.
    #[arg(long, value_name = "HOST[/PREFIX]")]
    to: String,
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

/// `HOST[/PREFIX]` → the registry and the prefix.
fn split_target(to: &str) -> Result<(String, Option<String>), String> {
    let to = to.trim_end_matches('/');
    if to.contains("://") {
        return Err(format!("--to {to}: write the registry without a scheme"));
    }
    let (host, prefix) = match to.split_once('/') {
        Some((h, p)) => (h.to_string(), Some(p.to_string())),
        None => (to.to_string(), None),
    };
    // Checks the host (and the prefix) by building a repository of them.
    Repository::new(&host, &under_prefix(prefix.as_deref(), "x"))
        .map_err(|e| format!("--to {to}: {e}"))?;
    Ok((host, prefix))
}

pub async fn run(args: ImportArgs) -> CommandResult {
    let (host, prefix) = split_target(&args.to).map_err(Failure::usage)?;
    // A bundle refused when opened (missing, malformed, hostile) exits 2,
    // as it does for `mirror copy`.
    let bundle = Bundle::open(&args.bundle).await.map_err(Failure::usage)?;
    if bundle.names.is_empty() {
        return Err(Failure::failed(format!(
            "{}: names no image to import",
            args.bundle
        )));
    }
    let logins = Logins::read(None, Some(&args.dest_login), &args.authfile)?;
    let destinations = [host.clone()];
    let credentials = logins.store(&[], &destinations, Default::default())?;
    let client = args
        .registry
        .client_asking(args.engine.jobs, credentials)
        .map_err(Failure::usage)?;
    let state = open_state(&args.state)?;
    let stores = stores(client, &args.registry, &state);
    let jobs = import::jobs(&bundle, &host, prefix.as_deref(), &stores)
        .map_err(|e| Failure::failed(format!("{}: {e}", args.bundle)))?;
    if !bundle.omitted.is_empty() {
        if let Err(missing) = import::check_omitted(&bundle, &jobs).await {
            return Err(Failure::failed(format!(
                "{} is a delta bundle and the target lacks {} blob(s) it leaves out; nothing was imported (import the bundle it was made --since first, or export a whole bundle):\n  {}",
                args.bundle,
                missing.len(),
                missing.join("\n  ")
            )));
        }
    }
    let options = CopyOptions {
        jobs: args.engine.jobs as usize,
        spools: Some(state.spools().clone()),
        ..CopyOptions::default()
    };
    let jobs: Vec<Job> = jobs.into_iter().map(|(j, _)| j).collect();
    let report = run_jobs(&jobs, options, &args.engine, &state).await?;
    logins.hint(&report, &[], &destinations);
    Ok(exit_code(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_registry_and_prefix() {
        assert_eq!(
            split_target("acr.example/mirror/").unwrap(),
            ("acr.example".into(), Some("mirror".into()))
        );
        assert!(split_target("https://acr.example").is_err());
    }
}
