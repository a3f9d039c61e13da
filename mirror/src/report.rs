//! What a run did, per image: the report printed as text or JSON.

use std::time::Duration;

use registry_client::{Digest, ErrorKind};
use serde::Serialize;

/// How a blob came to be at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobOutcome {
    /// Its bytes were read from the source and written to the target.
    Copied,
    /// The target already had it.
    Present,
    /// The target registry linked it from another of its repositories.
    Mounted,
}

/// One image's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageReport {
    pub source: String,
    pub source_digest: Option<Digest>,
    pub target: String,
    /// Absent for a failed image: nothing was tagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<Digest>,
    /// Why the target digest differs from the source's (a platform filter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest_changed: Option<String>,
    /// What deserves a word though nothing failed (a platform filter the
    /// image does not match).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Referrers (signatures, SBOMs, attestations, and their children)
    /// among the manifests written, with `--referrers`.
    #[serde(skip_serializing_if = "is_zero")]
    pub referrers: usize,
    /// The target already held the source's digest: nothing was read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub current: bool,
    pub blobs_copied: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    /// Blob bytes this image moved.
    pub bytes_copied: u64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

impl ImageReport {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    pub fn count(&mut self, outcome: BlobOutcome, bytes: u64) {
        match outcome {
            BlobOutcome::Copied => {
                self.blobs_copied += 1;
                self.bytes_copied += bytes;
            }
            BlobOutcome::Present => self.blobs_present += 1,
            BlobOutcome::Mounted => self.blobs_mounted += 1,
        }
    }
}

pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub images: Vec<ImageReport>,
    pub succeeded: usize,
    pub failed: usize,
    pub bytes_copied: u64,
    pub seconds: f64,
}

impl RunReport {
    pub fn new(images: Vec<ImageReport>, elapsed: Duration) -> Self {
        let failed = images.iter().filter(|i| !i.succeeded()).count();
        RunReport {
            succeeded: images.len() - failed,
            failed,
            bytes_copied: images.iter().map(|i| i.bytes_copied).sum(),
            seconds: elapsed.as_secs_f64(),
            images,
        }
    }

    pub fn any_auth_failure(&self) -> bool {
        self.images
            .iter()
            .any(|i| i.error_kind == Some(ErrorKind::Auth))
    }
}
