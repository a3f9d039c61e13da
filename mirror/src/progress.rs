//! Progress events. The engine emits them and never prints; the CLI decides
//! how to show them (bars on a terminal, plain lines in CI logs, nothing).

use registry_client::Digest;

use crate::report::{BlobOutcome, ImageReport};

#[derive(Debug, Clone)]
pub enum Event {
    /// A plan was compared: this many images, and what each needs.
    Planned {
        images: usize,
        current: usize,
        to_copy: usize,
        failed: usize,
        seconds: f64,
    },
    /// An image's copy began.
    ImageStarted {
        image: usize,
        source: String,
        target: String,
    },
    /// Its manifests are read: this many blobs and bytes are referenced.
    ImagePlanned {
        image: usize,
        blobs: usize,
        bytes: u64,
    },
    /// Bytes of a blob began to move.
    BlobStarted {
        image: usize,
        digest: Digest,
        size: u64,
    },
    /// More bytes of a blob moved.
    BlobProgress {
        image: usize,
        digest: Digest,
        bytes: u64,
    },
    /// A blob is at the target (moved, found, or mounted).
    BlobFinished {
        image: usize,
        digest: Digest,
        size: u64,
        outcome: BlobOutcome,
    },
    /// An image is done, successfully or not.
    ImageFinished {
        image: usize,
        report: Box<ImageReport>,
    },
}

/// Receives events. Called from many tasks at once; keep it quick.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event) {}
}
