//! What a filter that matches nothing does: a sync entry whose tag filters
//! pick no tag, a `--platform` that a single-platform image is not. By
//! default a warning (in the report and on standard error) and the run goes
//! on; `error` makes it a failure, so a mistyped scheduled config cannot
//! stay green.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NoMatch {
    #[default]
    Warn,
    Error,
}

impl FromStr for NoMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warn" => Ok(NoMatch::Warn),
            "error" => Ok(NoMatch::Error),
            _ => Err(format!("no_match is `warn` or `error`, not {s:?}")),
        }
    }
}

impl fmt::Display for NoMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoMatch::Warn => "warn",
            NoMatch::Error => "error",
        })
    }
}
