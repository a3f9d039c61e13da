//! OCI archives (`oci-archive:PATH[:NAME]`): a tar of an OCI image layout
//! holding one or many images, for carrying images across an air gap.
//!
//! Format: tar entries `blobs/<alg>/<hex>` (each blob once, however many
//! images share it), then `oci-layout` and `index.json`. Each `index.json`
//! entry names its image with `org.opencontainers.image.ref.name` (the NAME,
//! as `oci:` does) and, when the image came from a registry, records the
//! source's full `HOST/REPO:TAG` in `io.containerd.image.name`: the
//! annotation containerd's `ctr export` writes and `ctr import` reads to
//! restore names, so peers understand it and our import can restore
//! repositories and tags from it.
//!
//! Writing ([`ArchiveWriter`]): a tar is sequential, the engine is not. Each
//! blob becomes one entry, appended under a lock: the entry header carries
//! the descriptor's size, the bytes go straight from the source into the
//! file (one chunk in memory) and are hashed on the way. A stream that fails
//! or does not match cuts the file back to the end of the last whole entry,
//! so the tar never holds a partial or wrong entry. Writers of other blobs
//! wait for the lock, and a writer opens its source only once it holds the
//! lock (an opened but idle download would time out). Tags are kept in
//! memory; [`ImageStore::finish`] writes `oci-layout`, `index.json` and the
//! end of the archive, fsyncs, and renames the temporary file
//! (`PATH.partial`, beside `PATH`) to `PATH`. Until then nothing is under
//! `PATH`. The temporary file is locked while written (a second run on the
//! same bundle is refused); one left by a killed or interrupted run is
//! continued: its blob entries are read back, each checked against the
//! header this writer writes and against its digest, the file is cut back
//! after the last whole, verified one, and those blobs count as written.
//! A writer dropped before writing a whole entry removes its file.
//! `finish` runs after every image of the run, failed ones included: the
//! bundle holds the images that succeeded (entries sorted by name; blobs of
//! failed images may remain, unnamed) and the run still exits non-zero. A
//! bundle whose every image failed is not written at all.
//!
//! Reading ([`ArchiveReader`]): the tar is indexed once when opened, and
//! hostile or malformed content is refused then, naming the entry: absolute
//! paths, `..`, links, devices, names that are not `index.json`,
//! `oci-layout` or `blobs/<alg>/<hex>`, duplicate names with different
//! content, entries that claim more bytes than the file holds, more than a
//! little data after the last entry, and an `index.json` naming a manifest
//! the archive does not hold. Blobs are then served by seeking to their
//! entry, verified against their digest and size as they stream; an entry
//! whose size differs from the descriptor's is refused before any byte.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex as StdMutex;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use registry_client::{
    media_type, Descriptor, Digest, Hasher, Manifest, Verifier, MAX_MANIFEST_SIZE,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::layout::{list_names, media_type_in, parse_index, REF_NAME};
use super::{BlobFeed, BlobStream, ImageRef, ImageStore, StoreError};

/// The annotation holding an image's original full reference.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// The `index.json` annotation of a delta bundle: the blobs it leaves out
/// because the receiver already holds them (digests, space-separated).
/// Readers of plain OCI ignore it; `mirror import` checks the target holds
/// each, and `mirror verify` lists them as left out, not missing.
pub const OMITTED_BLOBS: &str = "dev.mirror.bundle.omitted-blobs";
const LAYOUT_VERSION: &str = "1.0.0";
const BLOCK: u64 = 512;
const READ_CHUNK: usize = 256 * 1024;
const WRITE_BUFFER: usize = 1024 * 1024;
/// `index.json` and `oci-layout` are small; larger ones are hostile.
const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;
/// Entries indexed at most (the index is held in memory).
const MAX_ENTRIES: usize = 1_000_000;
/// Bytes allowed after the last entry: the end-of-archive blocks and a tar
/// writer's padding to its record size (GNU tar: 10 KiB).
const MAX_TAIL: u64 = 64 * 1024;

fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

// ---------------------------------------------------------------- writing

