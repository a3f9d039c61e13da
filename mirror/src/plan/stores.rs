//! The one store factory: opens each store once, keyed by what it is (a
//! registry repository, a layout directory, an archive being read, an
//! archive being written), so every image bound for one layout or archive
//! shares it, and applies the registry upload policy.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use registry_client::{Client, Descriptor, Digest, Repository};

use crate::endpoint::{Endpoint, FileKind};
use crate::state::UploadJournal;
use crate::store::archive::{ArchiveReader, ArchiveWriter};
use crate::store::layout::LayoutStore;
use crate::store::registry::{RegistryStore, UploadPolicy};
use crate::store::{ImageRef, ImageSource, ImageTarget, StoreError};

/// User settings that replace a registry's default upload policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// A store opened from files, for reading: a layout or an archive, with
/// the names its index gives.
#[derive(Debug, Clone)]
pub enum FileSource {
    Layout(Arc<LayoutStore>),
    Archive(Arc<ArchiveReader>),
}

impl FileSource {
    /// Open a layout or archive for reading (an archive is indexed, and
    /// refused naming the entry when hostile or malformed).
    pub fn open(kind: FileKind, path: &Path) -> Result<FileSource, StoreError> {
        Ok(match kind {
            FileKind::Layout => FileSource::Layout(Arc::new(LayoutStore::open(path)?)),
            FileKind::Archive => FileSource::Archive(Arc::new(ArchiveReader::open(path)?)),
        })
    }

    /// The blobs it leaves out on purpose (a delta bundle's).
    pub fn omitted(&self) -> BTreeSet<Digest> {
        match self {
            FileSource::Layout(_) => BTreeSet::new(),
            FileSource::Archive(s) => s.omitted().clone(),
        }
    }

    pub fn store(&self) -> Arc<dyn ImageSource> {
        match self {
            FileSource::Layout(s) => s.clone(),
            FileSource::Archive(s) => s.clone(),
        }
    }

    /// Its named images (`org.opencontainers.image.ref.name`).
    pub async fn names(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        match self {
            FileSource::Layout(s) => s.names().await,
            FileSource::Archive(s) => Ok(s.names()),
        }
    }
}

#[derive(Default)]
struct Opened {
    layouts: HashMap<PathBuf, Arc<LayoutStore>>,
    archives_in: HashMap<PathBuf, Arc<ArchiveReader>>,
    archives_out: HashMap<PathBuf, Arc<ArchiveWriter>>,
}

pub struct Stores {
    client: Client,
    /// Per-registry upload settings (a sync config's), over `uploads`.
    registry_uploads: HashMap<String, UploadOverride>,
    uploads: UploadOverride,
    /// Where registry upload sessions are recorded for a rerun to continue.
    sessions: Option<UploadJournal>,
    /// Blobs archives written here leave out (a delta's base).
    leave_out: Option<HashMap<Digest, u64>>,
    /// Archives written here are for `docker load` too (`manifest.json`).
    docker_archives: bool,
    /// Create target layouts and archives (not in a dry run).
    create: bool,
    opened: Mutex<Opened>,
}

impl Stores {
    pub fn new(client: Client) -> Self {
        Stores {
            client,
            registry_uploads: HashMap::new(),
            uploads: UploadOverride::default(),
            sessions: None,
            leave_out: None,
            docker_archives: false,
            create: true,
            opened: Mutex::default(),
        }
    }

    /// Upload settings for every registry.
    pub fn with_uploads(mut self, uploads: UploadOverride) -> Self {
        self.uploads = uploads;
        self
    }

    /// Upload settings for one registry host.
    pub fn with_registry_uploads(mut self, host: &str, uploads: UploadOverride) -> Self {
        self.registry_uploads.insert(host.to_string(), uploads);
        self
    }

    /// Record registry upload sessions here, so a rerun continues them.
    pub fn with_sessions(mut self, sessions: UploadJournal) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Archives written here leave out these blobs (delta bundles).
    pub fn with_leave_out(mut self, held: HashMap<Digest, u64>) -> Self {
        self.leave_out = Some(held);
        self
    }

    /// Archives written here are ones `docker load` takes too.
    pub fn with_docker_archives(mut self) -> Self {
        self.docker_archives = true;
        self
    }

