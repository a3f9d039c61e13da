//! Open upload sessions, recorded after every chunk the registry confirms,
//! so a rerun continues an upload from the offset the server reports
//! instead of sending the whole blob again.
//!
//! Runs share the journal; each session is owned by one run at a time,
//! the one holding its `<key>.lock`, from the moment it loads or records
//! the session until it forgets it (finished, or no longer trusted) or the
//! run ends. A run that finds a session owned by another uploads that blob
//! with a session of its own and records nothing for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use registry_client::{Digest, Repository};

use super::EntryLock;
pub use crate::store::sessions::UploadRecord;
use crate::store::sessions::UploadSessions;

/// The `uploads/` part of the state directory: one small JSON file per
/// (repository, blob).
#[derive(Debug, Clone)]
pub struct UploadJournal {
    dir: PathBuf,
    /// The sessions this run owns, by key, with their locks.
    held: Arc<Mutex<HashMap<String, EntryLock>>>,
}

impl UploadJournal {
    pub fn new(dir: PathBuf) -> Self {
        UploadJournal {
            dir,
            held: Arc::default(),
        }
    }

    fn key(repo: &Repository, digest: &Digest) -> String {
        let key = Digest::sha256_of(format!("{repo}@{digest}").as_bytes());
        key.hex()[..32].to_string()
    }

    pub(crate) fn path(&self, repo: &Repository, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", Self::key(repo, digest)))
    }

    /// Whether this run owns the session of this blob in this repository,
    /// taking it when no other run does.
    fn own(&self, repo: &Repository, digest: &Digest) -> bool {
        let key = Self::key(repo, digest);
        let mut held = self.held.lock().expect("held sessions");
        if held.contains_key(&key) {
            return true;
        }
        match EntryLock::try_acquire(&self.dir.join(format!("{key}.lock"))) {
            Ok(Some(lock)) => {
                held.insert(key, lock);
                true
            }
            Ok(None) => {
                tracing::info!(
                    %digest,
                    repository = %repo,
                    "the upload session of this blob is in use by another mirror run; uploading it without recording a session"
                );
                false
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "cannot lock an upload session record; uploading without recording one");
                false
            }
        }
    }

    /// The session recorded for this blob in this repository, if any,
    /// readable and not another run's. An unreadable record is removed: it
    /// cannot be trusted.
    pub fn load(&self, repo: &Repository, digest: &Digest) -> Option<UploadRecord> {
        if !self.own(repo, digest) {
            return None;
        }
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

    /// Record a session, unless another run owns this blob's. Best effort:
    /// losing a record costs a re-upload, never correctness, so a failure
    /// to write is logged, not returned.
    pub fn save(&self, record: &UploadRecord) {
        let repo = match Repository::parse(&record.repository) {
            Ok(r) => r,
            Err(_) => return,
        };
        if !self.own(&repo, &record.digest) {
            return;
        }
        let path = self.path(&repo, &record.digest);
        let result = serde_json::to_vec(record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| super::write_atomic(&path, &bytes));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not record an upload session");
        }
    }

    /// Forget a session this run owns (another run's is left alone), and
    /// give up owning it.
    pub fn remove(&self, repo: &Repository, digest: &Digest) {
        let key = Self::key(repo, digest);
        // The map stays locked until the lock file is gone, so no task of
        // this run meets the lock still held and takes it for another run's.
        let mut held = self.held.lock().expect("held sessions");
        let Some(lock) = held.remove(&key) else {
            return;
        };
        let _ = std::fs::remove_file(self.path(repo, digest));
        lock.remove();
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
    fn a_session_another_run_owns_is_neither_read_nor_written_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let first_run = UploadJournal::new(dir.path().to_path_buf());
        let second_run = UploadJournal::new(dir.path().to_path_buf());
        let repo = Repository::parse("127.0.0.1:5000/app").unwrap();
        let digest = Digest::sha256_of(b"x");
        let record = |location: &str| UploadRecord {
            repository: repo.to_string(),
            digest: digest.clone(),
            size: 1,
            location: location.into(),
            offset: 0,
        };
        first_run.save(&record("http://first"));
        assert_eq!(second_run.load(&repo, &digest), None);
        second_run.save(&record("http://second"));
        second_run.remove(&repo, &digest);
        assert_eq!(first_run.load(&repo, &digest), Some(record("http://first")));
        // The first run ends (or is killed) with the session kept: the next
        // run continues it.
        drop(first_run);
        assert_eq!(
            second_run.load(&repo, &digest),
            Some(record("http://first"))
        );
        second_run.remove(&repo, &digest);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing is left, the lock file included"
        );
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
