//! `mirror azureml env`: the job variables for a target registry, in the
//! form asked for; and how every azureml command writes them.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use super::workspace::EntraLogin;
use crate::cli::credentials::secret;
use crate::cli::error::Failure;
use crate::cli::out::say;
use mirror::azureml::variables::{Format, JobVariables};

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The customer's registry, optionally with the images' prefix:
    /// `contoso.azurecr.io` or `contoso.azurecr.io/azureml`; with
    /// --workspace, the registry attached to it.
    #[arg(
        long,
        value_name = "HOST[/PREFIX]",
        required_unless_present = "workspace"
    )]
    target: Option<String>,
    /// The user the runtime pulls as (an ACR token or the admin user).
    #[arg(long, value_name = "NAME")]
    username: String,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "password_stdin")]
    password_env: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The images sit under this prefix in the target (the same as
    /// --target HOST/PREFIX).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// The target keeps the regional tags (`{region}-stable`).
    #[arg(long)]
    regional_tags: bool,
    #[command(flatten)]
    out: VariablesOut,
    #[command(flatten)]
    workspace: super::workspace::WorkspaceArgs,
    #[command(flatten)]
    proxy: crate::cli::ProxyArgs,
}

/// Where and how the job variables are written.
#[derive(Debug, Args)]
pub struct VariablesOut {
    /// The form of the job variables.
    #[arg(long, value_enum, default_value_t = Format::Dotenv)]
    format: Format,
    /// Show the password on a terminal (it is masked there otherwise).
    #[arg(long)]
    show_secret: bool,
    /// Write the job variables to this file (mode 0600) instead of
    /// standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn env(args: EnvArgs) -> Result<(), Failure> {
    let password = secret(
        args.password_env.as_deref(),
        args.password_stdin,
        "--password-stdin",
    )
    .map_err(Failure::usage)?
    .ok_or_else(|| {
        Failure::usage(
            "give the password with --password-env VAR or --password-stdin (never on the command line)",
        )
    })?;
    let mut target = match &args.target {
        Some(t) => Some(super::target_location(t, args.prefix.as_deref()).map_err(Failure::usage)?),
        None => None,
    };
    if args.workspace.workspace.is_some() {
        let proxy = args.proxy.resolved().map_err(Failure::usage)?;
        let arm = args.workspace.arm(&EntraLogin::NONE, &proxy)?;
        let given = target.as_ref().map(|l| l.registry.as_str());
        if let Some(settled) = args.workspace.settle(&arm, None, given).await? {
            target = Some(super::settled_target(
                settled.target,
                target,
                args.prefix.as_deref(),
            ));
        }
    }
    let target = target
        .ok_or_else(|| Failure::usage("give --target, or --workspace and --resource-group"))?;
    let vars = JobVariables {
        registry: target.registry,
        username: args.username.clone(),
        password,
        repo_prefix: target.prefix,
        regional_tag_prefix: args.regional_tags,
    };
    args.out.write(&vars).map_err(Failure::usage)
}

impl VariablesOut {
    pub fn write(&self, vars: &JobVariables) -> Result<(), String> {
        match &self.out {
            Some(path) => {
                let text = vars.render(self.format, true);
                write_private(path, &text)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                say!("wrote the job variables to {} (mode 0600)", path.display());
            }
            None => {
                let reveal = self.show_secret || !std::io::stdout().is_terminal();
                let text = vars.render(self.format, reveal);
                std::io::stdout()
                    .write_all(text.as_bytes())
                    .map_err(|e| format!("writing the variables: {e}"))?;
                if !reveal {
                    say!(
                        "(the password is masked on a terminal; --show-secret or --out FILE writes it)"
                    );
                }
            }
        }
        Ok(())
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
