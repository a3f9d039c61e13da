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

/// Run `cmd` to its end and measure it; fails when it exits non-zero
/// (with its stderr). It runs under this binary's `measure` mode: a process
/// spawned from a large one inherits that one's peak RSS across `exec`, so
/// the measuring parent must be small and fresh.
pub fn run(cmd: &mut Command) -> anyhow::Result<Sample> {
    let mut wrapper = Command::new(std::env::current_exe()?);
    wrapper
        .arg("measure")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapper.env(k, v),
            None => wrapper.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapper.current_dir(dir);
    }
    let out = wrapper
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let n: Vec<u64> = text
        .split_whitespace()
        .map(|w| w.parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the measurement {text:?}"))?;
    anyhow::ensure!(n.len() == 3, "a measurement of three numbers, not {text:?}");
    Ok(Sample {
        wall: Duration::from_nanos(n[0]),
        cpu: Duration::from_nanos(n[1]),
        max_rss_kib: n[2],
        source_bytes: 0,
        requests: 0,
    })
}

/// The `measure` mode: run `argv`, then print its wall time and CPU time in
/// nanoseconds and its peak RSS in KiB. Its stderr passes through; its
/// stdout is discarded. Exits with the command's status.
pub fn measure_main(argv: &[String]) -> anyhow::Result<i32> {
    let (program, args) = argv.split_first().context("measure: no command")?;
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (std never waited).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    println!("{} {} {}", wall.as_nanos(), cpu.as_nanos(), usage.ru_maxrss);
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    })
}
