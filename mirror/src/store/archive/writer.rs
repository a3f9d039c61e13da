//! Writing an archive: blob entries appended one at a time under a lock,
//! each verified as it streams and cut back when it fails; a `.partial`
//! left by an interrupted run continued from its last whole, verified
//! entry; `oci-layout`, `index.json` (and `manifest.json` for `docker
//! load`) and the end written by `finish`, then the rename (see the module
//! documentation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use futures::StreamExt;
use registry_client::{
    media_type, Descriptor, Digest, Hasher, Manifest, Verifier, MAX_MANIFEST_SIZE,
};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::docker::{self, DockerEntry, MANIFEST_JSON};
use super::tar::{
    blob_digest, blob_name, header_bytes, padding, read_header, round_up, EntryHeader,
    END_OF_ARCHIVE,
};
use super::{IMAGE_NAME, OMITTED_BLOBS};
use crate::store::oci_index::{as_referrer, layout_marker, OciIndex};
use crate::store::{BlobFeed, BlobStream, ImageRef, ImageTarget, Store, StoreError, StoreId};

const WRITE_BUFFER: usize = 1024 * 1024;

/// An archive being written: a copy target. Nothing appears under its path
/// until [`ImageTarget::finish`](crate::store::ImageTarget::finish).
#[derive(Debug)]
pub struct ArchiveWriter {
    id: StoreId,
    path: PathBuf,
    /// Canonical parent directory plus file name: the blob domain.
    canonical: PathBuf,
    temp: PathBuf,
    file: tokio::sync::Mutex<WriteState>,
    index: StdMutex<Contents>,
    /// Original references by name, recorded by the planner.
    references: StdMutex<HashMap<String, String>>,
    /// Blobs the receiver already holds (a delta's base): answered as
    /// present, so the engine leaves them out.
    held: HashMap<Digest, u64>,
    /// The held blobs an image of this bundle needed: recorded in `index.json`.
    omitted: StdMutex<BTreeSet<Digest>>,
    /// Also write `manifest.json`, for `docker load` (see [`docker`]).
    docker: bool,
    done: AtomicBool,
}

#[derive(Debug)]
struct WriteState {
    /// `None` once finished (or after a failure that lost the handle).
    out: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// The end of the last whole entry.
    committed: u64,
    /// Bytes past `committed` may have been written.
    dirty: bool,
}

#[derive(Debug, Default)]
struct Contents {
    blobs: HashMap<Digest, u64>,
    /// Where each blob's data starts in the temporary file.
    offsets: HashMap<Digest, u64>,
    /// The `manifest.json` entry of each name (with `docker`).
    docker: HashMap<String, DockerEntry>,
    /// The images named so far (sorted by name when written).
    index: OciIndex,
}