/// An archive being written: a copy target. Nothing appears under its path
/// until [`ImageStore::finish`].
#[derive(Debug)]
pub struct ArchiveWriter {
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
    omitted: StdMutex<std::collections::BTreeSet<Digest>>,
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
    /// `index.json` entries (sorted by name when written).
    names: Vec<Value>,
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
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&temp)
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
        let (blobs, committed) = whole_entries(&mut file)
            .map_err(|e| StoreError::io(format!("reading {}", temp.display()), e))?;
        // Cut back to the last whole, verified entry and continue there.
        file.set_len(committed)
            .and_then(|_| file.seek(SeekFrom::Start(committed)))
            .map_err(|e| StoreError::io(format!("cutting back {}", temp.display()), e))?;
        if !blobs.is_empty() {
            tracing::info!(
                file = %temp.display(),
                blobs = blobs.len(),
                bytes = committed,
                "continuing an interrupted archive"
            );
        }
        Ok(ArchiveWriter {
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
                names: Vec::new(),
            }),
            references: StdMutex::new(HashMap::new()),
            held: HashMap::new(),
            omitted: StdMutex::default(),
            done: AtomicBool::new(false),
        })
    }

    /// Make this a delta bundle: blobs in `held` (digest and size) are left
    /// out, and the ones images needed are listed in `index.json`.
    pub fn leave_out(mut self, held: HashMap<Digest, u64>) -> Self {
        self.held = held;
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
        let pad = (round_up(desc.size) - desc.size) as usize;
        out.write_all(&[0u8; BLOCK as usize][..pad])
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
        self.contents().blobs.insert(desc.digest.clone(), desc.size);
        Ok(())
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
fn whole_entries(file: &mut fs::File) -> io::Result<(HashMap<Digest, u64>, u64)> {
    let len = file.metadata()?.len();
    let mut blobs = HashMap::new();
    let mut pos = 0u64;
    let mut block = [0u8; BLOCK as usize];
    loop {
        if pos + BLOCK > len {
            break;
        }
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut block)?;
        let header = tar::Header::from_byte_slice(&block);
        let mut header_len = BLOCK;
        let (name, size) = match header.entry_type() {
            tar::EntryType::GNULongName => {
                let Ok(n) = header.size() else { break };
                if n > 4096 || pos + BLOCK + round_up(n) + BLOCK > len {
                    break;
                }
                let mut name = vec![0u8; n as usize];
                file.read_exact(&mut name)?;
                header_len += round_up(n) + BLOCK;
                file.seek(SeekFrom::Start(pos + header_len - BLOCK))?;
                file.read_exact(&mut block)?;
                let real = tar::Header::from_byte_slice(&block);
                let Ok(size) = real.size() else { break };
                let name =
                    String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(&name)).into_owned();
                (name, size)
            }
            tar::EntryType::Regular => {
                let Ok(size) = header.size() else { break };
                (
                    String::from_utf8_lossy(&header.path_bytes()).into_owned(),
                    size,
                )
            }
            _ => break,
        };
        let Some(digest) = blob_digest(&name) else {
            break;
        };
        let end = pos + header_len + round_up(size);
        if end > len {
            break;
        }
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
        blobs.insert(digest, size);
        pos = end;
    }
    Ok((blobs, pos))
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// The tar header (GNU format) for a regular file `name` of `size` bytes,
/// preceded by a GNU long-name entry when the name needs more than 100
/// bytes (sha512 blobs).
fn header_bytes(name: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    let plain = |h: &mut tar::Header| {
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
    };
    if name.len() > 100 {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        plain(&mut h);
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(name.len() as u64 + 1);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(round_up(out.len() as u64) as usize, 0);
    }
    let mut h = tar::Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name.as_bytes()[..n]);
    plain(&mut h);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out
}

fn read_only_reader(what: &str) -> StoreError {
    StoreError::invalid(
        what,
        "an archive being written cannot be read in the same run",
    )
}

