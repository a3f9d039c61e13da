//! The command line: parses arguments, builds a plan, runs it, renders
//! progress and the report. Thin by design; the work is in the library.

mod azureml;
mod completions;
mod copy;
mod credentials;
mod error;
pub mod exit;
mod export;
mod import;
mod lines;
mod out;
mod render;
mod run;
mod sync;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mirror::settings::{ClientSettings, RegistrySettings};
use registry_client::{Client, Credential, CredentialStore, HttpVersion};

/// Copy container images between registries and OCI layouts: concurrent,
/// verified, resumable.
#[derive(Debug, Parser)]
#[command(name = "mirror", version, about, long_about = None, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Raise a bound on what registries, bundles and config files may
    /// send (repeatable): `--limit image-blobs=200000`. Names: index-depth,
    /// image-manifests, image-blobs, blob-bytes, list-pages, list-entries,
    /// archive-entries, config-bytes (README, "Hostile input").
    #[arg(long = "limit", value_name = "NAME=VALUE", global = true)]
    limits: Vec<String>,
}

/// `base` with the `--limit` settings applied.
fn limits_with(
    base: mirror::limits::Limits,
    settings: &[String],
) -> Result<mirror::limits::Limits, error::Failure> {
    let mut limits = base;
    for s in settings {
        limits
            .apply(s)
            .map_err(|e| error::Failure::usage(format!("--limit {s}: {e}")))?;
    }
    Ok(limits)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy images: `mirror copy SRC DST [SRC DST ...]`.
    Copy(copy::CopyArgs),
    /// Keep images current from a config file: `mirror sync CONFIG`.
    Sync(sync::SyncArgs),
    /// Write images into one bundle to carry across an air gap:
    /// `mirror export IMAGE... --to BUNDLE`.
    Export(export::ExportArgs),
    /// Restore a bundle's images into a registry under their original
    /// repositories and tags: `mirror import BUNDLE --to HOST[/PREFIX]`.
    Import(import::ImportArgs),
    /// Check a bundle offline (every digest, size and reference) and print
    /// what it holds: `mirror verify BUNDLE`.
    Verify(verify::VerifyArgs),
    /// The AzureML preset: the common-runtime images and job variables.
    #[command(subcommand)]
    Azureml(Box<azureml::AzuremlCommand>),
    /// Print a shell completion script: `mirror completions bash`.
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one per subcommand:
    /// `mirror man --out DIR`.
    Man(completions::ManArgs),
}

/// How to reach registries; shared by every command that talks to one.
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// Reach this registry (host or host:port) over plain HTTP. Loopback
    /// registries use plain HTTP unless listed with --tls-registry.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// A loopback registry that speaks TLS.
    #[arg(long = "tls-registry", value_name = "HOST")]
    tls: Vec<String>,
    /// Trust this CA certificate (PEM) besides the system roots.
    #[arg(long = "ca-file", value_name = "PATH")]
    ca_files: Vec<PathBuf>,
    /// Upload blobs larger than this in chunks (e.g. 16M); default: one
    /// streamed PUT, except 16M for *.azurecr.io.
    #[arg(long, value_name = "SIZE", value_parser = mirror::units::parse_size)]
    chunk_threshold: Option<u64>,
    /// The size of each upload chunk (default 8M).
    #[arg(long, value_name = "SIZE", value_parser = mirror::units::parse_size)]
    chunk_size: Option<u64>,
    /// Requests in flight at once to one registry host, reads and writes
    /// each (default: 4 × --jobs). Halved when the host throttles (429, 503),
    /// grown back by one after a run of successes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_requests_per_host: Option<u16>,
    /// Give up on a response that sends nothing for this long (`30s`,
    /// `500ms`, `2m`; default 120s); a download that stalls continues from
    /// where it stopped.
    #[arg(long, value_name = "DURATION", value_parser = mirror::units::parse_duration)]
    read_timeout: Option<std::time::Duration>,
    /// `1.1` (default): HTTP/1.1, blobs over several connections, measured
    /// faster than HTTP/2 for blobs; `auto`: HTTP/2 where a TLS registry
    /// offers it.
    #[arg(long, value_name = "VERSION", default_value = "1.1", value_parser = clap::value_parser!(HttpVersion))]
    http: HttpVersion,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// Which proxy requests go through: `--proxy` and `--proxy-ca-file`, for