impl ArchiveWriter {
    /// Start an archive to be renamed to `path` when finished. The directory
    /// must exist; a file at `path` is replaced only then.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let file_name = path
            .file_name()
            .ok_or_else(|| StoreError::invalid(path.display().to_string(), "names no file"))?
            .to_string_lossy()
            .into_owned();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = fs::canonicalize(&parent).map_err(|e| {
            StoreError::io(format!("opening the directory of {}", path.display()), e)
        })?;
        if path.is_dir() {
            return Err(StoreError::invalid(
                path.display().to_string(),
                "is a directory (an OCI layout directory is written with oci:PATH)",
            ));
        }
        // One name per bundle, so a rerun finds what a killed run wrote.
        let temp = dir.join(format!("{file_name}.partial"));
        // Never through a link planted under that name.
        let mut file = crate::regular_file::open(
            &temp,
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            crate::regular_file::Links::Refuse,
        )
        .map_err(|e| StoreError::io(format!("creating {}", temp.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::invalid(
                    temp.display().to_string(),
                    "another run is writing this bundle now",
                ))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(format!("locking {}", temp.display()), e))
            }
        }
        let (found, committed) = whole_entries(&mut file)
            .map_err(|e| StoreError::io(format!("reading {}", temp.display()), e))?;
        // Cut back to the last whole, verified entry and continue there.
        file.set_len(committed)
            .and_then(|_| file.seek(SeekFrom::Start(committed)))
            .map_err(|e| StoreError::io(format!("cutting back {}", temp.display()), e))?;
        let blobs: HashMap<Digest, u64> = found
            .iter()
            .map(|(d, (size, _))| (d.clone(), *size))
            .collect();
        let offsets = found.into_iter().map(|(d, (_, at))| (d, at)).collect();
        if !blobs.is_empty() {
            tracing::info!(
                file = %temp.display(),
                blobs = blobs.len(),
                bytes = committed,
                "continuing an interrupted archive"
            );
        }
        Ok(ArchiveWriter {
            id: StoreId::Archive {
                path: path.clone(),
                canonical: dir.join(&file_name),
            },
            path,
            canonical: dir.join(&file_name),
            temp,
            file: tokio::sync::Mutex::new(WriteState {
                out: Some(tokio::io::BufWriter::with_capacity(
                    WRITE_BUFFER,
                    tokio::fs::File::from_std(file),
                )),
                committed,
                dirty: false,
            }),
            index: StdMutex::new(Contents {
                blobs,
                offsets,
                docker: HashMap::new(),
                index: OciIndex::new(),
            }),
            references: StdMutex::new(HashMap::new()),
            held: HashMap::new(),
            omitted: StdMutex::default(),
            docker: false,
            done: AtomicBool::new(false),
        })
    }

    /// Make this a delta bundle: blobs in `held` (digest and size) are left
    /// out, and the ones images needed are listed in `index.json`.
    pub fn leave_out(mut self, held: HashMap<Digest, u64>) -> Self {
        self.held = held;
        self
    }

    /// Make the archive one `docker load` and `podman load` take too: a
    /// `manifest.json` naming each image's config and layers. An image it
    /// cannot describe (see [`docker`]) fails when it is named.
    pub fn docker_loadable(mut self) -> Self {
        self.docker = true;
        self
    }

    /// The temporary file the archive is written to.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Record the original full reference (`HOST/REPO:TAG`) of the image
    /// that will be named `name`, for the `io.containerd.image.name` annotation.
    pub fn record_reference(&self, name: &str, reference: &str) {
        self.references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), reference.to_string());
    }

    fn contents(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_err(&self, e: io::Error) -> StoreError {
        StoreError::io(format!("writing {}", self.temp.display()), e)
    }

    /// Cut the file back to the last whole entry if a write stopped midway.
    async fn rewind(&self, st: &mut WriteState) -> Result<(), StoreError> {
        if !st.dirty {
            return Ok(());
        }
        let out = st.out.take().ok_or_else(|| self.broken())?;
        // Dropping the buffer discards what the failed entry left in it.
        let mut file = out.into_inner();
        file.set_len(st.committed)
            .await
            .map_err(|e| self.write_err(e))?;
        file.seek(SeekFrom::Start(st.committed))
            .await
            .map_err(|e| self.write_err(e))?;
        st.out = Some(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file));
        st.dirty = false;
        Ok(())
    }

    fn broken(&self) -> StoreError {
        StoreError::invalid(
            self.describe(),
            "the archive is finished or was left broken by an earlier failure",
        )
    }

    /// Append one entry named `name` holding `desc.size` bytes from `data`,
    /// verified against `desc`; on any failure the file is cut back.
    async fn append(
        &self,
        st: &mut WriteState,
        name: &str,
        desc: &Descriptor,
        data: BlobStream,
    ) -> Result<(), StoreError> {
        self.rewind(st).await?;
        st.dirty = true;
        let result = self.append_inner(st, name, desc, data).await;
        match result {
            Ok(len) => {
                st.committed += len;
                st.dirty = false;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.rewind(st).await {
                    tracing::warn!(error = %cut, "could not cut the archive back");
                }
                Err(e)
            }
        }
    }

    async fn append_inner(
        &self,
        st: &mut WriteState,
        name: &str,
        desc: &Descriptor,
        mut data: BlobStream,
    ) -> Result<u64, StoreError> {
        let out = st.out.as_mut().ok_or_else(|| self.broken())?;
        let header = header_bytes(name, desc.size);
        out.write_all(&header)
            .await
            .map_err(|e| self.write_err(e))?;
        let mut verifier = Verifier::new(desc.digest.clone(), Some(desc.size));
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            verifier.update(&chunk)?;
            out.write_all(&chunk).await.map_err(|e| self.write_err(e))?;
        }
        drop(data);
        verifier.finish()?;
        out.write_all(padding(desc.size))
            .await
            .map_err(|e| self.write_err(e))?;
        // Whole entries leave the buffer at once: what a failure discards
        // from it is only ever the failed entry's.
        out.flush().await.map_err(|e| self.write_err(e))?;
        Ok(header.len() as u64 + round_up(desc.size))
    }

    /// Write a blob entry unless the archive holds it already.
    async fn put_blob(
        &self,
        st: &mut WriteState,
        desc: &Descriptor,
        data: BlobStream,
    ) -> Result<(), StoreError> {
        if self.contents().blobs.contains_key(&desc.digest) {
            return Ok(());
        }
        let name = blob_name(&desc.digest);
        self.append(st, &name, desc, data).await?;
        let mut contents = self.contents();
        contents.blobs.insert(desc.digest.clone(), desc.size);
        // The entry just written ends at `committed`.
        let at = st.committed - round_up(desc.size);
        contents.offsets.insert(desc.digest.clone(), at);
        Ok(())
    }

    /// A manifest this archive holds, read back from its entry and
    /// verified (the engine may not hand over a child it found written).
    async fn stored_manifest(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        let (size, at) = {
            let c = self.contents();
            (c.blobs.get(digest).copied(), c.offsets.get(digest).copied())
        };
        let (Some(size), Some(at)) = (size, at) else {
            return Err(StoreError::NotFound(format!(
                "manifest {digest} in {}",
                self.describe()
            )));
        };
        if size > MAX_MANIFEST_SIZE {
            return Err(registry_client::Error::TooLarge {
                what: format!("manifest {digest}"),
                url: self.describe(),
                limit: MAX_MANIFEST_SIZE,
            }
            .into());
        }
        let read = async {
            let mut f = tokio::fs::File::open(&self.temp).await?;
            f.seek(SeekFrom::Start(at)).await?;
            let mut buf = vec![0u8; size as usize];
            tokio::io::AsyncReadExt::read_exact(&mut f, &mut buf).await?;
            Ok::<_, io::Error>(buf)
        };
        let bytes = read.await.map_err(|e| {
            StoreError::io(
                format!("reading {digest} back from {}", self.temp.display()),
                e,
            )
        })?;
        let mut verifier = Verifier::new(digest.clone(), Some(size));
        verifier.update(&bytes)?;
        verifier.finish()?;
        Ok(Bytes::from(bytes))
    }

    /// The `manifest.json` entry of the image `manifest` named `name`.
    async fn docker_entry(
        &self,
        name: &str,
        manifest: &Manifest,
    ) -> Result<DockerEntry, StoreError> {
        let refuse = |why: String| {
            StoreError::invalid(
                format!("{}: {name:?} for docker load", self.describe()),
                why,
            )
        };
        let reference = self
            .references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        let repo_tags = docker::repo_tags(name, reference.as_deref()).map_err(refuse)?;
        let image =
            match docker::chosen_manifest(&manifest.media_type, &manifest.bytes).map_err(refuse)? {
                None => manifest.bytes.clone(),
                Some(child) => self.stored_manifest(&child.digest).await?,
            };
        let contents = self.contents();
        docker::entry(&image, repo_tags, &|d| contents.blobs.contains_key(d)).map_err(refuse)
    }

    async fn put_small(
        &self,
        st: &mut WriteState,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let bytes = Bytes::from(bytes);
        let desc = Descriptor::new(
            media_type::OCTET_STREAM,
            Digest::sha256_of(&bytes),
            bytes.len() as u64,
        );
        let data = futures::stream::iter([Ok(bytes)]).boxed();
        self.append(st, name, &desc, data).await
    }
}

