//! The peers' binaries: skopeo from Debian, crane and regsync built from
//! source by `../shared/peers/build.sh` (see its README). Each is looked up
//! on `PATH`, then in [`PEERS_BIN`]; a missing one is left out of the run
//! with a note, never a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `build.sh` installs crane and regsync by default.
pub const PEERS_BIN: &str = "/opt/peers/bin";

/// regsync's per-host limits, raised from its defaults (10 requests per
/// second, 3 at once) so they do not decide the result, and how many
/// repositories it syncs at once. Named in the table's header.
pub const REGSYNC_REQ_PER_SEC: u32 = 1000;
pub const REGSYNC_REQ_CONCURRENT: u32 = 8;
pub const REGSYNC_PARALLEL: u32 = 4;

/// `name` on `PATH`, else in [`PEERS_BIN`].
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from(PEERS_BIN)])
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first line a binary prints for `args` (its version), or "".
pub fn version(bin: &Path, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_binaries_on_the_path_and_not_missing_ones() {
        assert!(find("sh").is_some());
        assert!(find("no-such-peer-binary-here").is_none());
    }
}
