//! An OCI image layout directory as an image store: `oci-layout`,
//! `index.json` naming images with `org.opencontainers.image.ref.name`, and
//! content-addressed files under `blobs/<alg>/<hex>`.
//!
//! Blobs and manifests are written to a temporary file beside their final
//! name, hashed while they are written, fsynced and renamed into place, so a
//! crash never leaves a partial file under a digest (go-containerregistry's
//! writer does). `index.json` is rewritten the same way under a lock that
//! holds across tasks of this process and across processes.
//!
//! What is on disk is not trusted. Every file read whole (`oci-layout`,
//! `index.json`, a manifest) is read through a cap, and must be a regular
//! file: a link to `/dev/zero` or a named pipe is refused, never read
//! forever or waited on. (Reads follow symbolic links to regular files:
//! layouts built by Nix and others link their blobs into a store, and what
//! is read is verified against its digest anyway.) As a target, a blob
//! counts as present only when it is a regular file, not a link, whose
//! bytes hash to its digest; anything else under its name is replaced by
//! the real file (a directory there is refused, naming it).
//!
//! Referrers (a manifest with a `subject`) stored here get an entry in
//! `index.json` without a name, as oras writes them (see
//! [`super::oci_index`]); as a source, a layout lists an image's referrers
//! by reading those entries' manifests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use registry_client::{Descriptor, Digest, Manifest, Verifier, MAX_MANIFEST_SIZE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use super::oci_index::REF_NAME;
use super::oci_index::{
    as_referrer, layout_marker, layout_version, referrer_entries, referrers_of, stored_manifest,
    Holder, OciIndex, ReferrerCache, LAYOUT_VERSION, MAX_INDEX_SIZE,
};
use super::{BlobStream, ImageRef, ImageSource, ImageTarget, Store, StoreError, StoreId};
use crate::regular_file::{self, Links};

const READ_CHUNK: usize = 256 * 1024;
const WRITE_BUFFER: usize = 1024 * 1024;

/// One OCI image layout directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct LayoutStore {
    id: StoreId,
    /// The path as the user wrote it, for messages.
    path: PathBuf,
    /// The canonical path: every file operation and the lock key use it.
    root: PathBuf,
    /// Blob files this process hashed (or wrote) and found whole, so one
    /// run hashes each present blob once however often it asks.
    verified: Arc<StdMutex<HashSet<FileKey>>>,
    /// The unnamed entries of `index.json` as last read, with the file
    /// they were read from: a walk lists referrers for every manifest,
    /// and the index is read again only once it was replaced.
    unnamed: Arc<StdMutex<Option<UnnamedEntries>>>,
    /// What each unnamed entry's manifest refers to.
    referrer_cache: Arc<ReferrerCache>,
}

/// The unnamed entries of `index.json`, and the file they were read from.
type UnnamedEntries = (FileKey, Vec<Descriptor>);

