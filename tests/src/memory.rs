//! The test process's own memory, for tests that check streaming keeps it
//! flat. Such a test lives in its own binary so that no other test's
//! allocations blur the reading.

/// A field of `/proc/self/status`, in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable {line:?}"))
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Peak resident memory since the last [`reset_peak`], in KiB.
pub fn peak_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Reset the peak to the current resident memory, so the next reading of
/// [`peak_kib`] covers only what follows.
pub fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
}

/// Another process's peak resident memory, in KiB: `None` once it has
/// exited (its `/proc` entry is gone), so a sampler keeps the last reading.
pub fn peak_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