#[async_trait::async_trait]
impl ImageStore for ArchiveWriter {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }

    fn blob_domain(&self) -> String {
        format!("archive:{}", self.canonical.display())
    }

    async fn resolve(&self, _reference: &ImageRef) -> Result<Manifest, StoreError> {
        Err(read_only_reader(&self.describe()))
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        // A new archive holds nothing under any name until it is written.
        match reference {
            ImageRef::Digest(d) => Ok(self.contents().blobs.contains_key(d).then(|| d.clone())),
            _ => Ok(None),
        }
    }

    async fn manifest(&self, _digest: &Digest) -> Result<Manifest, StoreError> {
        Err(read_only_reader(&self.describe()))
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.contents().blobs.contains_key(digest))
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
        self.put_blob(&mut st, &desc, data).await
    }

    async fn set_tag(&self, tag: &str, manifest: &Manifest) -> Result<(), StoreError> {
        if tag.is_empty() || tag.chars().any(char::is_control) {
            return Err(StoreError::invalid(
                self.describe(),
                format!("{tag:?} is not a usable image name"),
            ));
        }
        let mut annotations = BTreeMap::new();
        annotations.insert(REF_NAME.to_string(), tag.to_string());
        if let Some(r) = self
            .references
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tag)
        {
            annotations.insert(IMAGE_NAME.to_string(), r.clone());
        }
        let entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(),
            "annotations": annotations,
        });
        let mut contents = self.contents();
        match contents.blobs.get(&manifest.digest) {
            Some(&n) if n == manifest.bytes.len() as u64 => {}
            _ => {
                return Err(StoreError::NotFound(format!(
                    "manifest {} in {} (store it before naming it {tag:?})",
                    manifest.digest,
                    self.describe()
                )))
            }
        }
        contents.names.retain(|d| {
            d.pointer("/annotations").and_then(|a| a.get(REF_NAME)) != Some(&json!(tag))
        });
        contents.names.push(entry);
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

    async fn read_blob(&self, _desc: &Descriptor) -> Result<BlobStream, StoreError> {
        Err(read_only_reader(&self.describe()))
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
        let mut names = self.contents().names.clone();
        // In name order, not in the order images happened to finish.
        names.sort_by(|a, b| {
            let name = |v: &Value| {
                v.pointer("/annotations")
                    .and_then(|a| a.get(REF_NAME))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            name(a).cmp(&name(b))
        });
        if names.is_empty() {
            // Every image failed: no bundle (nor an empty one) is written.
            st.out = None;
            self.done.store(true, Ordering::SeqCst);
            let _ = tokio::fs::remove_file(&self.temp).await;
            return Ok(());
        }
        let layout = json!({ "imageLayoutVersion": LAYOUT_VERSION });
        self.put_small(&mut st, "oci-layout", to_json(&layout))
            .await?;
        let mut index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": names,
        });
        let omitted: Vec<String> = self
            .omitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|d| d.to_string())
            .collect();
        if !omitted.is_empty() {
            index["annotations"] = json!({ OMITTED_BLOBS: omitted.join(" ") });
        }
        self.put_small(&mut st, "index.json", to_json(&index))
            .await?;
        let mut out = st.out.take().ok_or_else(|| self.broken())?;
        out.write_all(&[0u8; 2 * BLOCK as usize])
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

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serialises")
}

// ---------------------------------------------------------------- reading

/// Where an entry's bytes lie in the tar.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    offset: u64,
    size: u64,
}

/// An archive opened for reading: a copy source. Indexed and checked once
/// when opened; holds no open file.
#[derive(Debug)]
pub struct ArchiveReader {
    path: PathBuf,
    canonical: PathBuf,
    blobs: HashMap<Digest, Span>,
    index: Vec<Descriptor>,
    omitted: std::collections::BTreeSet<Digest>,
}