/// A blob file as it was when verified: changed since, it is hashed again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileKey {
    path: PathBuf,
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileKey {
    fn of(path: &Path, meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        FileKey {
            path: path.to_path_buf(),
            dev,
            ino,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

impl LayoutStore {
    /// Open an existing layout: `oci-layout` must say version 1.0.0 and
    /// `index.json` must be a valid image index.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let root = StoreError::canonical(&path, "OCI layout directory")?;
        let store = LayoutStore {
            id: StoreId::Layout {
                path: path.clone(),
                root: root.clone(),
            },
            path,
            root,
            verified: Arc::default(),
            unnamed: Arc::default(),
            referrer_cache: Arc::default(),
        };
        store.check_layout_file()?;
        store.read_index_sync()?;
        Ok(store)
    }

    /// Make a new layout at `path` (the directory may exist, but must not
    /// hold a layout already).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::init(path.as_ref(), false)
    }

    /// Open the layout at `path`, or make one there: what a copy target wants.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::init(path.as_ref(), true)
    }

    fn init(path: &Path, reuse: bool) -> Result<Self, StoreError> {
        if reuse && path.join("oci-layout").exists() {
            return Self::open(path);
        }
        fs::create_dir_all(path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        let root = fs::canonicalize(path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        let store = LayoutStore {
            id: StoreId::Layout {
                path: path.to_path_buf(),
                root: root.clone(),
            },
            path: path.to_path_buf(),
            root,
            verified: Arc::default(),
            unnamed: Arc::default(),
            referrer_cache: Arc::default(),
        };
        // Under the index lock, so two processes creating the same layout
        // cannot replace each other's index.json.
        let _lock = store.lock_file_blocking()?;
        store.init_locked(reuse)?;
        Ok(store)
    }

    fn init_locked(&self, reuse: bool) -> Result<(), StoreError> {
        let layout_file = self.root.join("oci-layout");
        let index_file = self.root.join("index.json");
        if layout_file.exists() {
            if !reuse {
                return Err(StoreError::invalid(
                    self.path.display().to_string(),
                    "an OCI image layout exists here already",
                ));
            }
            self.check_layout_file()?;
            self.read_index_sync()?;
            return Ok(());
        }
        fs::create_dir_all(self.root.join("blobs"))
            .map_err(|e| StoreError::io(format!("creating {}/blobs", self.root.display()), e))?;
        if index_file.exists() {
            // A creation that stopped before writing oci-layout, or a foreign
            // directory: keep an index.json only if it is one.
            if !reuse {
                return Err(StoreError::invalid(
                    index_file.display().to_string(),
                    "exists already, but the directory is no OCI image layout (no oci-layout file)",
                ));
            }
            self.read_index_sync()?;
        } else {
            write_atomic_sync(&self.root, "index.json", &OciIndex::new().to_bytes())?;
        }
        write_atomic_sync(&self.root, "oci-layout", &layout_marker())?;
        Ok(())
    }

    /// The layout's directory as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The named images in `index.json`, in its order.
    pub async fn names(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        Ok(self.read_index().await?.names())
    }

    /// Every referrer the layout keeps (an unnamed entry whose manifest
    /// has a subject), with its subject's digest.
    pub async fn referrer_entries(&self) -> Result<Vec<(Digest, Descriptor)>, StoreError> {
        let unnamed = self.unnamed_entries().await?;
        let label = self.index_file().display().to_string();
        referrer_entries(&label, unnamed, &self.referrer_cache, |d| async move {
            self.manifest(&d).await
        })
        .await
    }

    /// The unnamed entries of `index.json`, read again only when the file
    /// was replaced since (every write of it renames a new file into place).
    async fn unnamed_entries(&self) -> Result<Vec<Descriptor>, StoreError> {
        let file = self.index_file();
        // Not there (or unreadable): reading it says what is wrong.
        let stat = || async {
            tokio::fs::metadata(&file)
                .await
                .ok()
                .map(|m| FileKey::of(&file, &m))
        };
        let before = stat().await;
        let cached = self
            .unnamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let (Some(now), Some((k, entries))) = (&before, cached) {
            if *now == k {
                return Ok(entries);
            }
        }
        let entries: Vec<Descriptor> = self
            .read_index()
            .await?
            .unnamed()
            .into_iter()
            .cloned()
            .collect();
        // Kept only when the file did not change while it was read.
        if let Some(before) = before {
            if stat().await.as_ref() == Some(&before) {
                *self.unnamed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((before, entries.clone()));
            }
        }
        Ok(entries)
    }

    fn check_layout_file(&self) -> Result<(), StoreError> {
        let file = self.root.join("oci-layout");
        let bytes = read_capped_sync(&file, MAX_INDEX_SIZE, "oci-layout")?.ok_or_else(|| {
            StoreError::invalid(
                file.display().to_string(),
                "missing: the directory is no OCI image layout",
            )
        })?;
        let version = layout_version(&bytes).map_err(|e| {
            StoreError::invalid(file.display().to_string(), format!("not valid JSON: {e}"))
        })?;
        match version.as_deref() {
            Some(LAYOUT_VERSION) => Ok(()),
            Some(other) => Err(StoreError::invalid(
                file.display().to_string(),
                format!("imageLayoutVersion {other:?} is not supported (only {LAYOUT_VERSION})"),
            )),
            None => Err(StoreError::invalid(
                file.display().to_string(),
                "has no imageLayoutVersion",
            )),
        }
    }

    fn index_file(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // Digest admits only sha256/sha512 and lower-case hex of the right
        // length, so neither part can climb out of blobs/.
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn not_found(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::NotFound(format!("{what} in {}", self.describe()))
    }

    /// A layout file whose bytes are not what its name says.
    fn corrupt(&self, file: &Path, err: registry_client::Error) -> StoreError {
        StoreError::Integrity {
            context: format!("{} is corrupt", file.display()),
            source: Box::new(err),
        }
    }

    /// Who holds the index, for its messages.
    fn holder(&self) -> Holder {
        Holder {
            store: self.describe(),
            index: self.index_file().display().to_string(),
            syntax: "oci:PATH:NAME",
        }
    }

    async fn read_index(&self) -> Result<OciIndex, StoreError> {
        let file = self.index_file();
        let bytes = read_capped(&file, MAX_INDEX_SIZE, "index.json").await?;
        let bytes = bytes.ok_or_else(|| {
            StoreError::invalid(
                file.display().to_string(),
                "missing: the directory is no OCI image layout",
            )
        })?;
        OciIndex::parse(&file.display().to_string(), &bytes)
    }

    fn read_index_sync(&self) -> Result<OciIndex, StoreError> {
        let file = self.index_file();
        let bytes = read_capped_sync(&file, MAX_INDEX_SIZE, "index.json")?.ok_or_else(|| {
            StoreError::invalid(
                file.display().to_string(),
                "missing: the directory is no OCI image layout",
            )
        })?;
        OciIndex::parse(&file.display().to_string(), &bytes)
    }

    /// The size of the blob file for `digest` when it is there whole: a
    /// regular file (not a link) whose bytes hash to the digest. A link, a
    /// pipe, a directory or wrong bytes are not the blob (`None`; a write
    /// replaces them). Blocking: hashes the file, once per run.
    fn verified_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.blob_path(digest);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(format!("checking {}", path.display()), e)),
        };
        if !meta.is_file() {
            tracing::warn!(
                file = %path.display(),
                kind = regular_file::kind(&meta.file_type()),
                "a blob file that is not a regular file does not count as the blob"
            );
            return Ok(None);
        }
        let key = FileKey::of(&path, &meta);
        if self.is_verified(&key) {
            return Ok(Some(key.len));
        }
        let file = match open_file(&path, fs::OpenOptions::new().read(true), false) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "an unreadable blob file does not count as the blob");
                return Ok(None);
            }
        };
        let opened = file
            .metadata()
            .map_err(|e| StoreError::io(format!("checking {}", path.display()), e))?;
        let key = FileKey::of(&path, &opened);
        let mut hasher = registry_client::Hasher::new(digest.algorithm());
        hasher
            .update_from(file.take(key.len.saturating_add(1)))
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        if hasher.len() != key.len || &hasher.finish() != digest {
            tracing::warn!(
                file = %path.display(),
                "a blob file whose bytes do not hash to its digest does not count as the blob"
            );
            return Ok(None);
        }
        self.remember_verified(key.clone());
        Ok(Some(key.len))
    }

    fn is_verified(&self, key: &FileKey) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    fn remember_verified(&self, key: FileKey) {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
    }

    /// Whether a blob file can be read as a source: a regular file, links
    /// followed (what is read is verified as it streams).
    async fn readable(&self, digest: &Digest) -> Result<bool, StoreError> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(format!("checking {}", path.display()), e)),
        }
    }

    async fn verified_size_async(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let (store, d) = (self.clone(), digest.clone());
        tokio::task::spawn_blocking(move || store.verified_size(&d))
            .await
            .map_err(|e| StoreError::io("checking a blob", io::Error::other(e)))?
    }

    /// A manifest blob's bytes, capped and verified against its digest.
    async fn read_manifest_bytes(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        let file = self.blob_path(digest);
        let bytes = read_capped(&file, MAX_MANIFEST_SIZE, "manifest")
            .await?
            .ok_or_else(|| self.not_found(format!("manifest {digest}")))?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(self.corrupt(
                &file,
                registry_client::Error::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                },
            ));
        }
        Ok(bytes)
    }

    /// Stream `data` into `blobs/<alg>/<hex>` through a temporary file,
    /// committing only what matches `desc`.
    async fn write_verified(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        let target = self.blob_path(&desc.digest);
        match tokio::fs::symlink_metadata(&target).await {
            Ok(m) if m.is_dir() => {
                return Err(StoreError::invalid(
                    target.display().to_string(),
                    format!(
                        "is a directory where the blob {} belongs; remove it and copy again",
                        desc.digest
                    ),
                ))
            }
            Ok(m) if m.is_file() && m.len() == desc.size => {
                if self.verified_size_async(&desc.digest).await? == Some(desc.size) {
                    return Ok(());
                }
                // Wrong bytes of the right length: replaced below.
            }
            Ok(m) => {
                // A truncated blob another writer left under its final
                // name, or a link or pipe: the rename below replaces it
                // (a link itself, never what it points at).
                tracing::warn!(
                    file = %target.display(),
                    kind = regular_file::kind(&m.file_type()),
                    size = m.len(),
                    expected = desc.size,
                    "replacing what is under a blob's name with the blob"
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("checking {}", target.display()), e)),
        }
        let dir = self.root.join("blobs").join(desc.digest.algorithm().name());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let temp = dir.join(format!(
            "{}.partial.{:016x}",
            desc.digest.hex(),
            rand::random::<u64>()
        ));
        // Removes the temporary file on every way out but the rename,
        // including this future being dropped mid-stream.
        let guard = RemoveOnDrop(Some(temp.clone()));
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.custom_flags(libc::O_NOFOLLOW);
        let file = opts
            .open(&temp)
            .await
            .map_err(|e| StoreError::io(format!("creating {}", temp.display()), e))?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut verifier = Verifier::new(desc.digest.clone(), Some(desc.size));
        let write_err = |e| StoreError::io(format!("writing {}", temp.display()), e);
        let mut data = data;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            verifier.update(&chunk)?;
            out.write_all(&chunk).await.map_err(write_err)?;
        }
        drop(data);
        verifier.finish()?;
        out.flush().await.map_err(write_err)?;
        let file = out.into_inner();
        file.sync_all().await.map_err(write_err)?;
        drop(file);
        tokio::fs::rename(&temp, &target).await.map_err(|e| {
            StoreError::io(
                format!("renaming {} to {}", temp.display(), target.display()),
                e,
            )
        })?;
        guard.disarm();
        if let Ok(m) = tokio::fs::symlink_metadata(&target).await {
            // Hashed while written: no need to hash it again this run.
            self.remember_verified(FileKey::of(&target, &m));
        }
        sync_dir(&dir).await
    }

    /// Take the cross-process lock on `index.json`, blocking the thread.
    fn lock_file_blocking(&self) -> Result<FileLock, StoreError> {
        let path = self.root.join("index.json.lock");
        let file = open_file(
            &path,
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true),
            true,
        )
        .and_then(|f| f.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        FileLock::exclusive(file)
            .map_err(|e| StoreError::io(format!("locking {}", path.display()), e))
    }

    /// Read-modify-write `index.json` under the process lock and the file
    /// lock, re-reading it once both are held; `change` says whether it
    /// changed anything (else nothing is written).
    async fn update_index<F>(&self, change: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut OciIndex) -> bool + Send + 'static,
    {
        let lock = process_lock(&self.root);
        let _held = lock.lock().await;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let _file_lock = store.lock_file_blocking()?;
            store.update_index_locked(change)
        })
        .await
        .map_err(|e| StoreError::io("updating index.json", io::Error::other(e)))?
    }

    fn update_index_locked<F>(&self, change: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut OciIndex) -> bool,
    {
        let mut index = self.read_index_sync()?;
        if !change(&mut index) {
            return Ok(());
        }
        write_atomic_sync(&self.root, "index.json", &index.to_bytes())
    }
}

