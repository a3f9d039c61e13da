//! Turns what the user asked for (pairs of endpoints) into copy jobs over
//! opened stores: which manifest to read, where to put it, which tag to set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registry_client::Client;

use crate::endpoint::Endpoint;
use crate::state::UploadJournal;
use crate::store::archive::{ArchiveReader, ArchiveWriter};
use crate::store::layout::LayoutStore;
use crate::store::registry::{RegistryStore, UploadPolicy};
use crate::store::{ImageRef, ImageStore, StoreError};
use crate::transfer::CopyJob;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{pair}: {reason}")]
    Pair { pair: String, reason: String },
    #[error("{pair}: {source}")]
    Store {
        pair: String,
        #[source]
        source: StoreError,
    },
}

/// Opens stores once each, so images bound for one layout share it.
pub struct Planner {
    client: Client,
    layouts: HashMap<PathBuf, Arc<LayoutStore>>,
    archives_in: HashMap<PathBuf, Arc<ArchiveReader>>,
    archives_out: HashMap<PathBuf, Arc<ArchiveWriter>>,
    uploads: UploadOverride,
    sessions: Option<UploadJournal>,
    /// Blobs archives written by this plan leave out (a delta's base).
    leave_out: Option<HashMap<registry_client::Digest, u64>>,
}

/// User settings that replace a registry's default upload policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadOverride {
    pub chunk_threshold: Option<u64>,
    pub chunk_size: Option<usize>,
}

impl UploadOverride {
    /// The policy for one registry: its default with these settings over it.
    pub fn apply(&self, registry: &str) -> UploadPolicy {
        let default = UploadPolicy::for_registry(registry);
        UploadPolicy {
            chunk_threshold: self.chunk_threshold.unwrap_or(default.chunk_threshold),
            chunk_size: self.chunk_size.unwrap_or(default.chunk_size),
        }
    }
}

impl Planner {
    pub fn new(client: Client) -> Self {
        Planner {
            client,
            layouts: HashMap::new(),
            archives_in: HashMap::new(),
            archives_out: HashMap::new(),
            uploads: UploadOverride::default(),
            sessions: None,
            leave_out: None,
        }
    }

    /// Archives written by this plan leave out these blobs (delta bundles).
    pub fn with_leave_out(mut self, held: HashMap<registry_client::Digest, u64>) -> Self {
        self.leave_out = Some(held);
        self
    }