impl Drop for ArchiveWriter {
    /// An unfinished archive keeps its temporary file when it holds whole
    /// entries (a rerun continues from them); an empty one is removed.
    fn drop(&mut self) {
        if !self.done.load(Ordering::SeqCst) && self.file.get_mut().committed == 0 {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The blob entries at the start of a temporary archive this writer left
/// (interrupted), each checked against the header this writer would write
/// and against its digest, up to the first that is not whole or not right;
/// and where that one starts. Anything after (a cut entry, `oci-layout`,
/// `index.json`) is written again.
/// Each blob maps to its size and where its data starts.
type Found = HashMap<Digest, (u64, u64)>;

fn whole_entries(file: &mut fs::File) -> io::Result<(Found, u64)> {
    let len = file.metadata()?.len();
    let mut blobs = HashMap::new();
    let mut pos = 0u64;
    while let Some(EntryHeader {
        name,
        size,
        len: header_len,
    }) = read_header(file, pos, len)?
    {
        let Some(digest) = blob_digest(&name) else {
            break;
        };
        // A size read back from a damaged file may be anything: no wrap.
        let end = match pos
            .checked_add(header_len)
            .and_then(|e| e.checked_add(round_up(size)))
        {
            Some(end) if end <= len => end,
            _ => break,
        };
        // The exact header bytes this writer writes for it.
        let mut written = vec![0u8; header_len as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut written)?;
        if written != header_bytes(&name, size) {
            break;
        }
        let mut hasher = Hasher::new(digest.algorithm());
        hasher.update_from((&mut *file).take(size))?;
        if hasher.finish() != digest {
            break;
        }
        blobs.insert(digest, (size, pos + header_len));
        pos = end;
    }
    Ok((blobs, pos))
}

impl Store for ArchiveWriter {
    fn id(&self) -> &StoreId {
        &self.id
    }
}

#[async_trait::async_trait]
impl ImageTarget for ArchiveWriter {
    async fn current(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        // A new archive holds nothing under any name until it is written.
        match reference {
            ImageRef::Digest(d) => Ok(self.contents().blobs.contains_key(d).then(|| d.clone())),
            _ => Ok(None),
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
        let desc = Descriptor::new(manifest.media_type.clone(), manifest.digest.clone(), size);
        let data = futures::stream::iter([Ok(manifest.bytes.clone())]).boxed();
        let mut st = self.file.lock().await;
        self.put_blob(&mut st, &desc, data).await?;
        // A referrer gets an unnamed entry in the index.json `finish` writes.
        if let Some((_, entry)) = as_referrer(manifest) {
            self.contents().index.add_unnamed(&entry);
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
        let mut more = BTreeMap::new();
        if let Some(r) = self
            .references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tag)
        {
            more.insert(IMAGE_NAME.to_string(), r.clone());
        }
        match self.contents().blobs.get(&manifest.digest) {
            Some(&n) if n == manifest.bytes.len() as u64 => {}
            _ => {
                return Err(StoreError::NotFound(format!(
                    "manifest {} in {} (store it before naming it {tag:?})",
                    manifest.digest,
                    self.describe()
                )))
            }
        }
        // An image docker's format cannot hold fails here, unnamed.
        let docker = match self.docker {
            true => Some(self.docker_entry(tag, manifest).await?),
            false => None,
        };
        let mut contents = self.contents();
        if let Some(entry) = docker {
            contents.docker.insert(tag.to_string(), entry);
        }
        contents.index.set_name(tag, manifest, more);
        Ok(())
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        if let Some(n) = self.contents().blobs.get(digest) {
            return Ok(Some(*n));
        }
        // Asked only for configs and layers (manifests are always written):
        // one the receiver holds is left out, and recorded as such.
        match self.held.get(digest) {
            Some(n) => {
                self.omitted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.clone());
                Ok(Some(*n))
            }
            None => Ok(None),
        }
    }

    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        let mut st = self.file.lock().await;
        self.put_blob(&mut st, desc, data).await
    }

    /// Takes the lock before opening the source, so waiting writers hold no
    /// idle download open.
    async fn write_blob_from(
        &self,
        desc: &Descriptor,
        feed: &dyn BlobFeed,
    ) -> Result<(), StoreError> {
        let mut st = self.file.lock().await;
        if self.contents().blobs.contains_key(&desc.digest) {
            return Ok(());
        }
        let data = feed.open(0).await?;
        self.put_blob(&mut st, desc, data).await
    }

    async fn finish(&self) -> Result<(), StoreError> {
        let mut st = self.file.lock().await;
        if self.done.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut index = self.contents().index.clone();
        index.sort_by_name();
        // Referrers alone (their images failed before being named) are no bundle.
        if !index.has_names() {
            // Every image failed: no bundle (nor an empty one) is written.
            st.out = None;
            self.done.store(true, Ordering::SeqCst);
            let _ = tokio::fs::remove_file(&self.temp).await;
            return Ok(());
        }
        self.put_small(&mut st, "oci-layout", layout_marker())
            .await?;
        let omitted: Vec<String> = self
            .omitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|d| d.to_string())
            .collect();
        if !omitted.is_empty() {
            index.annotate(OMITTED_BLOBS, omitted.join(" "));
        }
        self.put_small(&mut st, "index.json", index.to_bytes())
            .await?;
        if self.docker {
            let entries: Vec<DockerEntry> = {
                let contents = self.contents();
                index
                    .names()
                    .iter()
                    .filter_map(|(name, _)| contents.docker.get(name).cloned())
                    .collect()
            };
            self.put_small(&mut st, MANIFEST_JSON, docker::manifest_json(&entries))
                .await?;
        }
        let mut out = st.out.take().ok_or_else(|| self.broken())?;
        out.write_all(&END_OF_ARCHIVE)
            .await
            .map_err(|e| self.write_err(e))?;
        out.flush().await.map_err(|e| self.write_err(e))?;
        let file = out.into_inner();
        file.sync_all().await.map_err(|e| self.write_err(e))?;
        drop(file);
        tokio::fs::rename(&self.temp, &self.path)
            .await
            .map_err(|e| {
                StoreError::io(
                    format!(
                        "renaming {} to {}",
                        self.temp.display(),
                        self.path.display()
                    ),
                    e,
                )
            })?;
        self.done.store(true, Ordering::SeqCst);
        if let Some(dir) = self.canonical.parent() {
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::reader::ArchiveReader;
    use super::super::tar::BLOCK;
    use super::super::testing::*;
    use super::*;
    use crate::store::ImageSource;
    use futures::stream;

    #[test]
    fn a_partial_that_is_a_planted_link_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("b.tar.partial")).unwrap();
        let err = ArchiveWriter::create(dir.path().join("b.tar"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn a_damaged_partial_claiming_a_huge_entry_is_cut_there_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.partial");
        let digest = Digest::sha256_of(b"x");
        let mut bytes = header_bytes(&blob_name(&digest), u64::MAX - 3);
        bytes.extend_from_slice(&[0u8; 1024]);
        fs::write(&path, bytes).unwrap();
        let (blobs, resume_at) = whole_entries(&mut fs::File::open(&path).unwrap()).unwrap();
        assert!(blobs.is_empty());
        assert_eq!(resume_at, 0, "the damaged entry is written again");
    }

    #[tokio::test]
    async fn writes_a_bundle_that_reads_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.tar");
        let w = ArchiveWriter::create(&path).unwrap();
        let big: Vec<u8> = (0..700_001u32).map(|i| (i % 251) as u8).collect();
        let small = b"small".to_vec();
        w.write_blob(&desc(&big), chunks(&big, 10_000))
            .await
            .unwrap();
        // A stream that does not match is refused and leaves no entry.
        let err = w
            .write_blob(&desc(b"hello world"), chunks(b"hello wurld", 3))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), registry_client::ErrorKind::Integrity, "{err}");
        let failing = stream::iter([
            Ok(Bytes::from_static(b"hel")),
            Err(StoreError::io(
                "source went away",
                io::Error::from(io::ErrorKind::ConnectionReset),
            )),
        ])
        .boxed();
        assert!(w.write_blob(&desc(b"hello world"), failing).await.is_err());
        w.write_blob(&desc(&small), chunks(&small, 2))
            .await
            .unwrap();
        // The same blob again is not written twice.
        w.write_blob(&desc(&small), chunks(&small, 2))
            .await
            .unwrap();
        assert_eq!(w.blob_size(&desc(&small).digest).await.unwrap(), Some(5));
        assert_eq!(
            w.blob_size(&desc(b"hello world").digest).await.unwrap(),
            None
        );
        let m = manifest_over(&[&big, &small]);
        w.put_manifest(&m).await.unwrap();
        w.record_reference("app:v1", "reg.example:5000/team/app:v1");
        w.set_tag("app:v1", &m).await.unwrap();
        assert!(!path.exists(), "nothing under the final name before finish");
        assert_eq!(listing(dir.path()).len(), 1);
        assert_eq!(listing(dir.path())[0], "bundle.tar.partial");
        w.finish().await.unwrap();
        assert_eq!(listing(dir.path()), vec!["bundle.tar".to_string()]);

        let names = entry_names(&path);
        let small_entry = blob_name(&desc(&small).digest);
        assert_eq!(names.iter().filter(|n| **n == small_entry).count(), 1);
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(&names[3..], ["oci-layout", "index.json"]);

        let r = ArchiveReader::open(&path).unwrap();
        let got = r.resolve(&ImageRef::Tag("app:v1".into())).await.unwrap();
        assert_eq!(got, m);
        assert_eq!(r.resolve(&ImageRef::Only).await.unwrap(), m);
        let names = r.names();
        assert_eq!(
            names[0].1.annotations[IMAGE_NAME],
            "reg.example:5000/team/app:v1"
        );
        assert_eq!(
            read_all(r.read_blob(&desc(&big)).await.unwrap())
                .await
                .unwrap(),
            big
        );
        assert_eq!(
            read_all(r.read_blob(&desc(&small)).await.unwrap())
                .await
                .unwrap(),
            small
        );
        // A descriptor with another size is refused before any byte, naming the entry.
        let mut wrong = desc(&small);
        wrong.size = 6;
        let err = r.read_blob(&wrong).await.err().unwrap().to_string();
        assert!(
            err.contains(&small_entry) && err.contains("says 6"),
            "{err}"
        );
        let err = r.resolve(&ImageRef::Tag("nope".into())).await.unwrap_err();
        assert!(err.to_string().contains("app:v1"), "{err}");
    }

