//! `mirror azureml check`: a table of the runtime images in the target —
//! present, current, with the source's signatures, pullable by the job —
//! and an exit code for scripts: 0 when every image is current with every
//! referrer the source has for it (unless `--no-referrers`) and pullable
//! (when that was checked), 1 otherwise, 3 when mirror's own credentials
//! were refused.

use std::sync::Arc;

use clap::Args;
use registry_client::{Client, Credential, Secret, StaticCredentials};

use super::login::{Logins, Resolved};
use super::PresetArgs;
use crate::cli::error::{CommandResult, Failure};
use crate::cli::out::{self, say};
use crate::cli::{exit, OutputFormat, RegistryArgs};
use mirror::azureml::check::{check, CheckRow, Pull, SignatureState, Signatures, Standing};
use mirror::azureml::preset::Preset;
use mirror::azureml::variables::{JobVariables, CONFIG_OVERRIDE};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    preset: PresetArgs,
    // The job's credentials are tried for pulls: --pull-username, else
    // those in $AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE when it is set.
    #[command(flatten)]
    logins: Logins,
    #[command(flatten)]
    registries: RegistryArgs,
    #[command(flatten)]
    authfile: crate::cli::credentials::AuthFileArg,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub async fn run(args: CheckArgs) -> CommandResult {
    let proxy = args.registries.resolved_proxy().map_err(Failure::usage)?;
    let preset = args.preset.plan(&args.logins.entra(), &proxy).await?.preset;
    let Resolved {
        target,
        source,
        job,
    } = args.logins.resolve(&proxy).await?;
    let job = match job {
        Some(j) => Some(j),
        None => job_from_environment(&preset).map_err(Failure::usage)?,
    };

    let client = super::preset_client(
        &args.registries,
        &preset,
        target,
        source,
        args.authfile.authfile.as_deref(),
    );
    let job_client =
        job.map(|(user, password)| job_client(&args.registries, &preset, user, password));
    let client = client.map_err(Failure::usage)?;
    let job_client = job_client.transpose().map_err(Failure::usage)?;
    let images = preset.images().map_err(Failure::usage)?;
    let rows = check(&images, &client, job_client.as_ref(), preset.referrers).await;
    let with_job = job_client.is_some();
    out::report(args.output, &rows, |rows| {
        table(rows, preset.referrers, with_job)
    })?;
    Ok(if rows.iter().all(CheckRow::ok) {
        exit::OK
    } else if rows.iter().any(|r| r.auth_failure) {
        exit::AUTH
    } else {
        exit::FAILED
    })
}

/// A client that knows only the job's credentials, for the target: it
/// asks as the training job will.
pub(super) fn job_client(
    registries: &RegistryArgs,
    preset: &Preset,
    user: String,
    password: Secret,
) -> Result<Client, registry_client::Error> {
    registries.client_with(Arc::new(
        StaticCredentials::new().with(&preset.target.registry, Credential::basic(user, password)),
    ))
}

/// The job's credentials from the override in the environment, checked
/// against where the images are.
fn job_from_environment(preset: &Preset) -> Result<Option<(String, Secret)>, String> {
    let Ok(json) = std::env::var(CONFIG_OVERRIDE) else {
        return Ok(None);
    };
    let vars = JobVariables::from_override(&json)?;
    let expected = (
        preset.target.registry.as_str(),
        preset.target.prefix.as_deref(),
        preset.regional_tags,
    );
    let found = (
        vars.registry.as_str(),
        vars.repo_prefix.as_deref(),
        vars.regional_tag_prefix,
    );
    if expected != found {
        return Err(format!(
            "${CONFIG_OVERRIDE} points the job at {} (prefix {:?}, regional tags {}), not at {} (prefix {:?}, regional tags {})",
            found.0, found.1.unwrap_or(""), found.2, expected.0, expected.1.unwrap_or(""), expected.2
        ));
    }
    say!("checking pulls with the credentials in ${CONFIG_OVERRIDE}");
    Ok(Some((vars.username, vars.password)))
}

