//! The contenders, each as a command that copies a scenario from the
//! source registry to the target: mirror, skopeo (per repository with
//! `sync`, or per tag with `copy`), crane (per repository), regsync (one
//! config of every repository), and the raw limit.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use crate::limit::Plan;
use crate::scenario::Image;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Copier {
    /// `mirror copy --from-file` over every tag.
    Mirror,
    /// `mirror sync` over a config naming every tag (HEAD-compares first).
    MirrorSync,
    /// `skopeo sync --all`, one call per repository.
    SkopeoSync,
    /// `skopeo copy --all`, one call per tag.
    SkopeoCopy,
    /// `crane copy --all-tags`, one call per repository.
    Crane,
    /// `regsync once` over one config of every repository, its per-host
    /// request limits raised (see `peers.rs`).
    Regsync,
    /// The raw limit (see `limit.rs`): six keep-alive streams, no verification.
    Limit,
}

impl Copier {
    pub fn name(self) -> &'static str {
        match self {
            Copier::Mirror => "mirror",
            Copier::MirrorSync => "mirror sync",
            Copier::SkopeoSync => "skopeo sync",
            Copier::SkopeoCopy => "skopeo copy",
            Copier::Crane => "crane",
            Copier::Regsync => "regsync",
            Copier::Limit => "limit",
        }
    }

    /// The peer binary this contender needs, if it is a peer.
    pub fn peer_binary(self) -> Option<&'static str> {
        match self {
            Copier::SkopeoSync | Copier::SkopeoCopy => Some("skopeo"),
            Copier::Crane => Some("crane"),
            Copier::Regsync => Some("regsync"),
            Copier::Mirror | Copier::MirrorSync | Copier::Limit => None,
        }
    }
}

/// A peer's binary, found as `peers.rs` says.
fn peer(name: &str) -> anyhow::Result<String> {
    let path = crate::peers::find(name).ok_or_else(|| {
        anyhow::anyhow!("{name} is not installed (see ../shared/peers/README.md)")
    })?;
    Ok(path.display().to_string())
}

/// A contender in the table: a copier, or mirror with other settings (a
/// variant, named by its label) measured alongside the defaults.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Contender {
    pub copier: Copier,
    /// Empty for the copier as it is.
    pub label: String,
    /// Extra arguments for mirror.
    pub args: Vec<String>,
    /// Another mirror binary (the code before a change) instead of the
    /// one measured.
    pub bin: Option<PathBuf>,
}

impl Contender {
    pub fn plain(copier: Copier) -> Self {
        Contender {
            copier,
            label: String::new(),
            args: Vec::new(),
            bin: None,
        }
    }

    /// `LABEL=ARGS`: `mirror copy` with ARGS (split at spaces) added.
    pub fn variant(spec: &str) -> Result<Self, String> {
        let (label, args) = spec
            .split_once('=')
            .ok_or(format!("{spec:?}: use LABEL=ARGS, e.g. 'jobs 4=--jobs 4'"))?;
        Ok(Contender {
            copier: Copier::Mirror,
            label: label.to_string(),
            args: args.split_whitespace().map(str::to_string).collect(),
            bin: None,
        })
    }

    /// `LABEL=PATH [ARGS]`: `mirror copy` of another build, with ARGS.
    pub fn build(spec: &str) -> Result<Self, String> {
        let mut c = Self::variant(spec)?;
        if c.args.is_empty() {
            return Err(format!(
                "{spec:?}: use LABEL=PATH [ARGS], e.g. 'main=/tmp/mirror-main'"
            ));
        }
        let bin = PathBuf::from(c.args.remove(0));
        if !bin.is_absolute() || !bin.is_file() {
            return Err(format!("{}: not an absolute path to a file", bin.display()));
        }
        c.bin = Some(bin);
        Ok(c)
    }