    /// A manifest whose subject is `subject`, of `artifact_type`.
    fn referrer_of(subject: &Manifest, artifact_type: &str) -> Manifest {
        let bytes = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": {"mediaType": media_type::OCI_EMPTY, "digest": Digest::sha256_of(b"{}").to_string(), "size": 2},
                "layers": [],
                "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.bytes.len()},
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
    async fn referrers_get_unnamed_entries_the_reader_lists_by_subject() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signed.tar");
        let w = ArchiveWriter::create(&path).unwrap();
        let image = manifest_over(&[]);
        let sig = referrer_of(&image, "x/sig");
        let sbom = referrer_of(&image, "x/sbom");
        let sbom_sig = referrer_of(&sbom, "x/sig");
        w.write_blob(&desc(b"{}"), chunks(b"{}", 2)).await.unwrap();
        w.put_manifest(&image).await.unwrap();
        for m in [&sig, &sbom, &sbom_sig, &sig] {
            w.put_manifest(m).await.unwrap();
        }
        w.set_tag("app:v1", &image).await.unwrap();
        w.finish().await.unwrap();
        let r = ArchiveReader::open(&path).unwrap();
        // One name; the referrers unnamed, once each.
        assert_eq!(r.list_tags().await.unwrap(), vec!["app:v1".to_string()]);
        assert_eq!(r.resolve(&ImageRef::Only).await.unwrap(), image);
        assert_eq!(r.referrer_entries().await.unwrap().len(), 3);
        let listed = |v: Vec<Descriptor>| {
            let mut d: Vec<Digest> = v.into_iter().map(|d| d.digest).collect();
            d.sort();
            d
        };
        let mut both = vec![sig.digest.clone(), sbom.digest.clone()];
        both.sort();
        assert_eq!(listed(r.referrers(&image.digest, &[]).await.unwrap()), both);
        assert_eq!(
            listed(
                r.referrers(&image.digest, &["x/sbom".into()])
                    .await
                    .unwrap()
            ),
            vec![sbom.digest.clone()]
        );
        let of_sbom = r.referrers(&sbom.digest, &[]).await.unwrap();
        assert_eq!(of_sbom.len(), 1);
        assert_eq!(of_sbom[0].digest, sbom_sig.digest);
        assert_eq!(of_sbom[0].artifact_type.as_deref(), Some("x/sig"));
        assert_eq!(of_sbom[0].size, sbom_sig.bytes.len() as u64);

        // Referrers whose image was never named make no bundle.
        let lonely = dir.path().join("lonely.tar");
        let w = ArchiveWriter::create(&lonely).unwrap();
        w.put_manifest(&image).await.unwrap();
        w.put_manifest(&sig).await.unwrap();
        w.finish().await.unwrap();
        assert!(!lonely.exists());
        assert_eq!(listing(dir.path()), vec!["signed.tar".to_string()]);
    }