/// every command that reaches a registry (`mirror sync` too, where they
/// win over the config's `proxy:` and `proxy_ca_file:`).
#[derive(Debug, Args, Clone, Default)]
pub struct ProxyArgs {
    /// Send every request through this proxy,
    /// `http://[USER:PASSWORD@]HOST:PORT` (or `https://` for TLS to the
    /// proxy), except to the hosts in NO_PROXY; `none`: no proxy at all.
    /// Default: a sync config's `proxy:`, else HTTPS_PROXY, HTTP_PROXY and
    /// NO_PROXY, as curl reads them.
    #[arg(long, value_name = "URL", value_parser = ProxyArg)]
    pub proxy: Option<registry_client::Proxy>,
    /// Trust this CA certificate (PEM) for an `https://` proxy, from
    /// --proxy, a sync config or the environment (curl's --proxy-cacert);
    /// in `mirror sync`, in place of the config's `proxy_ca_file:`.
    #[arg(long = "proxy-ca-file", value_name = "PATH")]
    pub proxy_ca_files: Vec<PathBuf>,
}

impl ProxyArgs {
    /// The proxy: --proxy, else the environment's, trusting
    /// --proxy-ca-file (for requests the registry client does not make:
    /// Entra tokens, Resource Manager).
    pub fn resolved(&self) -> Result<registry_client::Proxy, registry_client::Error> {
        ClientSettings {
            proxy: self.proxy.clone(),
            proxy_ca_files: self.proxy_ca_files.clone(),
            ..ClientSettings::default()
        }
        .proxy()
    }

    /// The flags over a sync config's `proxy:` and `proxy_ca_file:`:
    /// each given flag replaces its key.
    pub fn apply_to(&self, config: &mut mirror::sync::SyncConfig) {
        if let Some(p) = &self.proxy {
            config.proxy = Some(p.clone());
        }
        if !self.proxy_ca_files.is_empty() {
            config.proxy_ca_files = self.proxy_ca_files.clone();
        }
    }
}

/// `--proxy`: a bad value is refused without echoing it (it may hold a
/// password; clap's own message would repeat it).
#[derive(Clone)]
struct ProxyArg;

impl clap::builder::TypedValueParser for ProxyArg {
    type Value = registry_client::Proxy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |m: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--proxy: {m}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("not UTF-8".into()))?;
        registry_client::Proxy::from_setting(text).map_err(|e| refuse(e.to_string()))
    }
}

/// Whether to copy each image's referrers (signatures, SBOMs,
/// attestations); shared by `copy` and `export`.
#[derive(Debug, Args, Clone)]
pub struct ReferrerArgs {
    /// Copy the referrers of every manifest copied (signatures, SBOMs,
    /// attestations: manifests whose `subject` it is), recursively.
    #[arg(long)]
    pub referrers: bool,
    /// With --referrers: only referrers of this artifact type (repeatable).
    #[arg(long = "referrers-type", value_name = "TYPE", requires = "referrers")]
    pub referrers_types: Vec<String>,
    /// Copy cosign's legacy tags of every manifest copied too
    /// (`sha256-<hex>.sig`, `.att`, `.sbom`: what cosign writes to a
    /// registry without the referrers API).
    #[arg(long)]
    pub cosign_tags: bool,
}

impl ReferrerArgs {
    /// As a selection takes it.
    pub fn selection(&self) -> Option<Vec<String>> {
        self.referrers.then(|| self.referrers_types.clone())
    }
}

/// Where a run keeps what lets the next one continue it.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// Keep partial downloads and open upload sessions here, so a rerun
    /// after a crash, kill or Ctrl-C continues them. Runs may share one.
    /// Default: $XDG_STATE_HOME/mirror or ~/.local/state/mirror.
    #[arg(long, value_name = "DIR", env = "MIRROR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Blobs at least this large are kept in the state directory while they
    /// stream from a registry (default 64M); smaller ones start over.
    #[arg(long, value_name = "SIZE", value_parser = mirror::units::parse_size)]
    spool_threshold: Option<u64>,
}

