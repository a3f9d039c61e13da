//! Upload sessions a registry store records so another try or run can
//! continue them. The store is handed a place to keep them (the state
//! directory's journal); it does not know where that is.

use std::fmt;

use registry_client::{Digest, Repository};
use serde::{Deserialize, Serialize};

/// One in-flight upload. The location is the registry's session URL (its
/// query carries the registry's signed upload state, not a credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repository: String,
    pub digest: Digest,
    pub size: u64,
    pub location: String,
    /// Bytes the registry had confirmed when this was written.
    pub offset: u64,
}

/// Where upload sessions are kept. Best effort: losing a record costs a
/// re-upload, never correctness.
pub trait UploadSessions: Send + Sync + fmt::Debug {
    /// The session recorded for this blob in this repository, if any.
    fn load(&self, repo: &Repository, digest: &Digest) -> Option<UploadRecord>;
    /// Record (or replace) a session.
    fn save(&self, record: &UploadRecord);
    /// Forget a session (finished, or no longer known to the registry).
    fn remove(&self, repo: &Repository, digest: &Digest);
}
