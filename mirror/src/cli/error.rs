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

/// How to log in to `registry`, after it refused the login it was given
/// or asked for one when none was (`missing`): the login commands of the
/// tools whose auth files mirror reads (`az acr login` for Azure Container
/// Registry), then `flags`, the command's own way to give one. The one
/// wording of this hint, for every command.
pub fn login_hint(registry: &str, missing: bool, flags: &str) -> String {
    let what = if missing {
        "asks for a login and none was found for it"
    } else {
        "refused the login it was given"
    };
    let tools = match registry.strip_suffix(".azurecr.io") {
        Some(name) => format!("`az acr login -n {name}` (or `docker login {registry}`)"),
        None => format!("`docker login {registry}` or `podman login {registry}`"),
    };
    format!("hint: {registry} {what}: log in with {tools}, or give {flags}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_hint_names_the_tools_and_the_flags() {
        let h = login_hint("contoso.azurecr.io", false, "--dest-username NAME");
        assert!(
            h.contains("refused the login")
                && h.contains("`az acr login -n contoso`")
                && h.contains("--dest-username NAME"),
            "{h}"
        );
        let h = login_hint("127.0.0.1:5000", true, "--authfile PATH");
        assert!(
            h.contains("none was found")
                && h.contains("`docker login 127.0.0.1:5000` or `podman login 127.0.0.1:5000`"),
            "{h}"
        );
    }
}
