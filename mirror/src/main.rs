//! The `mirror` binary: parses arguments, runs the library, renders
//! progress and reports, and maps errors to the documented exit codes.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