    /// The paths of the archives this plan writes.
    pub fn archive_paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.archives_out.keys()
    }

    /// Record registry upload sessions here, so a rerun continues them.
    pub fn with_sessions(mut self, sessions: UploadJournal) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub fn with_uploads(mut self, uploads: UploadOverride) -> Self {
        self.uploads = uploads;
        self
    }

    /// A copy job for one `source → target` pair.
    pub fn copy(&mut self, source: &Endpoint, target: &Endpoint) -> Result<CopyJob, PlanError> {
        let pair = format!("{source} → {target}");
        let (source_store, source_ref) = match source {
            Endpoint::Registry {
                repository,
                tag,
                digest,
            } => {
                let r = match (digest, tag) {
                    (Some(d), _) => ImageRef::Digest(d.clone()),
                    (None, Some(t)) => ImageRef::Tag(t.clone()),
                    (None, None) => ImageRef::Tag("latest".into()),
                };
                let store: Arc<dyn ImageStore> =
                    Arc::new(RegistryStore::new(self.client.clone(), repository.clone()));
                (store, r)
            }
            Endpoint::Layout { path, name } => {
                let store = self
                    .layout(path, false)
                    .map_err(|source| PlanError::Store {
                        pair: pair.clone(),
                        source,
                    })?;
                let r = name.clone().map_or(ImageRef::Only, ImageRef::Tag);
                (store as Arc<dyn ImageStore>, r)
            }
            Endpoint::Archive { path, name } => {
                if self.archives_out.contains_key(path) {
                    return Err(PlanError::Pair {
                        pair,
                        reason: "an archive cannot be read and written in one run".into(),
                    });
                }
                let store = match self.archives_in.get(path) {
                    Some(s) => s.clone(),
                    None => {
                        let s = Arc::new(ArchiveReader::open(path).map_err(|source| {
                            PlanError::Store {
                                pair: pair.clone(),
                                source,
                            }
                        })?);
                        self.archives_in.insert(path.clone(), s.clone());
                        s
                    }
                };
                let r = name.clone().map_or(ImageRef::Only, ImageRef::Tag);
                (store as Arc<dyn ImageStore>, r)
            }
        };
        let (target_store, target_tag): (Arc<dyn ImageStore>, Option<String>) = match target {
            Endpoint::Registry {
                repository,
                tag,
                digest,
            } => {
                if digest.is_some() {
                    return Err(PlanError::Pair {
                        pair,
                        reason:
                            "a destination takes a tag, not a digest (the digest is the source's)"
                                .into(),
                    });
                }
                let tag = tag.clone().or_else(|| source.portable_tag());
                let by_digest = matches!(
                    source,
                    Endpoint::Registry {
                        digest: Some(_),
                        ..
                    }
                );
                if tag.is_none() && !by_digest {
                    return Err(PlanError::Pair {
                        pair,
                        reason: "the destination needs a tag: the source names none (give one as HOST/REPO:TAG)".into(),
                    });
                }
                let mut store = RegistryStore::new(self.client.clone(), repository.clone())
                    .with_upload_policy(self.uploads.apply(repository.registry()));
                if let Some(sessions) = &self.sessions {
                    store = store.with_sessions(sessions.clone());
                }
                (Arc::new(store), tag)
            }
            Endpoint::Layout { path, name } => {
                let name = name.clone().or_else(|| source.layout_name()).ok_or_else(|| PlanError::Pair {
                    pair: pair.clone(),
                    reason: "name the image in the layout (oci:PATH:NAME); the source has no tag to name it by".into(),
                })?;
                let store = self.layout(path, true).map_err(|source| PlanError::Store {
                    pair: pair.clone(),
                    source,
                })?;
                (store, Some(name))
            }
            Endpoint::Archive { path, name } => {
                let name = name.clone().or_else(|| source.layout_name()).ok_or_else(|| PlanError::Pair {
                    pair: pair.clone(),
                    reason: "name the image in the archive (oci-archive:PATH:NAME); the source has no tag to name it by".into(),
                })?;
                if self.archives_in.contains_key(path) {
                    return Err(PlanError::Pair {
                        pair,
                        reason: "an archive cannot be read and written in one run".into(),
                    });
                }
                let store = match self.archives_out.get(path) {
                    Some(s) => s.clone(),
                    None => {
                        let mut w =
                            ArchiveWriter::create(path).map_err(|source| PlanError::Store {
                                pair: pair.clone(),
                                source,
                            })?;
                        if let Some(held) = &self.leave_out {
                            w = w.leave_out(held.clone());
                        }
                        let s = Arc::new(w);
                        self.archives_out.insert(path.clone(), s.clone());
                        s
                    }
                };
                if let Some(reference) = source.full_reference() {
                    store.record_reference(&name, &reference);
                }
                (store as Arc<dyn ImageStore>, Some(name))
            }
        };
        Ok(CopyJob {
            source: source_store,
            source_ref,
            target: target_store,
            target_tag,
            source_label: source.to_string(),
            target_label: target.to_string(),
        })
    }

    fn layout(&mut self, path: &Path, create: bool) -> Result<Arc<LayoutStore>, StoreError> {
        if let Some(s) = self.layouts.get(path) {
            return Ok(s.clone());
        }
        let store = if create {
            LayoutStore::open_or_create(path)?
        } else {
            LayoutStore::open(path)?
        };
        let store = Arc::new(store);
        self.layouts.insert(path.to_path_buf(), store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner() -> Planner {
        Planner::new(Client::new(registry_client::ClientConfig::default()).unwrap())
    }

    #[test]
    fn pairs_into_one_archive_share_a_writer_and_reading_it_too_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("b.tar");
        let target = Endpoint::parse(&format!("oci-archive:{}", bundle.display())).unwrap();
        let mut p = planner();
        let a = p
            .copy(&Endpoint::parse("reg.example/a/b:v1").unwrap(), &target)
            .unwrap();
        let b = p
            .copy(&Endpoint::parse("reg.example/c:v2").unwrap(), &target)
            .unwrap();
        assert!(Arc::ptr_eq(&a.target, &b.target));
        assert_eq!(a.target_tag.as_deref(), Some("a/b:v1"));
        assert_eq!(
            a.target.describe(),
            format!("oci-archive:{}", bundle.display())
        );
        // A source by digest has no tag to name it by.
        let d = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let err = p
            .copy(
                &Endpoint::parse(&format!("reg.example/a@{d}")).unwrap(),
                &target,
            )
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("oci-archive:PATH:NAME"), "{err}");
        // The archive being written cannot be a source in the same run.
        let src = Endpoint::parse(&format!("oci-archive:{}:a/b:v1", bundle.display())).unwrap();
        let err = p
            .copy(&src, &Endpoint::parse("reg.example/x:v1").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("read and written"), "{err}");
        // Nothing is under the final name while planning.
        assert!(!bundle.exists());
    }

    #[test]
    fn a_missing_archive_source_is_named() {
        let mut p = planner();
        let err = p
            .copy(
                &Endpoint::parse("oci-archive:/nonexistent/b.tar").unwrap(),
                &Endpoint::parse("reg.example/x:v1").unwrap(),
            )
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/b.tar"), "{err}");
    }
}
