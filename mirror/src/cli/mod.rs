//! The command line: parses arguments, builds a plan, runs it, renders
//! progress and the report. Thin by design; the work is in the library.

mod copy;
pub mod exit;
mod render;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use registry_client::{Client, ClientConfig, DockerConfig};

/// Copy container images between registries and OCI layouts: concurrent,
/// verified, resumable.
#[derive(Debug, Parser)]
#[command(name = "mirror", version, about, long_about = None, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy images: `mirror copy SRC DST [SRC DST ...]`.
    Copy(copy::CopyArgs),
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
}

impl RegistryArgs {
    /// A client with docker's credentials (`DOCKER_CONFIG` or ~/.docker).
    pub fn client(&self) -> anyhow::Result<Client> {
        let credentials = DockerConfig::discover()?;
        Ok(Client::new(ClientConfig {
            insecure_registries: self.insecure.clone(),
            tls_registries: self.tls.clone(),
            ca_files: self.ca_files.clone(),
            credentials: Arc::new(credentials),
            ..ClientConfig::default()
        })?)
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return exit::USAGE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Copy(args) => copy::run(args).await,
        }
    })
}

/// Logs go to stderr, quiet unless `MIRROR_LOG` asks (e.g. `MIRROR_LOG=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIRROR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
