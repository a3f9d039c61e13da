//! Writing to the terminal without panicking. `print!` panics when standard
//! output is a closed pipe (`mirror copy … | head -1`) or a full device
//! (`> /dev/full`); a report that cannot be written is an error naming it,
//! and a message for standard error that cannot be written is dropped
//! (there is nowhere left to say so).

use std::io::{self, Write};

use serde::Serialize;

use super::error::Failure;
use super::OutputFormat;

/// Where a report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    /// Standard error, when standard output carries something else (the
    /// AzureML job variables).
    Stderr,
}

/// Write `text` whole to `stream`, flushed.
pub fn write(stream: Stream, text: &str) -> Result<(), Failure> {
    let result = match stream {
        Stream::Stdout => write_all(&mut io::stdout().lock(), text),
        Stream::Stderr => write_all(&mut io::stderr().lock(), text),
    };
    result.map_err(|e| {
        let name = match stream {
            Stream::Stdout => "standard output",
            Stream::Stderr => "standard error",
        };
        Failure::failed(format!("writing the report to {name}: {e}"))
    })
}

/// Write a report to standard output as JSON or as the text `summary` gives.
pub fn report<T: Serialize>(
    format: OutputFormat,
    value: &T,
    summary: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    write(Stream::Stdout, &render(format, value, summary)?)
}

/// A report as JSON (pretty, with a final newline) or as its text summary.
pub fn render<T: Serialize>(
    format: OutputFormat,
    value: &T,
    summary: impl FnOnce(&T) -> String,
) -> Result<String, Failure> {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| Failure::failed(format!("rendering the report as JSON: {e}"))),
        OutputFormat::Text => Ok(summary(value)),
    }
}

fn write_all(to: &mut impl Write, text: &str) -> io::Result<()> {
    to.write_all(text.as_bytes())?;
    to.flush()
}

/// `eprintln!` that never panics: a message standard error cannot take is
/// dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}
pub(crate) use say;
