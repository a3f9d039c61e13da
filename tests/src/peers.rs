//! Runs the peer tools (skopeo, umoci) that check what mirror writes.

use std::path::Path;
use std::process::Command;

/// Run `program args…` and return its standard output; a failure panics
/// with the tool's own error message.
pub fn run_peer(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (./scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo inspect --raw`: a manifest's exact bytes (`docker://…` over plain HTTP, or `oci:…`).
pub fn skopeo_raw(reference: &str) -> Vec<u8> {
    run_peer(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", reference],
    )
}

/// `umoci ls --layout DIR`: the names in an OCI layout, one per line.
pub fn umoci_ls(dir: &Path) -> String {
    let dir = dir.to_str().expect("a UTF-8 path");
    String::from_utf8_lossy(&run_peer("umoci", &["ls", "--layout", dir])).into_owned()
}

/// `skopeo copy --preserve-digests FROM docker://…`: skopeo pushing what
/// mirror wrote into a plain-HTTP registry, exactly as it is.
pub fn skopeo_copy_to_registry(from: &str, to: &str) {
    run_peer(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            from,
            to,
        ],
    );
}

/// `skopeo copy docker://… TO`: skopeo writing, from a plain-HTTP
/// registry, what mirror then has to read.
pub fn skopeo_copy_from_registry(from: &str, to: &str) {
    run_peer(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            from,
            to,
        ],
    );
}

/// Whether a registry answers for this reference; asked through skopeo so
/// that no client state of the test's own takes part.
pub fn skopeo_exists(reference: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", reference])
        .output()
        .unwrap()
        .status
        .success()
}