    pub fn name(&self) -> String {
        if self.label.is_empty() {
            self.copier.name().to_string()
        } else {
            format!("{} [{}]", self.copier.name(), self.label)
        }
    }
}

/// Everything a command needs to know about one run.
pub struct Job {
    pub source: String,
    pub target: String,
    pub images: Vec<Image>,
    /// The unchanged re-run: the limit is then two HEADs per tag.
    pub heads_only: bool,
    pub mirror_bin: PathBuf,
    /// Extra arguments for mirror's commands (settings under study, TLS).
    pub mirror_args: Vec<String>,
    pub work: PathBuf,
    /// Both registries speak TLS (the peers then skip verifying them).
    pub tls: bool,
}

impl Job {
    fn repositories(&self) -> Vec<&str> {
        let mut repos: Vec<&str> = self.images.iter().map(|i| i.repository.as_str()).collect();
        repos.sort();
        repos.dedup();
        repos
    }
}

/// Streams of the raw limit.
pub const LIMIT_STREAMS: usize = 6;

impl Copier {
    pub fn command(self, job: &Job) -> anyhow::Result<Command> {
        Ok(match self {
            Copier::Mirror => {
                let mut pairs = String::new();
                for i in &job.images {
                    let _ = writeln!(
                        pairs,
                        "{src}/{r}:{t} {dst}/{r}:{t}",
                        src = job.source,
                        dst = job.target,
                        r = i.repository,
                        t = i.tag
                    );
                }
                let file = job.work.join("pairs.txt");
                std::fs::write(&file, pairs)?;
                let mut c = Command::new(&job.mirror_bin);
                c.args(["copy", "--progress", "none", "--from-file"])
                    .arg(&file)
                    .arg("--state-dir")
                    .arg(job.work.join("state"))
                    .args(&job.mirror_args);
                c
            }
            Copier::MirrorSync => {
                let mut tags: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
                for i in &job.images {
                    tags.entry(&i.repository).or_default().push(&i.tag);
                }
                let mut config = String::from("sync:\n");
                for (repo, tags) in tags {
                    let _ = writeln!(
                        config,
                        "  - source: {src}/{repo}\n    target: {dst}/{repo}\n    tags: [{tags}]",
                        src = job.source,
                        dst = job.target,
                        tags = tags.join(", ")
                    );
                }
                let file = job.work.join("sync.yaml");
                std::fs::write(&file, config)?;
                let mut c = Command::new(&job.mirror_bin);
                c.args(["sync", "--progress", "none", "--changes-exit-code", "0"])
                    .arg(&file);
                sync_settings(&mut c, &job.mirror_args, &file)?;
                c
            }
            Copier::SkopeoSync => {
                let skopeo = peer("skopeo")?;
                // skopeo sync puts SRC/a/b/c at DST/c: give it DST/a/b.
                shell(job.repositories().into_iter().map(|r| {
                    let parent = r.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    format!(
                        "{skopeo} sync --all --src docker --dest docker --src-tls-verify=false --dest-tls-verify=false {src}/{r} {dst}/{parent}",
                        src = job.source,
                        dst = job.target
                    )
                }))
            }
            Copier::SkopeoCopy => {
                let skopeo = peer("skopeo")?;
                shell(job.images.iter().map(|i| {
                    format!(
                        "{skopeo} copy --all --src-tls-verify=false --dest-tls-verify=false docker://{src}/{r}:{t} docker://{dst}/{r}:{t}",
                        src = job.source,
                        dst = job.target,
                        r = i.repository,
                        t = i.tag
                    )
                }))
            }
            Copier::Crane => {
                // --insecure: plain HTTP, or TLS without verifying.
                let crane = peer("crane")?;
                shell(job.repositories().into_iter().map(|r| {
                    format!(
                        "{crane} copy --insecure --all-tags {src}/{r} {dst}/{r}",
                        src = job.source,
                        dst = job.target
                    )
                }))
            }
            Copier::Regsync => {
                let file = job.work.join("regsync.yaml");
                std::fs::write(&file, regsync_config(job))?;
                let mut c = Command::new(peer("regsync")?);
                c.args(["once", "--verbosity", "warn", "--config"])
                    .arg(&file);
                c
            }
            Copier::Limit => {
                let plan = Plan {
                    source: job.source.clone(),
                    target: job.target.clone(),
                    streams: LIMIT_STREAMS,
                    mode: if job.heads_only { "heads" } else { "copy" }.into(),
                    images: job.images.clone(),
                };
                let file = job.work.join("limit-plan.json");
                std::fs::write(&file, serde_json::to_vec(&plan)?)?;
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("limit").arg(file);
                c
            }
        })
    }
}