impl ArchiveReader {
    /// Index the archive at `path`, refusing hostile or malformed content.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let canonical = StoreError::canonical(&path, "OCI archive")?;
        let refuse = |entry: &str, reason: String| {
            StoreError::invalid(format!("{}: entry {entry:?}", path.display()), reason)
        };
        let io_err = |e: io::Error| StoreError::io(format!("reading {}", path.display()), e);
        let file = fs::File::open(&canonical).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut archive = tar::Archive::new(file);
        let mut spans: HashMap<String, Span> = HashMap::new();
        let mut duplicates: Vec<(Span, Span)> = Vec::new();
        let mut end = 0u64;
        let mut count = 0usize;
        for entry in archive.entries_with_seek().map_err(io_err)? {
            let entry = entry.map_err(|e| {
                StoreError::invalid(
                    path.display().to_string(),
                    format!("not a readable tar archive: {e}"),
                )
            })?;
            count += 1;
            if count > MAX_ENTRIES {
                return Err(StoreError::invalid(
                    path.display().to_string(),
                    format!("holds more than {MAX_ENTRIES} entries"),
                ));
            }
            let raw = entry.path_bytes();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let kind = entry.header().entry_type();
            let offset = entry.raw_file_position();
            let size = entry.size();
            match offset.checked_add(size) {
                Some(e) if e <= file_len => end = end.max(offset + round_up(size)),
                _ => {
                    return Err(refuse(
                        &name,
                        format!("claims {size} bytes, but the archive ends at byte {file_len}"),
                    ))
                }
            }
            if std::str::from_utf8(&raw).is_err() {
                return Err(refuse(&name, "the name is not UTF-8".into()));
            }
            let clean = clean_name(&name).map_err(|r| refuse(&name, r))?;
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Directory => {
                    if matches!(clean.as_str(), "" | "blobs")
                        || clean
                            .strip_prefix("blobs/")
                            .is_some_and(|a| a == "sha256" || a == "sha512")
                    {
                        continue;
                    }
                    return Err(refuse(
                        &name,
                        "a directory that is no part of an OCI layout".into(),
                    ));
                }
                tar::EntryType::XGlobalHeader => continue,
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    return Err(refuse(
                        &name,
                        "is a link; archives must hold only files".into(),
                    ))
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    return Err(refuse(
                        &name,
                        "is a device or fifo; archives must hold only files".into(),
                    ))
                }
                other => {
                    return Err(refuse(
                        &name,
                        format!("has the unsupported entry type {other:?}"),
                    ))
                }
            }
            let known =
                clean == "index.json" || clean == "oci-layout" || blob_digest(&clean).is_some();
            if !known {
                return Err(refuse(
                    &name,
                    "is not index.json, oci-layout or blobs/<alg>/<hex>".into(),
                ));
            }
            let span = Span {
                name: name.clone(),
                offset,
                size,
            };
            match spans.get(&clean) {
                Some(first) => duplicates.push((first.clone(), span)),
                None => {
                    spans.insert(clean, span);
                }
            }
        }
        drop(archive);
        let mut file = fs::File::open(&canonical).map_err(io_err)?;
        // After the last entry: the end blocks and padding, all zero.
        let tail = file_len.saturating_sub(end);
        if tail > MAX_TAIL {
            return Err(StoreError::invalid(
                path.display().to_string(),
                format!("holds {tail} bytes after its last entry (at most {MAX_TAIL} are allowed): larger than its entries claim"),
            ));
        }
        file.seek(SeekFrom::Start(end)).map_err(io_err)?;
        let mut rest = Vec::new();
        (&mut file)
            .take(tail)
            .read_to_end(&mut rest)
            .map_err(io_err)?;
        if rest.iter().any(|&b| b != 0) {
            return Err(StoreError::invalid(
                path.display().to_string(),
                format!("holds data after its last entry (from byte {end})"),
            ));
        }
        for (first, second) in &duplicates {
            let same = first.size == second.size
                && hash_span(&mut file, first).map_err(io_err)?
                    == hash_span(&mut file, second).map_err(io_err)?;
            if !same {
                return Err(refuse(
                    &second.name,
                    "appears twice with different content".into(),
                ));
            }
        }
        let small = |file: &mut fs::File, name: &str| -> Result<Vec<u8>, StoreError> {
            let span = spans.get(name).ok_or_else(|| {
                StoreError::invalid(
                    path.display().to_string(),
                    format!("has no {name}: it is no OCI archive"),
                )
            })?;
            if span.size > MAX_INDEX_SIZE {
                return Err(refuse(
                    &span.name,
                    format!("has {} bytes (at most {MAX_INDEX_SIZE})", span.size),
                ));
            }
            read_span(file, span).map_err(io_err)
        };
        let layout = small(&mut file, "oci-layout")?;
        let version = serde_json::from_slice::<Value>(&layout)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_string));
        if version.as_deref() != Some(LAYOUT_VERSION) {
            return Err(refuse(
                "oci-layout",
                format!("imageLayoutVersion is {version:?}, not {LAYOUT_VERSION:?}"),
            ));
        }
        let index_bytes = small(&mut file, "index.json")?;
        let index_label = PathBuf::from(format!("{}: entry \"index.json\"", path.display()));
        let index = parse_index(&index_label, &index_bytes)?;
        let omitted = omitted_blobs(&index_bytes).map_err(|r| refuse("index.json", r))?;
        let mut blobs = HashMap::new();
        for (clean, span) in spans {
            if let Some(d) = blob_digest(&clean) {
                blobs.insert(d, span);
            }
        }
        for d in &index {
            if !d.urls.is_empty() {
                return Err(refuse(
                    "index.json",
                    format!("points outside the bundle: {} has urls", d.digest),
                ));
            }
            match blobs.get(&d.digest) {
                None => {
                    return Err(refuse(
                        "index.json",
                        format!(
                            "points outside the bundle: no entry {} holds {}",
                            blob_name(&d.digest),
                            d.digest
                        ),
                    ))
                }
                Some(s) if s.size != d.size => {
                    return Err(refuse(
                        "index.json",
                        format!(
                            "gives {} a size of {} bytes, but its entry has {}",
                            d.digest, d.size, s.size
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(ArchiveReader {
            path,
            canonical,
            blobs,
            index,
            omitted,
        })
    }

    /// The blobs a delta bundle leaves out (empty for a whole bundle).
    pub fn omitted(&self) -> &std::collections::BTreeSet<Digest> {
        &self.omitted
    }

    /// The named images in `index.json`, in its order, with their original
    /// references when recorded.
    pub fn names(&self) -> Vec<(String, Descriptor)> {
        self.index
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).map(|n| (n.clone(), d.clone())))
            .collect()
    }

    fn entry_context(&self, span: &Span) -> String {
        format!("{}: entry {:?}", self.describe(), span.name)
    }

    fn find(&self, reference: &ImageRef) -> Result<Option<Descriptor>, StoreError> {
        match reference {
            ImageRef::Tag(name) => {
                let mut hits = self
                    .index
                    .iter()
                    .filter(|d| d.annotations.get(REF_NAME) == Some(name));
                let Some(first) = hits.next() else {
                    return Ok(None);
                };
                if let Some(other) = hits.find(|d| d.digest != first.digest) {
                    return Err(StoreError::invalid(
                        format!("{}: entry \"index.json\"", self.describe()),
                        format!(
                            "the name {name:?} is given to two manifests ({} and {})",
                            first.digest, other.digest
                        ),
                    ));
                }
                Ok(Some(first.clone()))
            }
            ImageRef::Only => match self.index.len() {
                0 => Ok(None),
                1 => Ok(self.index.first().cloned()),
                n => Err(StoreError::invalid(
                    self.describe(),
                    format!(
                        "holds {n} images ({}); name one with oci-archive:PATH:NAME",
                        list_names(&self.index)
                    ),
                )),
            },
            ImageRef::Digest(d) => Ok(self.index.iter().find(|e| &e.digest == d).cloned()),
        }
    }

    async fn manifest_bytes(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        let span = self.blobs.get(digest).ok_or_else(|| {
            StoreError::NotFound(format!("manifest {digest} in {}", self.describe()))
        })?;
        if span.size > MAX_MANIFEST_SIZE {
            return Err(StoreError::invalid(
                self.entry_context(span),
                format!(
                    "a manifest of {} bytes (at most {MAX_MANIFEST_SIZE})",
                    span.size
                ),
            ));
        }
        let desc = Descriptor::new(media_type::OCTET_STREAM, digest.clone(), span.size);
        let mut stream = self.read_blob(&desc).await?;
        let mut out = BytesMut::with_capacity(span.size as usize);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

/// The digests in `index.json`'s [`OMITTED_BLOBS`] annotation.
pub fn omitted_blobs(index_bytes: &[u8]) -> Result<std::collections::BTreeSet<Digest>, String> {
    let value: Value = serde_json::from_slice(index_bytes).map_err(|e| e.to_string())?;
    let Some(list) = value
        .pointer("/annotations")
        .and_then(|a| a.get(OMITTED_BLOBS))
    else {
        return Ok(Default::default());
    };
    let list = list
        .as_str()
        .ok_or_else(|| format!("the {OMITTED_BLOBS} annotation is not a string"))?;
    list.split_whitespace()
        .map(|d| {
            Digest::parse(d).map_err(|e| format!("the {OMITTED_BLOBS} annotation lists {d:?}: {e}"))
        })
        .collect()
}

/// An entry name without a leading `./`; absolute names, `..` and empty
/// components are refused.
fn clean_name(name: &str) -> Result<String, String> {
    if name.starts_with('/') {
        return Err("has an absolute path".into());
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            ".." => return Err("climbs out with \"..\"".into()),
            "." | "" => {}
            p => parts.push(p),
        }
    }
    if name.contains('\\') {
        return Err("has a backslash in its name".into());
    }
    Ok(parts.join("/"))
}

/// The digest a `blobs/<alg>/<hex>` name stands for.
fn blob_digest(clean: &str) -> Option<Digest> {
    let rest = clean.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    let d = Digest::parse(&format!("{alg}:{hex}")).ok()?;
    (d.hex() == hex).then_some(d)
}

fn read_span(file: &mut fs::File, span: &Span) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(span.offset))?;
    let mut out = Vec::with_capacity(span.size as usize);
    file.take(span.size).read_to_end(&mut out)?;
    Ok(out)
}

fn hash_span(file: &mut fs::File, span: &Span) -> io::Result<Digest> {
    file.seek(SeekFrom::Start(span.offset))?;
    let mut hasher = Hasher::new(registry_client::Algorithm::Sha256);
    hasher.update_from(file.take(span.size))?;
    Ok(hasher.finish())
}

fn read_only(what: String) -> StoreError {
    StoreError::invalid(
        what,
        "an archive is read-only as a source (write a new one as a destination)",
    )
}

#[async_trait::async_trait]
impl ImageStore for ArchiveReader {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }

    fn blob_domain(&self) -> String {
        format!("archive:{}", self.canonical.display())
    }

    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError> {
        if let ImageRef::Digest(d) = reference {
            return self.manifest(d).await;
        }
        let Some(desc) = self.find(reference)? else {
            return Err(match reference {
                ImageRef::Tag(name) => StoreError::NotFound(format!(
                    "image named {name:?} in {} (names: {})",
                    self.describe(),
                    list_names(&self.index)
                )),
                _ => StoreError::invalid(self.describe(), "holds no images"),
            });
        };
        let bytes = self.manifest_bytes(&desc.digest).await?;
        Ok(Manifest {
            media_type: desc.media_type,
            digest: desc.digest,
            bytes,
        })
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        match reference {
            ImageRef::Digest(d) => Ok(self.blobs.contains_key(d).then(|| d.clone())),
            _ => Ok(self.find(reference)?.map(|d| d.digest)),
        }
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let bytes = self.manifest_bytes(digest).await?;
        Ok(Manifest {
            media_type: media_type_in(&bytes),
            digest: digest.clone(),
            bytes,
        })
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.blobs.contains_key(digest))
    }

    async fn put_manifest(&self, _manifest: &Manifest) -> Result<(), StoreError> {
        Err(read_only(self.describe()))
    }

    async fn set_tag(&self, _tag: &str, _manifest: &Manifest) -> Result<(), StoreError> {
        Err(read_only(self.describe()))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.blobs.get(digest).map(|s| s.size))
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        let span = self
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| {
                StoreError::NotFound(format!("blob {} in {}", desc.digest, self.describe()))
            })?
            .clone();
        let context = self.entry_context(&span);
        if span.size != desc.size {
            return Err(StoreError::invalid(
                context,
                format!(
                    "has {} bytes, but the descriptor of {} says {}",
                    span.size, desc.digest, desc.size
                ),
            ));
        }
        let mut file = tokio::fs::File::open(&self.canonical)
            .await
            .map_err(|e| StoreError::io(format!("opening {}", self.path.display()), e))?;
        file.seek(SeekFrom::Start(span.offset))
            .await
            .map_err(|e| StoreError::io(format!("reading {context}"), e))?;
        let state = (
            file.take(span.size),
            Verifier::new(desc.digest.clone(), Some(desc.size)),
            context,
        );
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let (mut file, mut verifier, context) = state?;
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let corrupt = |e: registry_client::Error, context: &str| StoreError::Integrity {
                context: format!("{context} is corrupt"),
                source: Box::new(e),
            };
            match file.read_buf(&mut buf).await {
                Ok(0) => match verifier.finish() {
                    Ok(_) => None,
                    Err(e) => Some((Err(corrupt(e, &context)), None)),
                },
                Ok(_) => match verifier.update(&buf) {
                    Ok(()) => Some((Ok(buf.freeze()), Some((file, verifier, context)))),
                    Err(e) => Some((Err(corrupt(e, &context)), None)),
                },
                Err(e) => Some((Err(StoreError::io(format!("reading {context}"), e)), None)),
            }
        });
        Ok(stream.boxed())
    }

    async fn write_blob(&self, _desc: &Descriptor, _data: BlobStream) -> Result<(), StoreError> {
        Err(read_only(self.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn desc(data: &[u8]) -> Descriptor {
        Descriptor::new(
            media_type::OCTET_STREAM,
            Digest::sha256_of(data),
            data.len() as u64,
        )
    }

    fn chunks(data: &[u8], size: usize) -> BlobStream {
        let parts: Vec<_> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts).boxed()
    }

    async fn read_all(s: BlobStream) -> Result<Vec<u8>, StoreError> {
        let mut s = s;
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    /// A manifest naming `blobs` as layers (no config: enough for the store).
    fn manifest_over(blobs: &[&[u8]]) -> Manifest {
        let layers: Vec<Value> = blobs
            .iter()
            .map(|b| json!({"mediaType": "application/octet-stream", "digest": Digest::sha256_of(b).to_string(), "size": b.len()}))
            .collect();
        let bytes = Bytes::from(
            serde_json::to_vec_pretty(&json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "layers": layers}))
                .unwrap(),
        );
        Manifest {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    fn entry_names(path: &Path) -> Vec<String> {
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
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
                assert_eq!(r.blob_size(&d.digest).await.unwrap(), None);
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

    // ------------------------------------------------ hostile bundles

    /// One raw tar entry: a GNU header with the name bytes as given (no
    /// checks: the point is to write what a careful writer would not).
    fn raw(name: &str, kind: tar::EntryType, data: &[u8], claimed: Option<u64>) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(kind);
        h.set_size(claimed.unwrap_or(data.len() as u64));
        if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(round_up(out.len() as u64) as usize, 0);
        out
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        raw(name, tar::EntryType::Regular, data, None)
    }

    /// A valid bundle's entries: one image `v1` with one layer.
    fn good() -> (Vec<Vec<u8>>, Manifest, Vec<u8>) {
        let layer = b"layer bytes".to_vec();
        let m = manifest_over(&[&layer]);
        let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": m.digest.to_string(), "size": m.bytes.len(), "annotations": {REF_NAME: "v1"}}]});
        let entries = vec![
            file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            file(&blob_name(&Digest::sha256_of(&layer)), &layer),
            file(&format!("./{}", blob_name(&m.digest)), &m.bytes),
            file("index.json", &to_json(&index)),
        ];
        (entries, m, layer)
    }

    fn write_tar(dir: &Path, entries: &[Vec<u8>], tail: &[u8]) -> PathBuf {
        let path = dir.join(format!("t{:x}.tar", rand::random::<u32>()));
        let mut bytes = entries.concat();
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes.extend_from_slice(tail);
        fs::write(&path, bytes).unwrap();
        path
    }

    fn refused(path: &Path, needles: &[&str]) {
        let err = ArchiveReader::open(path).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    }

    #[tokio::test]
    async fn hostile_bundles_are_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (base, m, layer) = good();
        // The valid one opens and reads.
        let ok = write_tar(d, &base, &[]);
        let r = ArchiveReader::open(&ok).unwrap();
        assert_eq!(r.resolve(&ImageRef::Tag("v1".into())).await.unwrap(), m);

        let with = |extra: Vec<u8>| {
            let mut e = base.clone();
            e.insert(1, extra);
            e
        };
        refused(
            &write_tar(d, &with(file("../evil", b"x")), &[]),
            &["\"../evil\"", ".."],
        );
        refused(
            &write_tar(d, &with(file("blobs/../../evil", b"x")), &[]),
            &["blobs/../../evil"],
        );
        refused(
            &write_tar(d, &with(file("/etc/cron.d/x", b"x")), &[]),
            &["/etc/cron.d/x", "absolute"],
        );
        refused(
            &write_tar(
                d,
                &with(raw("blobs/sha256/link", tar::EntryType::Symlink, b"", None)),
                &[],
            ),
            &["blobs/sha256/link", "link"],
        );
        refused(
            &write_tar(d, &with(raw("hard", tar::EntryType::Link, b"", None)), &[]),
            &["\"hard\"", "link"],
        );
        refused(
            &write_tar(d, &with(raw("dev", tar::EntryType::Char, b"", None)), &[]),
            &["\"dev\"", "device"],
        );
        refused(
            &write_tar(d, &with(file("run.sh", b"#!/bin/sh")), &[]),
            &["run.sh", "not index.json"],
        );
        // The same name twice with different content; the same content twice is fine.
        let index_again = file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
        let mut dup = base.clone();
        dup.push(index_again);
        refused(
            &write_tar(d, &dup, &[]),
            &["index.json", "twice with different content"],
        );
        let mut same = base.clone();
        same.push(base[1].clone());
        ArchiveReader::open(write_tar(d, &same, &[])).unwrap();
        // An entry claiming more bytes than the file holds.
        let mut long = base.clone();
        long.push(raw(
            "blobs/sha256/00",
            tar::EntryType::Regular,
            b"abc",
            Some(1 << 40),
        ));
        let path = d.join("long.tar");
        fs::write(&path, long.concat()).unwrap();
        refused(&path, &["blobs/sha256/00", "claims 1099511627776 bytes"]);
        // Far larger than its entries: data after the end.
        refused(
            &write_tar(d, &base, &vec![0u8; 1 << 20]),
            &["after its last entry"],
        );
        refused(
            &write_tar(d, &base, b"hidden"),
            &["data after its last entry"],
        );
        // index.json naming a manifest that is not in the bundle.
        let mut outside = base.clone();
        let ghost = Digest::sha256_of(b"ghost");
        outside[3] = file(
            "index.json",
            &to_json(
                &json!({"schemaVersion": 2, "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": ghost.to_string(), "size": 5}]}),
            ),
        );
        refused(
            &write_tar(d, &outside, &[]),
            &["index.json", "points outside the bundle", ghost.hex()],
        );

        // A blob whose content is not its name: refused as it is read, naming the entry.
        let mut forged = base.clone();
        let name = blob_name(&Digest::sha256_of(&layer));
        forged[1] = file(&name, b"LAYER BYTES");
        let r = ArchiveReader::open(write_tar(d, &forged, &[])).unwrap();
        let layer_desc = desc(&layer);
        let err = read_all(r.read_blob(&layer_desc).await.unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), registry_client::ErrorKind::Integrity);
        assert!(err.to_string().contains(&name), "{err}");
        // Nothing was written anywhere: the directory holds only the test's tars.
        assert!(
            listing(d).iter().all(|n| n.ends_with(".tar")),
            "{:?}",
            listing(d)
        );
    }
}
