//! Who mirror is at each registry, and who the training job will be.
//! Passwords come from an environment variable or standard input, never
//! from an argument (arguments show in `ps` and shell history); Entra
//! tokens from a variable, the Azure CLI or the Azure SDK's chain.

use clap::Args;
use registry_client::{Credential, Proxy, Secret};

use crate::cli::credentials::secret;
use crate::cli::error::Failure;
use mirror::azureml::entra::{TokenError, TokenSource};

/// A login that could not be prepared: a usage mistake, or a token that
/// could not be had (an authentication failure).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl From<String> for LoginError {
    fn from(s: String) -> Self {
        LoginError::Usage(s)
    }
}

impl From<LoginError> for Failure {
    /// A usage mistake exits 2; a token that could not be had, 3.
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Usage(m) => Failure::usage(m),
            e @ LoginError::Token(_) => Failure::of_kind(registry_client::ErrorKind::Auth, e),
        }
    }
}

/// Every login `sync` and `check` take.
#[derive(Debug, Args)]
pub struct Logins {
    #[command(flatten)]
    target: TargetLogin,
    #[command(flatten)]
    source: SourceLogin,
    #[command(flatten)]
    job: JobLogin,
}

/// The logins, read: `None` where none was given.
pub struct Resolved {
    pub target: Option<Credential>,
    pub source: Option<Credential>,
    pub job: Option<(String, Secret)>,
}

impl Logins {
    /// The target's Entra token source, which Resource Manager asks too
    /// (unless `--arm-token` says otherwise).
    pub fn entra(&self) -> super::workspace::EntraLogin<'_> {
        super::workspace::EntraLogin {
            source: self.target.entra_token.as_ref(),
            tenant: self.target.tenant.as_deref(),
        }
    }

    /// Read the secrets and fetch any Entra token, the Azure SDK's
    /// requests going through `proxy` as the registries' do.
    pub async fn resolve(&self, proxy: &Proxy) -> Result<Resolved, LoginError> {
        let job = self.job.credential()?;
        Ok(Resolved {
            target: self.target.credential(proxy).await?,
            source: self.source.credential(proxy).await?,
            job,
        })
    }
}

/// How mirror logs in to the customer's registry (default: docker's
/// config.json, e.g. after `az acr login`).
#[derive(Debug, Args)]
pub struct TargetLogin {
    /// Push as this user: the ACR admin user or a repository-scoped token
    /// (password from --password-env or --password-stdin).
    #[arg(long, value_name = "NAME", conflicts_with = "entra_token")]
    username: Option<String>,
    /// Read the target password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "username",
        conflicts_with = "password_stdin"
    )]
    password_env: Option<String>,
    /// Read the target password from the first line of standard input.
    #[arg(long, requires = "username", conflicts_with_all = ["source_password_stdin", "pull_password_stdin"])]
    password_stdin: bool,
    /// Log in with a Microsoft Entra token, exchanged for an ACR token:
    /// `env:VAR` (the token in $VAR), `azure-cli` (`az account
    /// get-access-token`) or `azure-sdk` (service principal from
    /// AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, workload
    /// identity, managed identity).
    #[arg(long, value_name = "FROM")]
    entra_token: Option<TokenSource>,
    /// The Entra tenant to exchange the token in.
    #[arg(long, value_name = "ID", requires = "entra_token")]
    tenant: Option<String>,
}

/// How mirror logs in to the source (default: anonymous for MCR, else
/// docker's config.json).
#[derive(Debug, Args)]
pub struct SourceLogin {
    /// Pull from the source as this user (the AzureML system registry's
    /// credentials from the workspace).
    #[arg(long, value_name = "NAME", conflicts_with = "source_entra_token")]
    source_username: Option<String>,
    /// Read the source password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "source_username",
        conflicts_with = "source_password_stdin"
    )]
    source_password_env: Option<String>,
    /// Read the source password from the first line of standard input.
    #[arg(
        long,
        requires = "source_username",
        conflicts_with = "pull_password_stdin"
    )]
    source_password_stdin: bool,
    /// Log in to the source with a Microsoft Entra token (as --entra-token).
    #[arg(long, value_name = "FROM")]
    source_entra_token: Option<TokenSource>,
    /// The Entra tenant to exchange the source token in.
    #[arg(long, value_name = "ID", requires = "source_entra_token")]
    source_tenant: Option<String>,
}

/// The credentials the training job pulls with: they go into the job
/// variables. Best an ACR token whose scope map allows only pull.
#[derive(Debug, Args)]
pub struct JobLogin {
    /// The user the training job pulls as (goes into the job variables).
    #[arg(long, value_name = "NAME")]
    pull_username: Option<String>,
    /// Read the job's password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "pull_username",
        conflicts_with = "pull_password_stdin"
    )]
    pull_password_env: Option<String>,
    /// Read the job's password from the first line of standard input.
    #[arg(long, requires = "pull_username")]
    pull_password_stdin: bool,
}

fn basic(
    username: &Option<String>,
    password: Option<Secret>,
    flags: &str,
) -> Result<Option<Credential>, String> {
    match (username, password) {
        (Some(u), Some(p)) => Ok(Some(Credential::basic(u, p))),
        (Some(_), None) => Err(format!(
            "give the password with {flags} (never on the command line)"
        )),
        (None, _) => Ok(None),
    }
}

impl TargetLogin {
    /// `None`: docker's config.json decides.
    pub async fn credential(&self, proxy: &Proxy) -> Result<Option<Credential>, LoginError> {
        if let Some(source) = &self.entra_token {
            return source
                .credential_via(self.tenant.as_deref(), proxy)
                .await
                .map(Some)
                .map_err(LoginError::from);
        }
        let password = secret(
            self.password_env.as_deref(),
            self.password_stdin,
            "--password-stdin",
        )?;
        Ok(basic(
            &self.username,
            password,
            "--password-env VAR or --password-stdin",
        )?)
    }
}

impl SourceLogin {
    pub async fn credential(&self, proxy: &Proxy) -> Result<Option<Credential>, LoginError> {
        if let Some(source) = &self.source_entra_token {
            return source
                .credential_via(self.source_tenant.as_deref(), proxy)
                .await
                .map(Some)
                .map_err(LoginError::from);
        }
        let password = secret(
            self.source_password_env.as_deref(),
            self.source_password_stdin,
            "--source-password-stdin",
        )?;
        Ok(basic(
            &self.source_username,
            password,
            "--source-password-env VAR or --source-password-stdin",
        )?)
    }
}

impl JobLogin {
    /// The job's user name and password, when given.
    pub fn credential(&self) -> Result<Option<(String, Secret)>, String> {
        let password = secret(
            self.pull_password_env.as_deref(),
            self.pull_password_stdin,
            "--pull-password-stdin",
        )?;
        match basic(
            &self.pull_username,
            password,
            "--pull-password-env VAR or --pull-password-stdin",
        )? {
            Some(Credential::Basic { username, password }) => Ok(Some((username, password))),
            _ => Ok(None),
        }
    }
}
