//! Runs a child process and measures it: wall time, the CPU seconds it and
//! its children spent (user + system), and its peak resident set.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One measured run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
    /// Peak resident set of the largest process, in KiB.
    pub max_rss_kib: u64,
    /// Blob bytes the source registry served.
    pub source_bytes: u64,
    /// Requests both registries answered.
    pub requests: u64,
}

/// Run `cmd` to its end; fails when it exits non-zero (with its stderr).
pub fn run(cmd: &mut Command) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut s);
        }
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (std never waited).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let err = reader.join().unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{cmd:?} failed (status {status}): {}", err.trim());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Sample {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        source_bytes: 0,
        requests: 0,
    })
}
