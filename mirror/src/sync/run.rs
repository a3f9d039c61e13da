//! Runs a compared plan: copies what differs through the engine (one run
//! per platform filter), records each image's outcome, and builds the sync
//! report. One image's failure stops no other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use registry_client::{Digest, ErrorKind};
use serde::Serialize;

use super::plan::{Item, State};
use super::shard::Shard;
use crate::progress::Progress;
use crate::store::ImageRef;
use crate::transfer::{CopyJob, CopyOptions, Engine};

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Source and target digests were equal: nothing moved.
    Current,
    /// The target tag was created or moved.
    Copied,
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
    pub fn any_auth_failure(&self) -> bool {
        self.images
            .iter()
            .any(|i| i.error_kind == Some(ErrorKind::Auth))
    }
}

fn image(it: &Item, status: Status) -> SyncImage {
    SyncImage {
        source: it.source_label.clone(),
        target: it.target_label.clone(),
        status,
        source_digest: None,
        previous_target_digest: None,
        target_digest: None,
        digest_changed: None,
        blobs_copied: 0,
        blobs_present: 0,
        blobs_mounted: 0,
        bytes_copied: 0,
        bytes_missing: None,
        error: None,
        error_kind: None,
    }
}

/// Copy every item in state `Copy` (unless `dry_run`) and report on all.
pub async fn execute(
    items: Vec<Item>,
    options: CopyOptions,
    progress: Arc<dyn Progress>,
    dry_run: bool,
    shard: Option<Shard>,
    started: Instant,
) -> SyncReport {
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

    if !dry_run {
        // One engine run per platform filter, since the filter is a run option.
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, it) in items.iter().enumerate() {
            if matches!(it.state, State::Copy { .. }) {
                let key: Vec<String> = it.platforms.iter().map(|p| p.to_string()).collect();
                groups.entry(key.join(",")).or_default().push(i);
            }
        }
        for idx in groups.into_values() {
            let mut jobs = Vec::new();
            for &i in &idx {
                let it = &items[i];
                let State::Copy { source_digest, .. } = &it.state else {
                    unreachable!("grouped items are to copy")
                };
                jobs.push(CopyJob {
                    source: it.source.clone().expect("a planned image has a source"),
                    // What was compared is what is copied, even if the
                    // source tag moves meanwhile.
                    source_ref: ImageRef::Digest(source_digest.clone()),
                    target: it.target.clone().expect("a real run opens every target"),
                    target_tag: Some(it.target_tag.clone()),
                    source_label: it.source_label.clone(),
                    target_label: it.target_label.clone(),
                });
            }
            let engine = Engine::new(
                CopyOptions {
                    platforms: items[idx[0]].platforms.clone(),
                    ..options.clone()
                },
                progress.clone(),
            );
            let run = engine.run(jobs).await;
            for (&i, r) in idx.iter().zip(run.images) {
                let img = &mut images[i];
                img.blobs_copied = r.blobs_copied;
                img.blobs_present = r.blobs_present;
                img.blobs_mounted = r.blobs_mounted;
                img.bytes_copied = r.bytes_copied;
                img.digest_changed = r.digest_changed;
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
    }

    let count = |s: Status| images.iter().filter(|i| i.status == s).count();
    SyncReport {
        dry_run,
        shard: shard.map(|s| s.to_string()),
        current: count(Status::Current),
        copied: count(Status::Copied),
        would_copy: count(Status::WouldCopy),
        failed: count(Status::Failed),
        bytes_copied: images.iter().map(|i| i.bytes_copied).sum(),
        bytes_missing: dry_run.then(|| images.iter().filter_map(|i| i.bytes_missing).sum()),
        seconds: started.elapsed().as_secs_f64(),
        images,
    }
}
