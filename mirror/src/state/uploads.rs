//! Open upload sessions, recorded after every chunk the registry confirms,
//! so a rerun continues an upload from the offset the server reports
//! instead of sending the whole blob again.

use std::path::PathBuf;

use registry_client::{Digest, Repository};

pub use crate::store::sessions::UploadRecord;
use crate::store::sessions::UploadSessions;

/// The `uploads/` part of the state directory: one small JSON file per
/// (repository, blob).
#[derive(Debug, Clone)]
pub struct UploadJournal {
    dir: PathBuf,
}

impl UploadJournal {
    pub fn new(dir: PathBuf) -> Self {
        UploadJournal { dir }
    }

    pub(crate) fn path(&self, repo: &Repository, digest: &Digest) -> PathBuf {
        let key = Digest::sha256_of(format!("{repo}@{digest}").as_bytes());
        self.dir.join(format!("{}.json", &key.hex()[..32]))
    }

    /// The session recorded for this blob in this repository, if any and
    /// readable. An unreadable record is removed: it cannot be trusted.
    pub fn load(&self, repo: &Repository, digest: &Digest) -> Option<UploadRecord> {
        let path = self.path(repo, digest);
        let bytes = super::read_record(&path)?;
        match serde_json::from_slice::<UploadRecord>(&bytes) {
            Ok(r) if r.repository == repo.to_string() && &r.digest == digest => Some(r),
            _ => {
                tracing::debug!(path = %path.display(), "discarding an unreadable upload record");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Record a session. Best effort: losing a record costs a re-upload,
    /// never correctness, so a failure to write is logged, not returned.
    pub fn save(&self, record: &UploadRecord) {
        let repo = match Repository::parse(&record.repository) {
            Ok(r) => r,
            Err(_) => return,
        };
        let path = self.path(&repo, &record.digest);
        let result = serde_json::to_vec(record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| super::write_atomic(&path, &bytes));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not record an upload session");
        }
    }

    pub fn remove(&self, repo: &Repository, digest: &Digest) {
        let _ = std::fs::remove_file(self.path(repo, digest));
    }

    /// How many sessions are recorded (for tests and reports).
    pub fn len(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UploadSessions for UploadJournal {
    fn load(&self, repo: &Repository, digest: &Digest) -> Option<UploadRecord> {
        UploadJournal::load(self, repo, digest)
    }
    fn save(&self, record: &UploadRecord) {
        UploadJournal::save(self, record)
    }
    fn remove(&self, repo: &Repository, digest: &Digest) {
        UploadJournal::remove(self, repo, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_keyed_by_repository_and_blob() {
        let dir = tempfile::tempdir().unwrap();
        let journal = UploadJournal::new(dir.path().to_path_buf());
        let repo = Repository::parse("127.0.0.1:5000/app").unwrap();
        let other = Repository::parse("127.0.0.1:5000/other").unwrap();
        let digest = Digest::sha256_of(b"x");
        let record = UploadRecord {
            repository: repo.to_string(),
            digest: digest.clone(),
            size: 1,
            location: "http://127.0.0.1:5000/v2/app/blobs/uploads/u?_state=s".into(),
            offset: 0,
        };
        journal.save(&record);
        assert_eq!(journal.load(&repo, &digest), Some(record));
        assert_eq!(journal.load(&other, &digest), None);
        journal.remove(&repo, &digest);
        assert!(journal.is_empty());
    }

    #[test]
    fn an_unreadable_record_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let journal = UploadJournal::new(dir.path().to_path_buf());
        let repo = Repository::parse("127.0.0.1:5000/app").unwrap();
        let digest = Digest::sha256_of(b"x");
        std::fs::write(journal.path(&repo, &digest), b"{not json").unwrap();
        assert_eq!(journal.load(&repo, &digest), None);
        assert!(journal.is_empty());
    }
}
