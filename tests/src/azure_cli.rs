//! A stand-in for the Azure CLI (`az`) on `PATH`: it logs its arguments,
//! one line per call, and prints an access token as `az account
//! get-access-token` does, whatever scope is asked for.

use std::path::{Path, PathBuf};

/// Writes `dir/az` printing `token`; returns the log its calls go to.
pub fn fake_az(dir: &Path, token: &str) -> PathBuf {
    let script = dir.join("az");
    let log = dir.join("az.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nprintf '{{\"accessToken\": \"{token}\", \"expires_on\": %s, \"tokenType\": \"Bearer\"}}' $(( $(date +%s) + 3600 ))\n",
            log.display()
        ),
    )
    .expect("writing the az stand-in");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("making the az stand-in executable");
    log
}

/// `PATH` with `dir` first, so `az` is the stand-in.
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
