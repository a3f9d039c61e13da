//! A private mount namespace (`unshare -rm`), where a test mounts a small
//! tmpfs that stands for a full disk without touching the machine's own.

/// Whether `unshare -rm` works here (containers often forbid it); if not,
/// says the test is skipped, so the caller can return.
pub async fn private_mounts_possible() -> bool {
    let probe = tokio::process::Command::new("unshare")
        .args(["-rm", "true"])
        .output()
        .await;
    let possible = probe.as_ref().is_ok_and(|o| o.status.success());
    if !possible {
        println!(
            "SKIPPED: unshare -rm is not possible here, so no private tmpfs can be mounted: {probe:?}"
        );
    }
    possible
}