/// One regsync config: both registries with their limits raised, every
/// repository as a `repository` sync (all its tags).
fn regsync_config(job: &Job) -> String {
    use crate::peers::{REGSYNC_PARALLEL, REGSYNC_REQ_CONCURRENT, REGSYNC_REQ_PER_SEC};
    let tls = if job.tls { "insecure" } else { "disabled" };
    let mut config = String::from("version: 1\ncreds:\n");
    for host in [&job.source, &job.target] {
        let _ = writeln!(
            config,
            "  - registry: '{host}'\n    tls: {tls}\n    reqPerSec: {REGSYNC_REQ_PER_SEC}\n    reqConcurrent: {REGSYNC_REQ_CONCURRENT}"
        );
    }
    let _ = writeln!(config, "defaults:\n  parallel: {REGSYNC_PARALLEL}\nsync:");
    for r in job.repositories() {
        let _ = writeln!(
            config,
            "  - source: '{src}/{r}'\n    target: '{dst}/{r}'\n    type: repository",
            src = job.source,
            dst = job.target
        );
    }
    config
}

/// `mirror sync` takes registry settings from its config, not flags: the
/// settings under study become config keys (`--jobs`), TLS registries a
/// `registries:` block; anything else is passed as a flag.
fn sync_settings(c: &mut Command, args: &[String], file: &std::path::Path) -> anyhow::Result<()> {
    let mut config = std::fs::read_to_string(file)?;
    let mut registries = String::new();
    let mut ca = None;
    for a in args {
        if let Some(path) = a.strip_prefix("--ca-file=") {
            ca = Some(path.to_string());
        } else if let Some(host) = a.strip_prefix("--tls-registry=") {
            registries += &format!("  - host: '{host}'\n    tls: {{ca_file: '{{CA}}'}}\n");
        } else if let Some(v) = a.strip_prefix("--http=") {
            config = format!("http: '{v}'\n{config}");
        } else if let Some(v) = a.strip_prefix("--max-requests-per-host=") {
            config = format!("max_requests_per_host: {v}\n{config}");
        } else {
            c.arg(a);
        }
    }
    if !registries.is_empty() {
        let ca = ca.ok_or_else(|| anyhow::anyhow!("TLS registries without --ca-file"))?;
        config = format!("registries:\n{}{config}", registries.replace("{CA}", &ca));
    }
    std::fs::write(file, config)?;
    Ok(())
}

/// One `sh -e` running these commands in turn (their CPU and peak RSS are
/// counted with the shell's, as its waited-for children).
fn shell(lines: impl Iterator<Item = String>) -> Command {
    let script: Vec<String> = lines.collect();
    let mut c = Command::new("sh");
    c.args(["-ec", &script.join("\n")]);
    c
}

/// `target/release/mirror`, built now (the benchmark measures the release
/// build whatever profile runs it).
pub fn build_mirror() -> anyhow::Result<PathBuf> {
    let root = mirror_tests::cli::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "mirror",
            "--bin",
            "mirror",
        ])
        .current_dir(&root)
        .status()?;
    anyhow::ensure!(status.success(), "building mirror failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/mirror"))
}
