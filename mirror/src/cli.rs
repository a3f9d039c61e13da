//! The command line: parses arguments and runs a command. Thin by design.

use clap::Parser;

/// Copy container images between registries, OCI layouts and archives:
/// concurrent, verified, resumable.
#[derive(Debug, Parser)]
#[command(name = "mirror", version, about, long_about = None, arg_required_else_help = true)]
pub struct Cli {}

/// Parse the arguments and run; returns the process exit code.
pub fn run() -> i32 {
    match Cli::try_parse() {
        Ok(_) => 0,
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}