fn table(rows: &[CheckRow], referrers: bool, pull_checked: bool) -> String {
    let width = rows.iter().map(|r| r.image.len()).max().unwrap_or(5).max(5);
    let mut out = format!(
        "{:<width$}  {:<13}  {:<13}  {:<11}  TARGET\n",
        "IMAGE", "STATE", "SIGNATURES", "JOB PULL"
    );
    for r in rows {
        let standing = match r.standing {
            Standing::Current => "current",
            Standing::Stale => "STALE",
            Standing::Missing => "MISSING",
            Standing::NotAtSource => "NOT AT SOURCE",
            Standing::Unknown => "UNKNOWN",
        };
        let pull = match r.pull {
            Pull::Allowed => "allowed",
            Pull::Denied => "DENIED",
            Pull::NotChecked => "-",
        };
        let signatures = signatures_cell(&r.signatures);
        out += &format!(
            "{:<width$}  {standing:<13}  {signatures:<13}  {pull:<11}  {}\n",
            r.image, r.target
        );
        for e in &r.errors {
            out += &format!("{:<width$}  {e}\n", "");
        }
    }
    out + &summary(rows, referrers, pull_checked) + "\n"
}

/// `2/2` (all at the target), `0/2 MISSING`, `-` (none at the source, or
/// not counted), `UNKNOWN`.
fn signatures_cell(s: &Signatures) -> String {
    let counted = || format!("{}/{}", s.at_target.unwrap_or(0), s.at_source.unwrap_or(0));
    match s.state {
        SignatureState::Complete => counted(),
        SignatureState::Missing => format!("{} MISSING", counted()),
        SignatureState::None | SignatureState::NotChecked => "-".into(),
        SignatureState::Unknown => "UNKNOWN".into(),
    }
}

/// The last line: each state counted under the name the table shows, and
/// as pullable only the images the job's credentials did pull.
fn summary(rows: &[CheckRow], referrers: bool, pull_checked: bool) -> String {
    let count = |s: Standing| rows.iter().filter(|r| r.standing == s).count();
    let mut out = format!(
        "{} images: {} current, {} stale, {} missing",
        rows.len(),
        count(Standing::Current),
        count(Standing::Stale),
        count(Standing::Missing)
    );
    for (state, name) in [
        (Standing::NotAtSource, "not at source"),
        (Standing::Unknown, "unknown"),
    ] {
        if count(state) > 0 {
            out += &format!(", {} {name}", count(state));
        }
    }
    out += &signatures_summary(rows, referrers);
    if !pull_checked {
        return out
            + "; job pulls not checked (give --pull-username or set $AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE)";
    }
    let pulls = |p: Pull| rows.iter().filter(|r| r.pull == p).count();
    out += &format!("; the job can pull {}", pulls(Pull::Allowed));
    let others: Vec<String> = [(Pull::Denied, "denied"), (Pull::NotChecked, "not tried")]
        .into_iter()
        .filter(|&(p, _)| pulls(p) > 0)
        .map(|(p, name)| format!("{} {name}", pulls(p)))
        .collect();
    if !others.is_empty() {
        out += &format!(" ({})", others.join(", "));
    }
    out
}

/// `; signatures: 5 complete, 1 missing` (then `N none at source` and
/// `N unknown` when there are some), or why they were not counted.
fn signatures_summary(rows: &[CheckRow], referrers: bool) -> String {
    if !referrers {
        return "; signatures not checked (--no-referrers)".into();
    }
    let count = |s: SignatureState| rows.iter().filter(|r| r.signatures.state == s).count();
    let mut out = format!(
        "; signatures: {} complete, {} missing",
        count(SignatureState::Complete),
        count(SignatureState::Missing)
    );
    for (state, name) in [
        (SignatureState::None, "none at source"),
        (SignatureState::Unknown, "unknown"),
    ] {
        if count(state) > 0 {
            out += &format!(", {} {name}", count(state));
        }
    }
    out
}
