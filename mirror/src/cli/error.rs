//! The one error type at the command line's edge: what stopped a command
//! and the documented exit code that means. Commands return
//! `Result<i32, Failure>`: `Ok` with the code of a run that finished (its
//! report decides), `Err` for one that could not run; [`finish`] prints
//! the error once, with its whole cause chain, and gives the code.

use std::fmt;

use registry_client::ErrorKind;

use super::exit;
use super::out::say;

#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

pub type CommandResult = Result<i32, Failure>;

impl Failure {
    fn new(code: i32, message: impl fmt::Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
        }
    }

    /// Bad arguments, references or configuration: nothing was done.
    pub fn usage(message: impl fmt::Display) -> Self {
        Failure::new(exit::USAGE, message)
    }

    /// The work was tried and failed.
    pub fn failed(message: impl fmt::Display) -> Self {
        Failure::new(exit::FAILED, message)
    }

    /// Another run holds the lock.
    pub fn locked(message: impl fmt::Display) -> Self {
        Failure::new(exit::LOCKED, message)
    }

    /// Ctrl-C: stopped cleanly.
    pub fn interrupted(message: impl fmt::Display) -> Self {
        Failure::new(exit::INTERRUPTED, message)
    }

    /// The code an error of this kind means: refused credentials 3, bad
    /// input 2, anything else 1.
    pub fn of_kind(kind: ErrorKind, message: impl fmt::Display) -> Self {
        let code = match kind {
            ErrorKind::Auth => exit::AUTH,
            ErrorKind::InvalidInput => exit::USAGE,
            _ => exit::FAILED,
        };
        Failure::new(code, message)
    }

    /// An error from `anyhow`, with its whole cause chain, as a usage error.
    pub fn setup(e: anyhow::Error) -> Self {
        Failure::usage(format!("{e:#}"))
    }
}

impl From<mirror::state::StateError> for Failure {
    fn from(e: mirror::state::StateError) -> Self {
        match e {
            e @ mirror::state::StateError::Locked { .. } => Failure::locked(e),
            e => Failure::usage(e),
        }
    }
}

impl From<mirror::sync::lock::LockError> for Failure {
    fn from(e: mirror::sync::lock::LockError) -> Self {
        match e {
            e @ mirror::sync::lock::LockError::Held { .. } => Failure::locked(e),
            e => Failure::usage(e),
        }
    }
}

/// Print a command's failure (once) and give the process exit code.
pub fn finish(result: CommandResult) -> i32 {
    match result {
        Ok(code) => code,
        Err(f) => {
            if f.code == exit::INTERRUPTED {
                say!("{}", f.message);
            } else if !f.message.is_empty() {
                say!("error: {}", f.message);
            }
            f.code
        }
    }
}