impl Store for LayoutStore {
    fn id(&self) -> &StoreId {
        &self.id
    }
}

#[async_trait::async_trait]
impl ImageSource for LayoutStore {
    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError> {
        if let ImageRef::Digest(d) = reference {
            return self.manifest(d).await;
        }
        let desc = self
            .read_index()
            .await?
            .pick(reference, &self.holder())?
            .clone();
        let bytes = self.read_manifest_bytes(&desc.digest).await?;
        if bytes.len() as u64 != desc.size {
            return Err(StoreError::invalid(
                self.index_file().display().to_string(),
                format!(
                    "gives {} a size of {} bytes, but the blob has {}",
                    desc.digest,
                    desc.size,
                    bytes.len()
                ),
            ));
        }
        Ok(Manifest {
            media_type: desc.media_type,
            digest: desc.digest,
            bytes,
        })
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        match reference {
            ImageRef::Digest(d) => Ok(self.readable(d).await?.then(|| d.clone())),
            _ => Ok(self
                .read_index()
                .await?
                .find(reference, &self.holder())?
                .map(|d| d.digest.clone())),
        }
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        Ok(stored_manifest(
            digest,
            self.read_manifest_bytes(digest).await?,
        ))
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        let path = self.blob_path(&desc.digest);
        let file = match open_file_async(&path).await {
            Ok(Some(f)) => tokio::fs::File::from_std(f),
            Ok(None) => return Err(self.not_found(format!("blob {}", desc.digest))),
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        };
        let state = ReadState {
            file,
            verifier: Verifier::new(desc.digest.clone(), Some(desc.size)),
            path,
            store: self.clone(),
        };
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            match st.file.read_buf(&mut buf).await {
                Ok(0) => match st.verifier.finish() {
                    Ok(_) => None,
                    Err(e) => Some((Err(st.store.corrupt(&st.path, e)), None)),
                },
                Ok(_) => match st.verifier.update(&buf) {
                    Ok(()) => Some((Ok(buf.freeze()), Some(st))),
                    Err(e) => {
                        let err = st.store.corrupt(&st.path, e);
                        Some((Err(err), None))
                    }
                },
                Err(e) => {
                    let err = StoreError::io(format!("reading {}", st.path.display()), e);
                    Some((Err(err), None))
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn list_tags(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.names().await?.into_iter().map(|(n, _)| n).collect())
    }

    /// The unnamed entries whose manifest's subject is `subject`.
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        Ok(referrers_of(
            self.referrer_entries().await?,
            subject,
            artifact_types,
        ))
    }
}

#[async_trait::async_trait]
impl ImageTarget for LayoutStore {
    async fn current(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        match reference {
            // As a target, only a whole manifest file counts (not a link).
            ImageRef::Digest(d) => Ok(self
                .verified_size_async(d)
                .await?
                .is_some()
                .then(|| d.clone())),
            _ => self.resolve_digest(reference).await,
        }
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let size = manifest.bytes.len() as u64;
        if size > MAX_MANIFEST_SIZE {
            return Err(registry_client::Error::TooLarge {
                what: format!("manifest {}", manifest.digest),
                url: self.describe(),
                limit: MAX_MANIFEST_SIZE,
            }
            .into());
        }
        let desc = Descriptor {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size,
            urls: Vec::new(),
            annotations: Default::default(),
            artifact_type: None,
            platform: None,
        };
        let data = futures::stream::iter([Ok(manifest.bytes.clone())]).boxed();
        self.write_verified(&desc, data).await?;
        // A referrer is kept by an unnamed entry, as a name is: under the
        // index lock, replacing index.json whole.
        if let Some((_, entry)) = as_referrer(manifest) {
            self.update_index(move |index| index.add_unnamed(&entry))
                .await?;
        }
        Ok(())
    }

