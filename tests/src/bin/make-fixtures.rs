//! Writes the deterministic fixture images as an OCI image layout.
//!
//! ```text
//! cargo run -p mirror-tests --bin make-fixtures -- <out-dir>
//! cargo run --release -p mirror-tests --bin make-fixtures -- --scenario big <out-dir>
//! ```
//!
//! Without `--scenario` it writes the committed fixture set (six AzureML look-alikes,
//! `fixtures/azureml`), replacing any layout already in `<out-dir>`. With a benchmark
//! scenario (`azureml`, `big`, `many`, `update`) it streams that scenario's images into
//! `<out-dir>` (gigabytes; never commit them).

use mirror_tests::fixtures;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: make-fixtures [--scenario azureml|big|many|update] <out-dir>";

fn main() -> ExitCode {
    let mut scenario = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scenario" => scenario = args.next(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if out.is_none() && !arg.starts_with('-') => out = Some(PathBuf::from(arg)),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(out) = out else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let written = match scenario.as_deref() {
        None => fixtures::write_azureml_fixtures(&out),
        Some("azureml") => fixtures::write_layout_streaming(&out, &fixtures::azureml(), &[]),
        Some("big") => fixtures::write_layout_streaming(&out, &[], &[fixtures::big_index()]),
        Some("many") => fixtures::write_layout_streaming(&out, &fixtures::many(), &[]),
        Some("update") => fixtures::write_layout_streaming(&out, &[fixtures::update()], &[]),
        Some(other) => {
            eprintln!("unknown scenario {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match written {
        Ok(entries) => {
            for e in entries {
                println!("{}\t{}\t{}", e.name, e.digest, e.media_type);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-fixtures: writing {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
