//! `mirror azureml …`: the AzureML preset. `env` prints the job variables
//! that point the runtime at the customer's registry.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use registry_client::{Credential, Secret};

use super::exit;
use crate::azureml::variables::{Format, JobVariables};

#[derive(Debug, Subcommand)]
pub enum AzuremlCommand {
    /// Print AZUREML_COMPUTE_USE_COMMON_RUNTIME and
    /// AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE for a target registry.
    Env(EnvArgs),
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The customer's registry (`contoso.azurecr.io`).
    #[arg(long, value_name = "HOST")]
    target: String,
    /// The user the runtime pulls as (an ACR token or the admin user).
    #[arg(long, value_name = "NAME")]
    username: String,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "password_stdin")]
    password_env: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The images sit under this prefix in the target.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// The target keeps the regional tags (`{region}-stable`).
    #[arg(long)]
    regional_tags: bool,
    #[arg(long, value_enum, default_value_t = Format::Dotenv)]
    format: Format,
    /// Show the password on a terminal (it is masked there otherwise).
    #[arg(long)]
    show_secret: bool,
    /// Write to this file (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(command: AzuremlCommand) -> i32 {
    match command {
        AzuremlCommand::Env(args) => match env(args) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        },
    }
}

fn env(args: EnvArgs) -> Result<(), String> {
    let password = password(&args)?;
    let vars = JobVariables {
        registry: args.target.clone(),
        username: args.username.clone(),
        password,
        repo_prefix: args.prefix.clone(),
        regional_tag_prefix: args.regional_tags,
    };
    match &args.out {
        Some(path) => {
            let text = vars.render(args.format, true);
            write_private(path, &text).map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!("wrote the job variables to {} (mode 0600)", path.display());
        }
        None => {
            let reveal = args.show_secret || !std::io::stdout().is_terminal();
            let text = vars.render(args.format, reveal);
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| format!("writing the variables: {e}"))?;
            if !reveal {
                eprintln!(
                    "(the password is masked on a terminal; --show-secret or --out FILE writes it)"
                );
            }
        }
    }
    Ok(())
}

/// From an environment variable or standard input, never an argument
/// (arguments show in `ps` and shell history).
fn password(args: &EnvArgs) -> Result<Secret, String> {
    if args.password_stdin {
        return Credential::read_secret(std::io::stdin().lock()).map_err(|e| e.to_string());
    }
    let var = args.password_env.as_deref().ok_or(
        "give the password with --password-env VAR or --password-stdin (never on the command line)",
    )?;
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(format!("${var} is not set")),
    }
}

/// Create (or replace) a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode on open: narrow it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
