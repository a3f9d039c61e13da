//! Which blobs this run has put where, so each unique blob crosses the wire
//! at most once: the first task that needs a blob in a blob domain moves it,
//! the others wait for it and then mount it (or find it already shared).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use registry_client::{Digest, Repository};
use tokio::sync::OnceCell;

use crate::report::BlobOutcome;

/// Where a blob was put: the repository (for a registry, to mount from),
/// or `None` in a store whose blobs are shared by every name (a layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHome {
    pub repository: Option<Repository>,
}

/// A blob placed in a domain: where, by which task, and how.
#[derive(Debug, Clone)]
pub struct Placed {
    pub home: BlobHome,
    /// The task that placed it (or found it there).
    pub mover: u64,
    pub outcome: BlobOutcome,
}

pub type Cell = Arc<OnceCell<Placed>>;

/// Done once a manifest is pushed to a target.
pub type ManifestCell = Arc<OnceCell<()>>;

#[derive(Debug, Default)]
pub struct Ledger {
    cells: Mutex<HashMap<(String, Digest), Cell>>,
    manifests: Mutex<HashMap<(String, Digest), ManifestCell>>,
    writes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Ledger {
    /// The single-flight cell for a blob in a blob domain. Initialising it
    /// is the transfer; a failed transfer leaves it empty so a later task
    /// tries again.
    pub fn cell(&self, domain: &str, digest: &Digest) -> Cell {
        self.cells
            .lock()
            .expect("ledger lock")
            .entry((domain.to_string(), digest.clone()))
            .or_default()
            .clone()
    }

    /// The single-flight cell for pushing a manifest to one target store:
    /// images sharing a child manifest push it once, never concurrently
    /// (distribution 2.8 rewrites a manifest file in place, so two identical
    /// PUTs at once can make a third request see it missing).
    pub fn manifest_cell(&self, target: &str, digest: &Digest) -> ManifestCell {
        self.manifests
            .lock()
            .expect("ledger lock")
            .entry((target.to_string(), digest.clone()))
            .or_default()
            .clone()
    }

    /// The lock that makes manifest writes (pushes and tags) to one target
    /// store happen one at a time.
    pub fn manifest_writes(&self, target: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.writes
            .lock()
            .expect("ledger lock")
            .entry(target.to_string())
            .or_default()
            .clone()
    }
}