impl StateArgs {
    /// Open the state directory (shared with other runs).
    pub fn open(&self) -> Result<mirror::state::StateDir, mirror::state::StateError> {
        let path = self
            .state_dir
            .clone()
            .unwrap_or_else(mirror::state::StateDir::default_path);
        let threshold = self
            .spool_threshold
            .unwrap_or(mirror::state::DEFAULT_SPOOL_THRESHOLD);
        mirror::state::StateDir::open(&path, threshold)
    }
}

impl RegistryArgs {
    /// The upload settings given on the command line.
    pub fn uploads(&self) -> mirror::plan::UploadOverride {
        mirror::plan::UploadOverride {
            chunk_threshold: self.chunk_threshold,
            chunk_size: self.chunk_size.map(|n| n as usize),
        }
    }

    /// A client asking `credentials` for each registry (see
    /// `credentials::Logins`), allowing the request budget of `jobs` per
    /// host unless `--max-requests-per-host` says otherwise.
    pub fn client_asking(
        &self,
        jobs: u16,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Client, registry_client::Error> {
        self.settings()
            .for_jobs(usize::from(jobs))
            .client_with(credentials)
    }

    /// A client asking `credentials` for each registry.
    pub fn client_with(
        &self,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Client, registry_client::Error> {
        self.settings().client_with(credentials)
    }

    /// The flags as the one client builder takes them.
    pub fn settings(&self) -> ClientSettings {
        let mut settings = ClientSettings {
            registries: Vec::new(),
            max_requests_per_host: self.max_requests_per_host.map(usize::from),
            read_timeout: self.read_timeout,
            http: self.http,
            proxy: self.proxy.proxy.clone(),
            proxy_ca_files: self.proxy.proxy_ca_files.clone(),
        };
        for host in &self.insecure {
            settings.registry_mut(host).insecure = true;
        }
        for host in &self.tls {
            settings.registry_mut(host).tls = true;
        }
        if !self.ca_files.is_empty() {
            // CA files are trusted for every registry: keep them on one entry.
            settings.registry_mut("").ca_files = self.ca_files.clone();
        }
        settings
    }

    /// [`ProxyArgs::resolved`].
    pub fn resolved_proxy(&self) -> Result<registry_client::Proxy, registry_client::Error> {
        self.proxy.resolved()
    }

    /// These settings for one registry, as a sync config holds them.
    pub fn registry_settings(
        &self,
        host: &str,
        credential: Option<Credential>,
    ) -> RegistrySettings {
        RegistrySettings {
            host: host.to_string(),
            credential,
            ca_files: self.ca_files.clone(),
            insecure: self.insecure.iter().any(|h| h == host),
            tls: self.tls.iter().any(|h| h == host),
            chunk_threshold: self.chunk_threshold,
            chunk_size: self.chunk_size.map(|n| n as usize),
            max_requests_per_host: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    Bars,
    Plain,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Parse the arguments and run; returns the process exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    init_logging();
    match limits_with(mirror::limits::Limits::default(), &cli.limits) {
        Ok(limits) => mirror::limits::set(limits),
        Err(f) => return error::finish(Err(f)),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return error::finish(Err(error::Failure::usage(format!(
                "starting the async runtime: {e}"
            ))))
        }
    };
    error::finish(runtime.block_on(async {
        match cli.command {
            Command::Copy(args) => copy::run(args).await,
            Command::Sync(args) => sync::run(args, &cli.limits).await,
            Command::Export(args) => export::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Azureml(command) => azureml::run(*command).await,
            Command::Completions(args) => completions::completions(args),
            Command::Man(args) => completions::man(args),
        }
    }))
}

/// Logs go to stderr, quiet unless `MIRROR_LOG` asks (e.g. `MIRROR_LOG=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIRROR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only on a terminal: a log file or a CI log gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