    /// An image manifest over an image config and gzip layers (made-up
    /// bytes: the writer checks names and presence, not tar contents).
    fn docker_image(config: &[u8], layers: &[&[u8]]) -> Manifest {
        let bytes = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(config).to_string(), "size": config.len()},
                "layers": layers.iter().map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::sha256_of(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
            }))
            .unwrap(),
        );
        Manifest {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    fn index_of(children: &[(&Manifest, &str)]) -> Manifest {
        let bytes = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": children.iter().map(|(m, arch)| serde_json::json!({"mediaType": m.media_type, "digest": m.digest.to_string(), "size": m.bytes.len(), "platform": {"os": "linux", "architecture": arch}})).collect::<Vec<_>>(),
            }))
            .unwrap(),
        );
        Manifest {
            media_type: media_type::OCI_INDEX.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    /// `manifest.json` of a finished archive, parsed.
    fn manifest_json_of(path: &Path) -> serde_json::Value {
        let mut ar = ::tar::Archive::new(fs::File::open(path).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some(MANIFEST_JSON) {
                return serde_json::from_reader(&mut e).unwrap();
            }
        }
        panic!("no manifest.json in {}", path.display());
    }

    #[tokio::test]
    async fn a_docker_loadable_bundle_names_one_platform_per_image_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.tar");
        let (config_a, config_b, layer) = (
            b"{\"os\":\"linux\"}".to_vec(),
            b"{}".to_vec(),
            b"layer".to_vec(),
        );
        let amd = docker_image(&config_a, &[&layer]);
        let arm = docker_image(&config_b, &[&layer]);
        let one = index_of(&[(&amd, "amd64")]);
        let two = index_of(&[(&amd, "amd64"), (&arm, "arm64")]);
        let w = ArchiveWriter::create(&path).unwrap().docker_loadable();
        for b in [&config_a, &config_b, &layer] {
            w.write_blob(&desc(b), chunks(b, 3)).await.unwrap();
        }
        for m in [&amd, &arm] {
            w.put_manifest(m).await.unwrap();
        }
        // Killed here: the rerun finds the children written and is never
        // handed them again; the docker entry reads the child back.
        drop(w);
        let w = ArchiveWriter::create(&path).unwrap().docker_loadable();
        for m in [&one, &two] {
            w.put_manifest(m).await.unwrap();
        }
        w.record_reference("team/app:v1", "reg.example:5000/team/app:v1");
        w.set_tag("team/app:v1", &one).await.unwrap();
        w.set_tag("team/app:amd", &amd).await.unwrap();
        let err = w
            .set_tag("team/app:multi", &two)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"team/app:multi\"")
                && err.contains("linux/amd64, linux/arm64")
                && err.contains("--platform"),
            "{err}"
        );
        w.finish().await.unwrap();

        let names = entry_names(&path);
        assert_eq!(
            &names[names.len() - 3..],
            ["oci-layout", "index.json", MANIFEST_JSON]
        );
        // Both names of the amd64 image in one entry, config and layers by
        // their blob entries; the refused image named nowhere.
        assert_eq!(
            manifest_json_of(&path),
            serde_json::json!([{
                "Config": blob_name(&desc(&config_a).digest),
                "RepoTags": ["team/app:amd", "reg.example:5000/team/app:v1"],
                "Layers": [blob_name(&desc(&layer).digest)],
            }])
        );
        let r = ArchiveReader::open(&path).unwrap();
        assert_eq!(
            r.list_tags().await.unwrap(),
            ["team/app:amd", "team/app:v1"]
        );
        assert_eq!(
            r.resolve(&ImageRef::Tag("team/app:v1".into()))
                .await
                .unwrap(),
            one
        );

        // Without docker_loadable: no manifest.json, and every index named.
        let plain = dir.path().join("p.tar");
        let w = ArchiveWriter::create(&plain).unwrap();
        w.put_manifest(&arm).await.unwrap();
        w.put_manifest(&two).await.unwrap();
        w.set_tag("multi", &two).await.unwrap();
        w.finish().await.unwrap();
        assert!(!entry_names(&plain).contains(&MANIFEST_JSON.to_string()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_leave_only_whole_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.tar");
        let w = std::sync::Arc::new(ArchiveWriter::create(&path).unwrap());
        let blobs: Vec<Vec<u8>> = (0..24u32)
            .map(|i| {
                (0..(3000 + i * 7919))
                    .map(|j| (j * (i + 3)) as u8)
                    .collect()
            })
            .collect();
        let tasks: Vec<_> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (w, b) = (w.clone(), b.clone());
                tokio::spawn(async move {
                    let d = desc(&b);
                    if i % 5 == 0 {
                        // Fails after some bytes: must leave nothing behind.
                        let half = Bytes::copy_from_slice(&b[..b.len() / 2]);
                        let body = stream::iter([
                            Ok(half),
                            Err(StoreError::io(
                                "gone",
                                io::Error::from(io::ErrorKind::BrokenPipe),
                            )),
                        ])
                        .boxed();
                        assert!(w.write_blob(&d, body).await.is_err());
                    } else {
                        w.write_blob(&d, chunks(&b, 1000)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let m = manifest_over(&[]);
        w.put_manifest(&m).await.unwrap();
        w.set_tag("x", &m).await.unwrap();
        w.finish().await.unwrap();
        let r = ArchiveReader::open(&path).unwrap();
        for (i, b) in blobs.iter().enumerate() {
            let d = desc(b);
            if i % 5 == 0 {
                assert!(matches!(
                    r.read_blob(&d).await,
                    Err(StoreError::NotFound(_))
                ));
            } else {
                assert_eq!(&read_all(r.read_blob(&d).await.unwrap()).await.unwrap(), b);
            }
        }
        // 19 blobs, the manifest, oci-layout and index.json.
        assert_eq!(entry_names(&path).len(), 22);
    }

    #[tokio::test]
    async fn long_blob_names_use_gnu_long_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        let w = ArchiveWriter::create(&path).unwrap();
        let data = b"sha512 content";
        let d = Descriptor::new(
            media_type::OCTET_STREAM,
            Digest::of(registry_client::Algorithm::Sha512, data),
            data.len() as u64,
        );
        w.write_blob(&d, chunks(data, 4)).await.unwrap();
        let m = manifest_over(&[]);
        w.put_manifest(&m).await.unwrap();
        w.set_tag("x", &m).await.unwrap();
        w.finish().await.unwrap();
        assert!(entry_names(&path).contains(&blob_name(&d.digest)));
        let r = ArchiveReader::open(&path).unwrap();
        assert_eq!(
            read_all(r.read_blob(&d).await.unwrap()).await.unwrap(),
            data
        );
    }

    #[tokio::test]
    async fn an_unfinished_bundle_keeps_only_its_temporary_file_and_an_empty_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        // Nothing whole written: nothing left.
        drop(ArchiveWriter::create(&path).unwrap());
        assert!(listing(dir.path()).is_empty());
        let w = ArchiveWriter::create(&path).unwrap();
        w.write_blob(&desc(b"abc"), chunks(b"abc", 1))
            .await
            .unwrap();
        drop(w);
        assert_eq!(listing(dir.path()), vec!["b.tar.partial".to_string()]);
        // Nothing named: finishing writes no bundle, and drops the temporary file.
        let w = ArchiveWriter::create(&path).unwrap();
        w.finish().await.unwrap();
        assert!(listing(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_rerun_continues_after_the_last_whole_verified_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        let blobs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 700 + i as usize]).collect();
        let long = Descriptor::new(
            media_type::OCTET_STREAM,
            Digest::of(registry_client::Algorithm::Sha512, b"long name"),
            9,
        );
        let w = ArchiveWriter::create(&path).unwrap();
        // Two writers of one bundle at once are refused.
        let err = ArchiveWriter::create(&path).unwrap_err().to_string();
        assert!(err.contains("another run"), "{err}");
        w.write_blob(&long, chunks(b"long name", 4)).await.unwrap();
        for b in &blobs {
            w.write_blob(&desc(b), chunks(b, 100)).await.unwrap();
        }
        drop(w);
        let temp = dir.path().join("b.tar.partial");
        // Killed mid-entry: a header and half a blob after the whole ones;
        // and the third entry's content damaged.
        let mut bytes = fs::read(&temp).unwrap();
        let third = bytes.len() - round_up(702) as usize - BLOCK as usize;
        bytes[third + BLOCK as usize + 10] ^= 1;
        bytes.extend_from_slice(&header_bytes(&blob_name(&desc(b"next").digest), 4000));
        bytes.extend_from_slice(&[7u8; 1000]);
        fs::write(&temp, &bytes).unwrap();

        let w = ArchiveWriter::create(&path).unwrap();
        assert_eq!(w.blob_size(&long.digest).await.unwrap(), Some(9));
        assert_eq!(
            w.blob_size(&desc(&blobs[1]).digest).await.unwrap(),
            Some(701)
        );
        assert_eq!(w.blob_size(&desc(&blobs[2]).digest).await.unwrap(), None);
        assert_eq!(fs::metadata(&temp).unwrap().len(), third as u64);
        w.write_blob(&desc(&blobs[2]), chunks(&blobs[2], 64))
            .await
            .unwrap();
        let m = manifest_over(&[&blobs[0], &blobs[1], &blobs[2]]);
        w.put_manifest(&m).await.unwrap();
        w.set_tag("x", &m).await.unwrap();
        w.finish().await.unwrap();
        assert_eq!(listing(dir.path()), vec!["b.tar".to_string()]);
        let r = ArchiveReader::open(&path).unwrap();
        for b in &blobs {
            assert_eq!(
                &read_all(r.read_blob(&desc(b)).await.unwrap())
                    .await
                    .unwrap(),
                b
            );
        }
        assert_eq!(entry_names(&path).len(), 7);
    }
}