    /// Open nothing that does not exist yet (a dry run writes nothing).
    pub fn read_only(mut self) -> Self {
        self.create = false;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, Opened> {
        // Maps of opened stores stay whole if a holder panicked.
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The paths of the archives written through this factory.
    pub fn archive_paths(&self) -> Vec<PathBuf> {
        self.opened().archives_out.keys().cloned().collect()
    }

    pub fn registry(&self, repo: &Repository) -> Arc<RegistryStore> {
        let host = repo.registry();
        let policy = self
            .registry_uploads
            .get(host)
            .map(|o| UploadOverride {
                chunk_threshold: o.chunk_threshold.or(self.uploads.chunk_threshold),
                chunk_size: o.chunk_size.or(self.uploads.chunk_size),
            })
            .unwrap_or(self.uploads)
            .apply(host);
        let mut store =
            RegistryStore::new(self.client.clone(), repo.clone()).with_upload_policy(policy);
        if let Some(s) = &self.sessions {
            store = store.with_sessions(Arc::new(s.clone()));
        }
        Arc::new(store)
    }

    /// A layout or archive to read.
    pub fn file_source(&self, kind: FileKind, path: &Path) -> Result<FileSource, StoreError> {
        let mut opened = self.opened();
        if kind == FileKind::Archive && opened.archives_out.contains_key(path) {
            return Err(StoreError::invalid(
                path.display().to_string(),
                "an archive cannot be read and written in one run",
            ));
        }
        let cached = match kind {
            FileKind::Layout => opened.layouts.get(path).cloned().map(FileSource::Layout),
            FileKind::Archive => opened
                .archives_in
                .get(path)
                .cloned()
                .map(FileSource::Archive),
        };
        if let Some(s) = cached {
            return Ok(s);
        }
        let source = FileSource::open(kind, path)?;
        match &source {
            FileSource::Layout(s) => {
                opened.layouts.insert(path.to_path_buf(), s.clone());
            }
            FileSource::Archive(s) => {
                opened.archives_in.insert(path.to_path_buf(), s.clone());
            }
        }
        Ok(source)
    }

    /// A layout or archive to write; `None` when it does not exist and this
    /// factory creates nothing (a dry run).
    pub fn file_target(
        &self,
        kind: FileKind,
        path: &Path,
    ) -> Result<Option<FileTarget>, StoreError> {
        let mut opened = self.opened();
        match kind {
            FileKind::Layout => {
                if let Some(s) = opened.layouts.get(path) {
                    return Ok(Some(FileTarget::Layout(s.clone())));
                }
                let store = if self.create {
                    LayoutStore::open_or_create(path)?
                } else if !path.join("index.json").exists() {
                    return Ok(None);
                } else {
                    LayoutStore::open(path)?
                };
                let s = Arc::new(store);
                opened.layouts.insert(path.to_path_buf(), s.clone());
                Ok(Some(FileTarget::Layout(s)))
            }
            FileKind::Archive => {
                if opened.archives_in.contains_key(path) {
                    return Err(StoreError::invalid(
                        path.display().to_string(),
                        "an archive cannot be read and written in one run",
                    ));
                }
                if let Some(s) = opened.archives_out.get(path) {
                    return Ok(Some(FileTarget::Archive(s.clone())));
                }
                if !self.create {
                    return Ok(None);
                }
                let mut w = ArchiveWriter::create(path)?;
                if let Some(held) = &self.leave_out {
                    w = w.leave_out(held.clone());
                }
                if self.docker_archives {
                    w = w.docker_loadable();
                }
                let s = Arc::new(w);
                opened.archives_out.insert(path.to_path_buf(), s.clone());
                Ok(Some(FileTarget::Archive(s)))
            }
        }
    }

    /// The store and reference a source location names.
    pub fn source(&self, at: &Endpoint) -> Result<(Arc<dyn ImageSource>, ImageRef), StoreError> {
        match at {
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
                Ok((self.registry(repository), r))
            }
            Endpoint::File { kind, path, name } => {
                let kind = *kind;
                let store = self.file_source(kind, path)?.store();
                Ok((store, name.clone().map_or(ImageRef::Only, ImageRef::Tag)))
            }
        }
    }
}

/// A layout or archive opened for writing.
#[derive(Debug, Clone)]
pub enum FileTarget {
    Layout(Arc<LayoutStore>),
    Archive(Arc<ArchiveWriter>),
}

impl FileTarget {
    pub fn store(&self) -> Arc<dyn ImageTarget> {
        match self {
            FileTarget::Layout(s) => s.clone(),
            FileTarget::Archive(s) => s.clone(),
        }
    }

    /// Record the full source reference of an image written under `name`
    /// (archives keep it in `io.containerd.image.name`).
    pub fn record_reference(&self, name: &str, reference: &str) {
        if let FileTarget::Archive(w) = self {
            w.record_reference(name, reference);
        }
    }
}
