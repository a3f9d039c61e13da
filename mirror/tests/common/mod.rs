//! What the engine and planner tests share: jobs and engines over stores
//! held in memory.

#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;

use mirror::graph::Selection;
use mirror::platform::PlatformFilter;
use mirror::progress::NoProgress;
use mirror::store::{ImageRef, ImageStore};
use mirror::transfer::{CopyJob, CopyOptions, Engine};

/// An engine with `jobs` permits and no pause between blob retries worth
/// waiting for beyond the engine's own.
pub fn engine(options: CopyOptions) -> Engine {
    Engine::new(options, Arc::new(NoProgress))
}

pub fn options(jobs: usize) -> CopyOptions {
    CopyOptions {
        jobs,
        ..CopyOptions::default()
    }
}

/// Copy `source:tag` to `target:tag`.
pub fn job(source: &Arc<dyn ImageStore>, target: &Arc<dyn ImageStore>, tag: &str) -> CopyJob {
    CopyJob {
        source: source.clone(),
        source_ref: ImageRef::Tag(tag.to_string()),
        target: target.clone(),
        target_tag: Some(tag.to_string()),
        target_digest: None,
        selection: Selection::default(),
        source_label: format!("{}:{tag}", source.describe()),
        target_label: format!("{}:{tag}", target.describe()),
    }
}

/// The same job, taking only `platforms` (`os/arch`) and tagging `as_tag`.
pub fn for_platforms(mut job: CopyJob, platforms: &[&str], as_tag: &str) -> CopyJob {
    job.selection.platforms = platforms
        .iter()
        .map(|p| p.parse::<PlatformFilter>().expect("platform"))
        .collect();
    job.target_tag = Some(as_tag.to_string());
    job
}