    async fn set_tag(&self, tag: &str, manifest: &Manifest) -> Result<(), StoreError> {
        if tag.is_empty() || tag.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                self.describe(),
                format!("{tag:?} is not a usable image name"),
            ));
        }
        match self.blob_size(&manifest.digest).await? {
            Some(n) if n == manifest.bytes.len() as u64 => {}
            Some(n) => {
                return Err(StoreError::invalid(
                    self.describe(),
                    format!(
                        "cannot name {}: the stored manifest has {n} bytes, not {}",
                        manifest.digest,
                        manifest.bytes.len()
                    ),
                ))
            }
            None => {
                return Err(self.not_found(format!(
                    "manifest {} (store it before naming it {tag:?})",
                    manifest.digest
                )))
            }
        }
        let (tag, manifest) = (tag.to_string(), manifest.clone());
        self.update_index(move |index| {
            index.set_name(&tag, &manifest, BTreeMap::new());
            true
        })
        .await
    }

    /// What the unnamed entries keep: a layout tells its referrers as a
    /// source does.
    async fn held_referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Option<Vec<Descriptor>>, StoreError> {
        Ok(Some(
            ImageSource::referrers(self, subject, artifact_types).await?,
        ))
    }

    /// Present only when whole: see [`LayoutStore::verified_size`].
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.verified_size_async(digest).await
    }

    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        self.write_verified(desc, data).await
    }
}

struct ReadState {
    file: tokio::fs::File,
    verifier: Verifier,
    path: PathBuf,
    store: LayoutStore,
}

/// Deletes a temporary file unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// An exclusive advisory lock on a file (flock on Unix), held until drop.
/// It serialises processes; tasks of one process also take [`process_lock`]
/// so they wait without holding a blocking thread each.
struct FileLock(fs::File);

// std's `File::lock` is stable since Rust 1.89; the workspace's declared
// rust-version is older, but the toolchain it builds with is not.
impl FileLock {
    fn exclusive(file: fs::File) -> io::Result<Self> {
        file.lock()?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The lock every task of this process takes before touching a layout's
/// `index.json`, keyed by canonical path.
fn process_lock(root: &Path) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = StdMutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(root.to_path_buf()).or_default().clone()
}

/// Open `path` with `opts`: `None` when absent, an error naming the file
/// when it is not a regular file (a device, a pipe, a directory) or, with
/// `no_follow`, a symbolic link. Opening a named pipe does not block.
fn open_file(path: &Path, opts: &fs::OpenOptions, no_follow: bool) -> io::Result<Option<fs::File>> {
    let links = if no_follow {
        Links::Refuse
    } else {
        Links::Follow
    };
    match regular_file::open(path, opts, links) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`open_file`] for reading, off the async workers.
async fn open_file_async(path: &Path) -> io::Result<Option<fs::File>> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || open_file(&p, fs::OpenOptions::new().read(true), false))
        .await
        .map_err(io::Error::other)?
}

/// The error for a file read whole that is larger than its bound.
fn too_large(path: &Path, limit: u64, what: &str) -> StoreError {
    registry_client::Error::TooLarge {
        what: what.to_string(),
        url: path.display().to_string(),
        limit,
    }
    .into()
}

