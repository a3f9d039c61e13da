//! Runs a sync: plans the config, compares, copies what differs through
//! one engine (whatever the entries' platforms), records each image's
//! outcome, and builds the sync report. One image's failure stops no other.

use std::sync::Arc;
use std::time::Instant;

use registry_client::{Client, Digest, ErrorKind};
use serde::Serialize;

use super::expand::expand;
use super::shard::Shard;
use super::SyncConfig;
use crate::plan::{compare, execute, Job, State};
use crate::progress::{Event, Progress};
use crate::report::RunReport;
use crate::state::{Spools, UploadJournal};
use crate::transfer::{CopyOptions, Engine};

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Source and target digests were equal: nothing moved.
    Current,
    /// The target tag was created or moved.
    Copied,
    /// The target registry imported it (`mirror azureml sync
    /// --server-side`): no bytes went through this machine.
    Imported,
    /// A dry run: it would be copied.
    WouldCopy,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncImage {
    pub source: String,
    pub target: String,
    pub status: Status,
    pub source_digest: Option<Digest>,
    /// What the target tag pointed at before this run.
    pub previous_target_digest: Option<Digest>,
    /// What it points at now (for a dry run: still the previous).
    pub target_digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_changed: Option<String>,
    /// What deserves a word though nothing failed (a platform filter the
    /// image does not match).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Referrers written with the image (with `referrers:`).
    #[serde(skip_serializing_if = "crate::report::is_zero")]
    pub referrers: usize,
    pub blobs_copied: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub bytes_copied: u64,
    /// Dry runs: blob bytes the target lacks (each blob counted once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_missing: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

/// A whole sync run: the `--report` file and `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Entries whose filters matched no tag (`no_match: warn`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub images: Vec<SyncImage>,
    pub current: usize,
    pub copied: usize,
    pub would_copy: usize,
    pub failed: usize,
    pub bytes_copied: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_missing: Option<u64>,
    pub seconds: f64,
}

impl SyncReport {
    /// The report of these images, counted (an import counts as a copy:
    /// the target changed).
    pub fn of(images: Vec<SyncImage>, dry_run: bool, seconds: f64) -> SyncReport {
        let count = |s: Status| images.iter().filter(|i| i.status == s).count();
        SyncReport {
            dry_run,
            shard: None,
            warnings: Vec::new(),
            current: count(Status::Current),
            copied: count(Status::Copied) + count(Status::Imported),
            would_copy: count(Status::WouldCopy),
            failed: count(Status::Failed),
            bytes_copied: images.iter().map(|i| i.bytes_copied).sum(),
            bytes_missing: dry_run.then(|| images.iter().filter_map(|i| i.bytes_missing).sum()),
            seconds,
            images,
        }
    }

    pub fn any_auth_failure(&self) -> bool {
        self.images
            .iter()
            .any(|i| i.error_kind == Some(ErrorKind::Auth))
    }
}

fn image(it: &Job, status: Status) -> SyncImage {
    SyncImage::new(it.source_label.clone(), it.target_label.clone(), status)
}

impl SyncImage {
    /// `source → target` with `status`, nothing else known yet.
    pub fn new(source: String, target: String, status: Status) -> SyncImage {
        SyncImage {
            source,
            target,
            status,
            source_digest: None,
            previous_target_digest: None,
            target_digest: None,
            digest_changed: None,
            warnings: Vec::new(),
            referrers: 0,
            blobs_copied: 0,
            blobs_present: 0,
            blobs_mounted: 0,
            bytes_copied: 0,
            bytes_missing: None,
            error: None,
            error_kind: None,
        }
    }
}

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Requests and blob streams in flight at once.
    pub jobs: usize,
    /// Compare and count what is missing; copy nothing.
    pub dry_run: bool,
    /// Only this worker's share of the images.
    pub shard: Option<Shard>,
    /// Where large downloads are kept so a rerun continues them.
    pub spools: Option<Spools>,
    /// Where upload sessions are recorded so a rerun continues them.
    pub sessions: Option<UploadJournal>,
}