/// A whole small file, or `None` when absent; refused above `limit` bytes
/// and when it is not a regular file.
async fn read_capped(path: &Path, limit: u64, what: &str) -> Result<Option<Bytes>, StoreError> {
    let file = match open_file_async(path).await {
        Ok(Some(f)) => tokio::fs::File::from_std(f),
        Ok(None) => return Ok(None),
        Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, limit, what));
    }
    Ok(Some(Bytes::from(bytes)))
}

/// [`read_capped`], blocking the thread.
fn read_capped_sync(path: &Path, limit: u64, what: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let file = match open_file(path, fs::OpenOptions::new().read(true), false) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, limit, what));
    }
    Ok(Some(bytes))
}

/// Write `dir/name` whole or not at all: a temporary file, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_atomic_sync(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = dir.join(format!("{name}.{:016x}.tmp", rand::random::<u64>()));
    let target = dir.join(name);
    let guard = RemoveOnDrop(Some(temp.clone()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&temp, &target)
    };
    write().map_err(|e| StoreError::io(format!("writing {}", target.display()), e))?;
    guard.disarm();
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))
}

async fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(|e| StoreError::io(format!("opening {}", dir.display()), e))?;
    d.sync_all()
        .await
        .map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::super::oci_index::to_json;
    use super::*;
    use futures::stream;
    use registry_client::media_type;
    use serde_json::{json, Value};

    fn desc(data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type::OCTET_STREAM.into(),
            digest: Digest::sha256_of(data),
            size: data.len() as u64,
            urls: Vec::new(),
            annotations: Default::default(),
            artifact_type: None,
            platform: None,
        }
    }

    fn chunks(parts: Vec<&'static [u8]>) -> BlobStream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    async fn read_all(s: BlobStream) -> Result<Vec<u8>, StoreError> {
        let mut s = s;
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    fn manifest(seed: u8) -> Manifest {
        let bytes = Bytes::from(format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"config\": {{\"seed\": {seed}}}\n}}",
            media_type::OCI_MANIFEST
        ));
        Manifest {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    fn new_layout() -> (tempfile::TempDir, LayoutStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::create(dir.path().join("layout")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn creates_a_layout_and_reads_back_a_verified_blob() {
        let (_d, store) = new_layout();
        let root = store.path().to_path_buf();
        assert_eq!(
            fs::read_to_string(root.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let index: Value =
            serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index,
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []})
        );
        assert!(root.join("blobs").is_dir());
        assert_eq!(store.describe(), format!("oci:{}", root.display()));
        assert_eq!(
            store.blob_domain(),
            format!("layout:{}", fs::canonicalize(&root).unwrap().display())
        );

        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let d = desc(&data);
        let parts: Vec<Result<Bytes, StoreError>> = data
            .chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = stream::iter(parts).boxed();
        store.write_blob(&d, body).await.unwrap();
        assert_eq!(store.blob_size(&d.digest).await.unwrap(), Some(700_000));
        assert_eq!(
            listing(&root.join("blobs/sha256")),
            vec![d.digest.hex().to_string()]
        );
        assert_eq!(
            read_all(store.read_blob(&d).await.unwrap()).await.unwrap(),
            data
        );

        let absent = desc(b"absent");
        assert_eq!(store.blob_size(&absent.digest).await.unwrap(), None);
        let err = store.read_blob(&absent).await.err().unwrap();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&absent.digest.to_string()) && msg.contains("oci:"),
            "{msg}"
        );

        // Reopening finds the same layout; creating again is refused.
        LayoutStore::open(&root).unwrap();
        LayoutStore::open_or_create(&root).unwrap();
        let err = LayoutStore::create(&root).unwrap_err().to_string();
        assert!(err.contains("layout exists here already"), "{err}");
    }

    #[tokio::test]
    async fn wrong_bytes_commit_nothing_and_leave_no_partial_file() {
        let (_d, store) = new_layout();
        let blobs = store.path().join("blobs/sha256");
        let kept = desc(b"kept");
        store
            .write_blob(&kept, chunks(vec![b"kept"]))
            .await
            .unwrap();
        let before = listing(&blobs);

        let d = desc(b"hello world");
        let err = store
            .write_blob(&d, chunks(vec![b"hello ", b"wurld"]))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.kind(), registry_client::ErrorKind::Integrity, "{msg}");
        assert!(msg.contains(&d.digest.to_string()), "{msg}");
        assert!(
            msg.contains(&Digest::sha256_of(b"hello wurld").to_string()),
            "{msg}"
        );
        // Too many bytes fail as soon as the size is passed.
        let err = store
            .write_blob(&d, chunks(vec![b"hello world", b"!"]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), registry_client::ErrorKind::Integrity, "{err}");
        assert_eq!(listing(&blobs), before);
        assert_eq!(store.blob_size(&d.digest).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_error_midway_leaves_nothing() {
        let (_d, store) = new_layout();
        let d = desc(b"hello world");
        let body = stream::iter([
            Ok(Bytes::from_static(b"hello ")),
            Err(StoreError::io(
                "source went away",
                io::Error::from(io::ErrorKind::ConnectionReset),
            )),
        ])
        .boxed();
        let err = store.write_blob(&d, body).await.unwrap_err();
        assert!(err.to_string().contains("source went away"), "{err}");
        assert!(listing(&store.path().join("blobs/sha256")).is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_write_leaves_nothing() {
        let (_d, store) = new_layout();
        let d = desc(b"hello world");
        let body = stream::iter([Ok(Bytes::from_static(b"hello "))])
            .chain(stream::pending())
            .boxed();
        let s = store.clone();
        let task = tokio::spawn(async move { s.write_blob(&d, body).await });
        let blobs = store.path().join("blobs/sha256");
        for _ in 0..200 {
            if !listing(&blobs).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let during = listing(&blobs);
        assert_eq!(during.len(), 1);
        assert!(during[0].contains(".partial."), "{during:?}");
        task.abort();
        let _ = task.await;
        assert!(listing(&blobs).is_empty());
    }

    #[tokio::test]
    async fn an_existing_blob_is_not_rewritten() {
        let (_d, store) = new_layout();
        let d = desc(b"same");
        store.write_blob(&d, chunks(vec![b"same"])).await.unwrap();
        let path = store.blob_path(&d.digest);
        let before = fs::metadata(&path).unwrap().modified().unwrap();
        // Bytes that would fail if they were read: they are not.
        store.write_blob(&d, chunks(vec![b"diff"])).await.unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"same");
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);

        // A truncated file under the final name (another writer's crash) is replaced.
        let t = desc(b"truncated?");
        fs::write(store.blob_path(&t.digest), b"trunc").unwrap();
        store
            .write_blob(&t, chunks(vec![b"truncated?"]))
            .await
            .unwrap();
        assert_eq!(fs::read(store.blob_path(&t.digest)).unwrap(), b"truncated?");
    }

    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_of_the_right_size_is_not_the_blob_and_is_replaced_not_written_through() {
        let (d, store) = new_layout();
        let data = b"the real blob".to_vec();
        let blob = desc(&data);
        // Outside the layout, a file of the right size (even the right bytes).
        let outside = d.path().join("outside");
        fs::write(&outside, &data).unwrap();
        let path = store.blob_path(&blob.digest);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        assert_eq!(store.blob_size(&blob.digest).await.unwrap(), None);
        store
            .write_blob(&blob, chunks(vec![b"the real blob"]))
            .await
            .unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "a file of its own now");
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(
            fs::read(&outside).unwrap(),
            data,
            "the link's target untouched"
        );
        assert_eq!(store.blob_size(&blob.digest).await.unwrap(), Some(13));

        // A manifest linked from elsewhere is not current at the target either.
        let m = manifest(1);
        let elsewhere = d.path().join("manifest");
        fs::write(&elsewhere, &m.bytes).unwrap();
        std::os::unix::fs::symlink(&elsewhere, store.blob_path(&m.digest)).unwrap();
        let at = ImageRef::Digest(m.digest.clone());
        assert_eq!(ImageTarget::current(&store, &at).await.unwrap(), None);
        // As a source, a link to a regular file is read (and verified).
        assert_eq!(store.manifest(&m.digest).await.unwrap(), m);
        store.put_manifest(&m).await.unwrap();
        assert_eq!(
            ImageTarget::current(&store, &at).await.unwrap(),
            Some(m.digest.clone())
        );
    }

    #[tokio::test]
    async fn a_file_of_the_right_size_with_wrong_bytes_is_not_the_blob() {
        let (_d, store) = new_layout();
        let blob = desc(b"right bytes");
        let path = store.blob_path(&blob.digest);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"wrong bytes").unwrap();
        assert_eq!(store.blob_size(&blob.digest).await.unwrap(), None);
        store
            .write_blob(&blob, chunks(vec![b"right bytes"]))
            .await
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"right bytes");
        assert_eq!(store.blob_size(&blob.digest).await.unwrap(), Some(11));
        // Replaced on disk after it was verified: hashed again, not trusted.
        let other = path.with_extension("other");
        fs::write(&other, b"Right bytes").unwrap();
        fs::rename(&other, &path).unwrap();
        assert_eq!(store.blob_size(&blob.digest).await.unwrap(), None);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn pipes_and_directories_under_a_blobs_name_are_not_the_blob() {
        let (_d, store) = new_layout();
        let piped = desc(b"piped");
        let path = store.blob_path(&piped.digest);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        mkfifo(&path);
        // Neither check nor read waits for a writer that never comes.
        assert_eq!(store.blob_size(&piped.digest).await.unwrap(), None);
        let err = store.read_blob(&piped).await.err().unwrap().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("named pipe"),
            "{err}"
        );
        store
            .write_blob(&piped, chunks(vec![b"piped"]))
            .await
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"piped");

        let dir = desc(b"a dir");
        let path = store.blob_path(&dir.digest);
        fs::create_dir_all(path.join("inside")).unwrap();
        assert_eq!(store.blob_size(&dir.digest).await.unwrap(), None);
        let err = store
            .write_blob(&dir, chunks(vec![b"a dir"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("is a directory"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn layout_files_that_are_devices_or_pipes_are_refused_not_read_forever() {
        let (_d, store) = new_layout();
        let root = store.path().to_path_buf();
        let index = root.join("index.json");
        let saved = fs::read(&index).unwrap();
        fs::remove_file(&index).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
        let err = LayoutStore::open(&root).unwrap_err().to_string();
        assert!(
            err.contains("index.json") && err.contains("a device, not a regular file"),
            "{err}"
        );
        let err = store.names().await.unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        fs::remove_file(&index).unwrap();
        mkfifo(&index);
        let err = LayoutStore::open(&root).unwrap_err().to_string();
        assert!(err.contains("a named pipe"), "{err}");
        fs::remove_file(&index).unwrap();
        fs::write(&index, &saved).unwrap();

        let marker = root.join("oci-layout");
        fs::remove_file(&marker).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &marker).unwrap();
        let err = LayoutStore::open(&root).unwrap_err().to_string();
        assert!(
            err.contains("oci-layout") && err.contains("not a regular file"),
            "{err}"
        );
        fs::remove_file(&marker).unwrap();
        fs::write(&marker, layout_marker()).unwrap();

        let m = manifest(1);
        let path = store.blob_path(&m.digest);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let err = store.manifest(&m.digest).await.unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn layout_files_are_read_through_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        fs::write(&big, vec![b' '; 101]).unwrap();
        let err = read_capped_sync(&big, 100, "index.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("index.json") && err.contains("100"), "{err}");
        assert_eq!(
            read_capped_sync(&big, 101, "x").unwrap().unwrap().len(),
            101
        );
        assert!(read_capped_sync(&dir.path().join("absent"), 1, "x")
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn manifests_round_trip_by_name_and_digest() {
        let (_d, store) = new_layout();
        let m = manifest(1);
        store.put_manifest(&m).await.unwrap();
        assert!(store.blob_size(&m.digest).await.unwrap().is_some());
        assert_eq!(store.manifest(&m.digest).await.unwrap(), m);
        assert_eq!(
            store
                .resolve(&ImageRef::Digest(m.digest.clone()))
                .await
                .unwrap(),
            m
        );
        store.set_tag("v1", &m).await.unwrap();
        assert_eq!(store.resolve(&ImageRef::Tag("v1".into())).await.unwrap(), m);
        assert_eq!(store.resolve(&ImageRef::Only).await.unwrap(), m);
        assert_eq!(
            store
                .resolve_digest(&ImageRef::Tag("v1".into()))
                .await
                .unwrap(),
            Some(m.digest.clone())
        );
        assert_eq!(
            store
                .resolve_digest(&ImageRef::Tag("v2".into()))
                .await
                .unwrap(),
            None
        );
        let err = store
            .resolve(&ImageRef::Tag("v2".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("v1"), "{err}");

        // An index without mediaType is still recognised by digest.
        let idx = Bytes::from_static(br#"{"schemaVersion":2,"manifests":[]}"#);
        let im = Manifest {
            media_type: media_type::OCI_INDEX.into(),
            digest: Digest::sha256_of(&idx),
            bytes: idx,
        };
        store.put_manifest(&im).await.unwrap();
        assert_eq!(store.manifest(&im.digest).await.unwrap(), im);

        // A manifest whose bytes are not its digest is refused.
        let mut bad = manifest(2);
        bad.digest = Digest::sha256_of(b"other");
        assert!(store.put_manifest(&bad).await.is_err());
        // Naming a manifest that is not stored is refused.
        let err = store.set_tag("x", &manifest(3)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    /// A signature-like manifest whose subject is `subject`.
    fn referrer_of(subject: &Manifest, artifact_type: &str, seed: u8) -> Manifest {
        let bytes = Bytes::from(
            serde_json::to_vec_pretty(&json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": {"mediaType": media_type::OCI_EMPTY, "digest": Digest::sha256_of(b"{}").to_string(), "size": 2},
                "layers": [],
                "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.bytes.len()},
                "annotations": {"seed": seed.to_string()},
            }))
            .unwrap(),
        );
        Manifest {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    #[tokio::test]
    async fn a_referrer_is_kept_unnamed_and_listed_by_its_subject() {
        let (_d, store) = new_layout();
        let image = manifest(1);
        store.put_manifest(&image).await.unwrap();
        store.set_tag("app:v1", &image).await.unwrap();
        let sig = referrer_of(&image, "application/vnd.cncf.notary.signature", 1);
        let sbom = referrer_of(&image, "application/spdx+json", 2);
        let sbom_sig = referrer_of(&sbom, "application/vnd.cncf.notary.signature", 3);
        for m in [&sig, &sbom, &sbom_sig] {
            store.put_manifest(m).await.unwrap();
        }
        // Again: no second entry.
        store.put_manifest(&sig).await.unwrap();
        let index: Value =
            serde_json::from_slice(&fs::read(store.path().join("index.json")).unwrap()).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 4, "{index}");
        assert_eq!(
            entries[1],
            json!({
                "mediaType": media_type::OCI_MANIFEST,
                "digest": sig.digest.to_string(),
                "size": sig.bytes.len(),
                "artifactType": "application/vnd.cncf.notary.signature",
                "annotations": {"seed": "1"},
            })
        );
        // Only names are names; the one named image is still the only one.
        assert_eq!(store.list_tags().await.unwrap(), vec!["app:v1".to_string()]);
        assert_eq!(store.resolve(&ImageRef::Only).await.unwrap(), image);

        let digests = |v: Vec<Descriptor>| {
            let mut d: Vec<Digest> = v.into_iter().map(|d| d.digest).collect();
            d.sort();
            d
        };
        let mut both = vec![sig.digest.clone(), sbom.digest.clone()];
        both.sort();
        assert_eq!(
            digests(store.referrers(&image.digest, &[]).await.unwrap()),
            both
        );
        assert_eq!(
            digests(
                store
                    .referrers(&image.digest, &["application/spdx+json".into()])
                    .await
                    .unwrap()
            ),
            vec![sbom.digest.clone()]
        );
        assert_eq!(
            digests(store.referrers(&sbom.digest, &[]).await.unwrap()),
            vec![sbom_sig.digest.clone()]
        );
        assert!(store.referrers(&sig.digest, &[]).await.unwrap().is_empty());
        // As a target, it tells what it holds.
        assert_eq!(
            digests(
                store
                    .held_referrers(&image.digest, &[])
                    .await
                    .unwrap()
                    .unwrap()
            ),
            both
        );
        // A second store value (another process) finds them too, and a
        // referrer added since is seen (index.json was replaced).
        let other = LayoutStore::open(store.path()).unwrap();
        assert_eq!(other.referrer_entries().await.unwrap().len(), 3);
        let late = referrer_of(&image, "application/vnd.in-toto+json", 4);
        other.put_manifest(&late).await.unwrap();
        assert_eq!(store.referrers(&image.digest, &[]).await.unwrap().len(), 3);
        // A plain manifest stored untagged gets no entry.
        store.put_manifest(&manifest(9)).await.unwrap();
        assert_eq!(store.referrer_entries().await.unwrap().len(), 4);
        let index: Value =
            serde_json::from_slice(&fs::read(store.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn an_unreadable_unnamed_entry_fails_the_listing_naming_it() {
        let (_d, store) = new_layout();
        let image = manifest(1);
        store.put_manifest(&image).await.unwrap();
        let sig = referrer_of(&image, "x/sig", 1);
        store.put_manifest(&sig).await.unwrap();
        let path = store.blob_path(&sig.digest);
        let mut bytes = sig.bytes.to_vec();
        bytes[3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = store
            .referrers(&image.digest, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[tokio::test]
    async fn set_tag_replaces_a_name_and_keeps_the_rest() {
        let (_d, store) = new_layout();
        let index_file = store.path().join("index.json");
        let (a, b) = (manifest(1), manifest(2));
        store.put_manifest(&a).await.unwrap();
        store.put_manifest(&b).await.unwrap();
        // A foreign entry and unknown fields must survive.
        let foreign = json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": a.digest.to_string(),
            "size": a.bytes.len(),
            "annotations": {REF_NAME: "other", "x.custom": "keep"},
            "platform": {"architecture": "arm64", "os": "linux"},
        });
        fs::write(
            &index_file,
            to_json(&json!({
                "schemaVersion": 2,
                "manifests": [foreign.clone()],
                "annotations": {"top": "level"},
            })),
        )
        .unwrap();

        store.set_tag("v1", &a).await.unwrap();
        store.set_tag("v1", &b).await.unwrap();
        let names = store.names().await.unwrap();
        let listed: Vec<(&str, &Digest)> =
            names.iter().map(|(n, d)| (n.as_str(), &d.digest)).collect();
        assert_eq!(listed, vec![("other", &a.digest), ("v1", &b.digest)]);
        assert_eq!(store.resolve(&ImageRef::Tag("v1".into())).await.unwrap(), b);

        let value: Value = serde_json::from_slice(&fs::read(&index_file).unwrap()).unwrap();
        assert_eq!(value["manifests"][0], foreign);
        assert_eq!(value["annotations"], json!({"top": "level"}));
        assert_eq!(
            value["manifests"][1],
            json!({
                "mediaType": media_type::OCI_MANIFEST,
                "digest": b.digest.to_string(),
                "size": b.bytes.len(),
                "annotations": {REF_NAME: "v1"},
            })
        );
        let leftovers: Vec<String> = listing(store.path())
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_set_tag_loses_no_name() {
        let (_d, store) = new_layout();
        let m = manifest(1);
        store.put_manifest(&m).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = store.clone();
                let m = m.clone();
                // A second store value on the same path shares the lock by path.
                let s = if i % 2 == 0 {
                    s
                } else {
                    LayoutStore::open(s.path()).unwrap()
                };
                tokio::spawn(async move { s.set_tag(&format!("name-{i}"), &m).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut names: Vec<String> = store
            .names()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        let mut want: Vec<String> = (0..50).map(|i| format!("name-{i}")).collect();
        want.sort();
        assert_eq!(names, want);
    }

    #[tokio::test]
    async fn corrupted_files_are_detected_on_read() {
        let (_d, store) = new_layout();
        let data = b"original content".to_vec();
        let d = desc(&data);
        store
            .write_blob(&d, chunks(vec![b"original content"]))
            .await
            .unwrap();
        let path = store.blob_path(&d.digest);
        fs::write(&path, b"Original content").unwrap();
        let err = read_all(store.read_blob(&d).await.unwrap())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&d.digest.to_string()), "{msg}");
        assert!(
            msg.contains(&Digest::sha256_of(b"Original content").to_string()),
            "{msg}"
        );
        // Longer than its descriptor: fails at the size, naming it.
        fs::write(&path, b"original content, and more").unwrap();
        let err = read_all(store.read_blob(&d).await.unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected 16") && err.contains("corrupt"),
            "{err}"
        );

        let m = manifest(1);
        store.put_manifest(&m).await.unwrap();
        store.set_tag("v1", &m).await.unwrap();
        let mpath = store.blob_path(&m.digest);
        let mut bytes = m.bytes.to_vec();
        bytes[0] = b' ';
        fs::write(&mpath, &bytes).unwrap();
        let msg = store
            .resolve(&ImageRef::Tag("v1".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&mpath.display().to_string()), "{msg}");
        assert!(msg.contains(&m.digest.to_string()), "{msg}");
        assert!(
            msg.contains(&Digest::sha256_of(&bytes).to_string()),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn only_needs_exactly_one_image() {
        let (_d, store) = new_layout();
        let err = store
            .resolve(&ImageRef::Only)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds no images") && err.contains("oci:"),
            "{err}"
        );
        assert_eq!(store.resolve_digest(&ImageRef::Only).await.unwrap(), None);

        let (a, b) = (manifest(1), manifest(2));
        for (name, m) in [("first", &a), ("second", &b)] {
            store.put_manifest(m).await.unwrap();
            store.set_tag(name, m).await.unwrap();
        }
        let err = store
            .resolve(&ImageRef::Only)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&store.describe()) && err.contains("first, second"),
            "{err}"
        );
        assert!(store.resolve_digest(&ImageRef::Only).await.is_err());
    }

    #[test]
    fn malformed_layout_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let err = LayoutStore::open(root.join("absent")).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");

        let err = LayoutStore::open(root).unwrap_err().to_string();
        assert!(err.contains("oci-layout"), "{err}");

        fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
        fs::write(
            root.join("index.json"),
            r#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        let err = LayoutStore::open(root).unwrap_err().to_string();
        assert!(err.contains("oci-layout") && err.contains("2.0.0"), "{err}");

        fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        LayoutStore::open(root).unwrap();
        for bad in [
            "{not json",
            r#"{"schemaVersion":2,"manifests":{}}"#,
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#,
        ] {
            fs::write(root.join("index.json"), bad).unwrap();
            let err = LayoutStore::open(root).unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains("index.json"), "{err}");
        }
    }
}