/// Keep a config's images current: expand it into jobs, compare each with
/// two HEADs, copy what differs through one engine (unless a dry run) and
/// report on every image. Progress goes to `progress`, starting with
/// [`Event::Planned`] once the comparison is done.
pub async fn sync(
    config: &SyncConfig,
    client: Client,
    options: &SyncOptions,
    progress: Arc<dyn Progress>,
) -> SyncReport {
    let started = Instant::now();
    let mut stores = super::expand::stores(client, config, !options.dry_run);
    if let Some(s) = &options.sessions {
        stores = stores.with_sessions(s.clone());
    }
    let expansion = expand(config, &stores, options.shard, options.jobs).await;
    let mut items = expansion.jobs;
    compare(&mut items, options.jobs, options.dry_run).await;
    let count = |f: fn(&State) -> bool| items.iter().filter(|i| f(&i.state)).count();
    progress.event(Event::Planned {
        images: items.len(),
        current: count(|s| matches!(s, State::Current { .. })),
        to_copy: count(|s| matches!(s, State::Copy { .. })),
        failed: count(|s| matches!(s, State::Failed { .. })),
        seconds: started.elapsed().as_secs_f64(),
    });
    let engine = Engine::new(
        CopyOptions {
            jobs: options.jobs,
            spools: options.spools.clone(),
            ..CopyOptions::default()
        },
        progress,
    );
    let run = if options.dry_run {
        None
    } else {
        Some(execute(&items, &engine).await)
    };
    report(&items, expansion.warnings, run, options, started)
}

/// The sync report of a compared plan and, unless a dry run, its run.
fn report(
    items: &[Job],
    warnings: Vec<String>,
    run: Option<RunReport>,
    options: &SyncOptions,
    started: Instant,
) -> SyncReport {
    let dry_run = options.dry_run;
    let mut images: Vec<SyncImage> = items
        .iter()
        .map(|it| match &it.state {
            State::Pending => unreachable!("items are compared before they run"),
            State::Current { digest } => SyncImage {
                source_digest: Some(digest.clone()),
                previous_target_digest: Some(digest.clone()),
                target_digest: Some(digest.clone()),
                ..image(it, Status::Current)
            },
            State::Copy {
                source_digest,
                target_before,
                bytes_missing,
            } => SyncImage {
                source_digest: Some(source_digest.clone()),
                previous_target_digest: target_before.clone(),
                target_digest: target_before.clone(),
                bytes_missing: *bytes_missing,
                ..image(
                    it,
                    if dry_run {
                        Status::WouldCopy
                    } else {
                        Status::Copied
                    },
                )
            },
            State::Failed { error, kind } => SyncImage {
                error: Some(error.clone()),
                error_kind: Some(*kind),
                ..image(it, Status::Failed)
            },
        })
        .collect();
    if let Some(run) = run {
        for ((img, it), r) in images.iter_mut().zip(items).zip(run.images) {
            if !matches!(it.state, State::Copy { .. }) {
                continue;
            }
            img.blobs_copied = r.blobs_copied;
            img.blobs_present = r.blobs_present;
            img.blobs_mounted = r.blobs_mounted;
            img.bytes_copied = r.bytes_copied;
            img.digest_changed = r.digest_changed;
            img.warnings = r.warnings;
            img.referrers = r.referrers;
            match r.error {
                None => img.target_digest = r.target_digest,
                Some(e) => {
                    img.status = Status::Failed;
                    img.error = Some(e);
                    img.error_kind = r.error_kind;
                }
            }
        }
    }

    let mut report = SyncReport::of(images, dry_run, started.elapsed().as_secs_f64());
    report.shard = options.shard.map(|s| s.to_string());
    report.warnings = warnings;
    report
}
