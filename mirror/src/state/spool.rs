//! Partial downloads kept on disk. A blob read from a registry is written
//! here as it streams (in batches, off the async workers); every
//! [`CHECKPOINT`] bytes the offset written is recorded. A rerun hashes what
//! is on disk once, serves it, and asks the source only for the rest, the
//! hash continuing from there, so no byte crosses the network twice and
//! the digest check still covers the whole blob. (The bytes are not hashed
//! a second time while they stream: the source's verifier already does,
//! and a continued run is rare enough to pay for its own hashing.)
//!
//! The spool outlives the process (a crash, `kill -9`, Ctrl-C), not the
//! machine: it is not fsynced, which would cost every copy disk bandwidth
//! for the rare power loss. After one, a checkpoint may claim bytes the
//! disk lost; the digest check at the end of the blob catches that, the
//! blob fails once and its spool is discarded.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use registry_client::{Descriptor, Digest, ErrorKind, Hasher};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{private, EntryLock};
use crate::store::{BlobFeed, BlobStream, ImageSource, StoreError};

/// Sync and record progress after this many new bytes.
pub const CHECKPOINT: u64 = 8 * 1024 * 1024;

const READ_CHUNK: usize = 256 * 1024;

/// Received bytes are written in batches of this size, each by a blocking
/// task, so a slow disk never stalls the async workers.
const WRITE_BATCH: usize = 1024 * 1024;

/// The `downloads/` part of the state directory. Runs share it; each
/// blob's files are written by the one run holding `<alg>-<hex>.lock`.
#[derive(Debug, Clone)]
pub struct Spools {
    dir: PathBuf,
    threshold: u64,
    /// Blobs being spooled by this process: one writer per file.
    busy: Arc<Mutex<HashSet<Digest>>>,
}

impl Spools {
    pub fn new(dir: PathBuf, threshold: u64) -> Self {
        Spools {
            dir,
            threshold,
            busy: Arc::default(),
        }
    }

    /// A spool for this blob, when it is large enough to be worth one and
    /// no other task of this run, nor another run, is spooling it. The
    /// blob's lock is held until the spool is dropped or finished; without
    /// it the blob streams straight from the source, which costs only a
    /// rerun's head start.
    pub fn claim(&self, desc: &Descriptor) -> Option<Spool> {
        if desc.size < self.threshold {
            return None;
        }
        if !self
            .busy
            .lock()
            .expect("spool set")
            .insert(desc.digest.clone())
        {
            return None;
        }
        let stem = format!("{}-{}", desc.digest.algorithm().name(), desc.digest.hex());
        let release = || {
            self.busy.lock().expect("spool set").remove(&desc.digest);
        };
        let lock = match EntryLock::try_acquire(&self.dir.join(format!("{stem}.lock"))) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::info!(
                    digest = %desc.digest,
                    dir = %self.dir.display(),
                    "the partial download of this blob is in use by another mirror run; streaming it without spooling"
                );
                release();
                return None;
            }
            Err(e) => {
                tracing::warn!(
                    digest = %desc.digest,
                    error = %e,
                    "cannot lock a partial download; streaming without spooling"
                );
                release();
                return None;
            }
        };
        Some(Spool {
            paths: Arc::new(Paths {
                data: self.dir.join(format!("{stem}.data")),
                checkpoint: self.dir.join(format!("{stem}.json")),
            }),
            desc: desc.clone(),
            busy: self.busy.clone(),
            lock: Some(lock),
        })
    }

    /// Bytes of partial downloads on disk (for tests and reports).
    pub fn bytes_on_disk(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "data"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct Paths {
    data: PathBuf,
    checkpoint: PathBuf,
}

impl Paths {
    fn discard(&self) {
        let _ = fs::remove_file(&self.checkpoint);
        let _ = fs::remove_file(&self.data);
    }
}

/// What a checkpoint file says: the first `offset` bytes of `data` were
/// received for this blob.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    digest: Digest,
    size: u64,
    offset: u64,
}

/// One blob's spool, claimed for the life of this value.
#[derive(Debug)]
pub struct Spool {
    paths: Arc<Paths>,
    desc: Descriptor,
    busy: Arc<Mutex<HashSet<Digest>>>,
    /// This run's hold on the blob's files (`None` once finished).
    lock: Option<EntryLock>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The lock first: a task of this run claiming the blob next must
        // not find it still held and take it for another run's.
        drop(self.lock.take());
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.desc.digest);
        }
    }
}

impl Spool {
    /// A feed that serves what is on disk and reads the rest from `source`
    /// into the spool.
    pub fn feed(&self, source: Arc<dyn ImageSource>) -> SpoolFeed {
        SpoolFeed {
            paths: self.paths.clone(),
            desc: self.desc.clone(),
            source,
        }
    }

    /// The blob is safely at the target: its spool is no longer needed.
    /// Its files go, the lock file last, while this run still holds it.
    pub fn finish(mut self) {
        self.paths.discard();
        if let Some(lock) = self.lock.take() {
            lock.remove();
        }
    }

    /// Bytes a previous run left that can be trusted (0 when none).
    pub fn held(&self) -> u64 {
        resume_point(&self.paths, &self.desc)
            .map(|(_, h)| h.len())
            .unwrap_or(0)
    }
}

/// The spool's data file opened at its trusted end, with the hash of the
/// bytes before it. State that cannot be trusted (unreadable, another size,
/// a short file, a complete file that is not the blob) is discarded and
/// the spool starts empty.
fn resume_point(paths: &Paths, desc: &Descriptor) -> io::Result<(File, Hasher)> {
    if let Some(hasher) = trusted_hasher(paths, desc) {
        let mut file = private::open_regular(&paths.data, OpenOptions::new().write(true))?;
        file.set_len(hasher.len())?;
        file.seek(SeekFrom::End(0))?;
        return Ok((file, hasher));
    }
    paths.discard();
    // Removed just now: whatever is there instead (a link planted since)
    // is not written through.
    let file = private::create_new(&paths.data)?;
    Ok((file, Hasher::new(desc.digest.algorithm())))
}

fn trusted_hasher(paths: &Paths, desc: &Descriptor) -> Option<Hasher> {
    let text = super::read_record(&paths.checkpoint)?;
    let why_not = |reason: &str| {
        tracing::info!(digest = %desc.digest, reason, "discarding a partial download");
        None
    };
    let cp: Checkpoint = match serde_json::from_slice(&text) {
        Ok(cp) => cp,
        Err(_) => return why_not("unreadable checkpoint"),
    };
    if cp.digest != desc.digest || cp.size != desc.size || cp.offset > cp.size {
        return why_not("checkpoint for another blob or size");
    }
    let hasher = match hash_prefix(&paths.data, desc, cp.offset) {
        Ok(h) => h,
        Err(_) => return why_not("data unreadable (a link?) or shorter than its checkpoint"),
    };
    if cp.offset == cp.size && hasher.clone().finish() != desc.digest {
        return why_not("complete but the digest differs");
    }
    Some(hasher)
}

/// The hash of the first `len` bytes of a spool file.
fn hash_prefix(path: &Path, desc: &Descriptor, len: u64) -> io::Result<Hasher> {
    use std::io::Read;
    let mut hasher = Hasher::new(desc.digest.algorithm());
    hasher.update_from(private::open_regular(path, OpenOptions::new().read(true))?.take(len))?;
    if hasher.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "spool file short",
        ));
    }
    Ok(hasher)
}

/// Record how much was written (the writes are in the file, if not yet on
/// the disk: see the module's note on power loss).
fn write_checkpoint(path: &Path, desc: &Descriptor, offset: u64) -> io::Result<()> {
    let cp = Checkpoint {
        digest: desc.digest.clone(),
        size: desc.size,
        offset,
    };
    super::write_atomic(path, &serde_json::to_vec(&cp).map_err(io::Error::other)?)
}

/// A blob's bytes from any offset, from the spool and then the source.
pub struct SpoolFeed {
    paths: Arc<Paths>,
    desc: Descriptor,
    source: Arc<dyn ImageSource>,
}

#[async_trait::async_trait]
impl BlobFeed for SpoolFeed {
    async fn open(&self, offset: u64) -> Result<BlobStream, StoreError> {
        let (paths, desc) = (self.paths.clone(), self.desc.clone());
        let opened = tokio::task::spawn_blocking(move || resume_point(&paths, &desc))
            .await
            .map_err(|e| StoreError::io("opening a partial download", io::Error::other(e)))?;
        let (file, hasher) = opened
            .map_err(|e| StoreError::io(format!("opening {}", self.paths.data.display()), e))?;
        let held = hasher.len();
        if held > 0 {
            tracing::info!(
                digest = %self.desc.digest,
                held,
                size = self.desc.size,
                "continuing a partial download from the state directory"
            );
        }
        let mut parts: Vec<BlobStream> = Vec::new();
        if offset < held {
            parts.push(read_range(self.paths.data.clone(), offset, held));
        }
        if held < self.desc.size {
            let source = if held == 0 {
                self.source.read_blob(&self.desc).await?
            } else {
                self.source
                    .read_blob_from(&self.desc, hasher.clone())
                    .await?
            };
            let writer = SpoolWriter {
                file: Arc::new(file),
                paths: self.paths.clone(),
                desc: self.desc.clone(),
                written: held,
                pending: Vec::new(),
                pending_len: 0,
                since_checkpoint: 0,
                done: false,
            };
            parts.push(tee(source, writer, offset));
        }
        Ok(Box::pin(futures::stream::iter(parts).flatten()))
    }
}

/// Bytes `from..to` of a spool file.
fn read_range(path: PathBuf, from: u64, to: u64) -> BlobStream {
    let state = (path, from, to, None::<tokio::fs::File>);
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let (path, pos, to, file) = state?;
        if pos >= to {
            return None;
        }
        let ctx = || format!("reading {}", path.display());
        let mut file = match file {
            Some(f) => f,
            None => {
                let opened = async {
                    let p = path.clone();
                    let f = tokio::task::spawn_blocking(move || {
                        private::open_regular(&p, OpenOptions::new().read(true))
                    })
                    .await
                    .map_err(io::Error::other)??;
                    let mut f = tokio::fs::File::from_std(f);
                    f.seek(SeekFrom::Start(pos)).await?;
                    Ok::<_, io::Error>(f)
                };
                match opened.await {
                    Ok(f) => f,
                    Err(e) => return Some((Err(StoreError::io(ctx(), e)), None)),
                }
            }
        };
        let want = ((to - pos) as usize).min(READ_CHUNK);
        let mut buf = BytesMut::with_capacity(want);
        while buf.len() < want {
            match (&mut file)
                .take((want - buf.len()) as u64)
                .read_buf(&mut buf)
                .await
            {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "spool file shrank");
                    return Some((Err(StoreError::io(ctx(), e)), None));
                }
                Ok(_) => {}
                Err(e) => return Some((Err(StoreError::io(ctx(), e)), None)),
            }
        }
        let next = pos + buf.len() as u64;
        Some((Ok(buf.freeze()), Some((path, next, to, Some(file)))))
    }))
}

/// Appends what the source sends to the spool, checkpointing as it goes.
struct SpoolWriter {
    file: Arc<File>,
    paths: Arc<Paths>,
    desc: Descriptor,
    /// Bytes in the file.
    written: u64,
    /// Received, not yet written (less than [`WRITE_BATCH`]).
    pending: Vec<Bytes>,
    pending_len: usize,
    since_checkpoint: u64,
    /// Nothing more is written or recorded: the blob ended, its bytes
    /// were bad, or the disk refused them.
    done: bool,
}

impl SpoolWriter {
    /// Take a chunk; write a batch when one is full.
    async fn keep(&mut self, chunk: &Bytes) -> io::Result<()> {
        self.pending_len += chunk.len();
        self.pending.push(chunk.clone());
        if self.pending_len >= WRITE_BATCH {
            self.write(false).await?;
        }
        Ok(())
    }

    /// Write what is pending, and a checkpoint every [`CHECKPOINT`] bytes
    /// or when `checkpoint` asks.
    async fn write(&mut self, checkpoint: bool) -> io::Result<()> {
        let batch = std::mem::take(&mut self.pending);
        let len = std::mem::take(&mut self.pending_len) as u64;
        self.since_checkpoint += len;
        let offset = self.written + len;
        let record = checkpoint || self.since_checkpoint >= CHECKPOINT;
        let (file, paths, desc) = (self.file.clone(), self.paths.clone(), self.desc.clone());
        tokio::task::spawn_blocking(move || {
            for b in &batch {
                (&*file).write_all(b)?;
            }
            if record {
                write_checkpoint(&paths.checkpoint, &desc, offset)?;
            }
            Ok::<_, io::Error>(())
        })
        .await
        .map_err(io::Error::other)??;
        self.written = offset;
        if record {
            self.since_checkpoint = 0;
        }
        Ok(())
    }
}

impl Drop for SpoolWriter {
    /// Stopped mid-way (Ctrl-C, the target failed): keep what arrived.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut offset = self.written;
        for b in &self.pending {
            if (&*self.file).write_all(b).is_err() {
                break;
            }
            offset += b.len() as u64;
        }
        if offset > self.written || self.since_checkpoint > 0 {
            let _ = write_checkpoint(&self.paths.checkpoint, &self.desc, offset);
        }
    }
}

/// The source's bytes, written to the spool on the way, yielded from
/// `offset` on. Bytes that fail verification are not kept.
fn tee(source: BlobStream, writer: SpoolWriter, offset: u64) -> BlobStream {
    let pos = writer.written;
    let state = (source, writer, pos);
    Box::pin(futures::stream::unfold(
        Some(state),
        move |state| async move {
            let (mut source, mut writer, mut pos) = state?;
            loop {
                match source.next().await {
                    Some(Ok(mut chunk)) => {
                        if !writer.done {
                            if let Err(e) = writer.keep(&chunk).await {
                                // The spool only saves a later run work:
                                // without it (a full disk) the copy goes on.
                                // What the last checkpoint covers stays: the
                                // failure may be the runtime shutting down
                                // on Ctrl-C, just when it is wanted.
                                tracing::warn!(
                                    path = %writer.paths.data.display(),
                                    error = %e,
                                    "cannot keep a partial download; continuing without"
                                );
                                writer.done = true;
                            }
                        }
                        let start = pos;
                        pos += chunk.len() as u64;
                        if pos <= offset {
                            continue;
                        }
                        if start < offset {
                            chunk = chunk.split_off((offset - start) as usize);
                        }
                        return Some((Ok(chunk), Some((source, writer, pos))));
                    }
                    Some(Err(e)) => {
                        // A digest that does not match at full length means
                        // wrong bytes somewhere: none are kept. A stream cut
                        // short says nothing against what arrived.
                        // (A verifier reports a wrong digest with the last
                        // bytes, before they arrive here: known by its kind.)
                        if is_wrong_digest(&e)
                            || (e.kind() == ErrorKind::Integrity && pos >= writer.desc.size)
                        {
                            writer.done = true;
                            writer.paths.discard();
                        }
                        return Some((Err(e), None));
                    }
                    None => {
                        // Verified to the end: record it whole, so a target
                        // that fails now can be fed from disk next time.
                        if !writer.done && writer.write(true).await.is_err() {
                            writer.paths.discard();
                        }
                        writer.done = true;
                        return None;
                    }
                }
            }
        },
    ))
}

/// A stream that ended in a wrong digest: the whole blob was hashed and
/// does not match, so some byte (on disk or from the source) is wrong.
fn is_wrong_digest(e: &StoreError) -> bool {
    let client = match e {
        StoreError::Client(c) => c.as_ref(),
        StoreError::Integrity { source, .. } => source.as_ref(),
        _ => return false,
    };
    matches!(client, registry_client::Error::DigestMismatch { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use registry_client::Manifest;

    /// What the memory source answers for anything but blob reads, which
    /// are all a spool asks of its source.
    fn not_served<T>() -> Result<T, StoreError> {
        Err(StoreError::invalid(
            "memory source",
            "serves blob reads only",
        ))
    }

    /// A source that serves a blob from memory, failing after `cut` bytes
    /// when asked to.
    #[derive(Debug)]
    struct MemorySource {
        id: crate::store::StoreId,
        data: Bytes,
        cut: Mutex<Option<usize>>,
        reads: Mutex<Vec<u64>>,
    }

    impl crate::store::Store for MemorySource {
        fn id(&self) -> &crate::store::StoreId {
            &self.id
        }
    }

    #[async_trait::async_trait]
    impl ImageSource for MemorySource {
        async fn resolve(&self, _: &crate::store::ImageRef) -> Result<Manifest, StoreError> {
            not_served()
        }
        async fn resolve_digest(
            &self,
            _: &crate::store::ImageRef,
        ) -> Result<Option<Digest>, StoreError> {
            not_served()
        }
        async fn manifest(&self, _: &Digest) -> Result<Manifest, StoreError> {
            not_served()
        }
        async fn list_tags(&self) -> Result<Vec<String>, StoreError> {
            not_served()
        }
        async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
            self.read_blob_from(desc, Hasher::new(desc.digest.algorithm()))
                .await
        }
        async fn read_blob_from(
            &self,
            desc: &Descriptor,
            held: Hasher,
        ) -> Result<BlobStream, StoreError> {
            let from = held.len() as usize;
            self.reads.lock().unwrap().push(held.len());
            let cut = self.cut.lock().unwrap().take();
            let end = cut.unwrap_or(self.data.len()).max(from);
            // Verified as the registry client does: a wrong digest is
            // reported in place of the last chunk.
            let mut verifier =
                registry_client::Verifier::resume(desc.digest.clone(), Some(desc.size), held)
                    .expect("same algorithm");
            let mut items: Vec<Result<Bytes, StoreError>> = self.data[from..end]
                .chunks(1000)
                .map(|c| match verifier.update(c) {
                    Ok(()) => Ok(Bytes::copy_from_slice(c)),
                    Err(e) => Err(StoreError::from(e)),
                })
                .collect();
            if cut.is_some() {
                items.push(Err(StoreError::io("source", io::Error::other("cut"))));
            }
            Ok(Box::pin(futures::stream::iter(items)))
        }
    }

    fn setup(len: usize) -> (tempfile::TempDir, Spools, Descriptor, Arc<MemorySource>) {
        let dir = tempfile::tempdir().unwrap();
        let spools = Spools::new(dir.path().to_path_buf(), 1);
        let data: Bytes = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let desc = Descriptor::new(
            "application/octet-stream",
            Digest::sha256_of(&data),
            len as u64,
        );
        let source = Arc::new(MemorySource {
            id: crate::store::StoreId::Memory("memory".into()),
            data,
            cut: Mutex::new(None),
            reads: Mutex::new(Vec::new()),
        });
        (dir, spools, desc, source)
    }

    async fn collect(s: BlobStream) -> Result<Bytes, StoreError> {
        let parts: Vec<Bytes> = s.try_collect().await?;
        Ok(Bytes::from(parts.concat()))
    }

    #[tokio::test]
    async fn a_broken_read_continues_from_disk_and_the_source_sends_only_the_rest() {
        let (_dir, spools, desc, source) = setup(50_000);
        *source.cut.lock().unwrap() = Some(30_000);
        let spool = spools.claim(&desc).unwrap();
        let feed = spool.feed(source.clone());
        assert!(collect(feed.open(0).await.unwrap()).await.is_err());
        drop(feed);
        drop(spool);
        // The writer's checkpoint on drop kept all 30 000 bytes.
        let spool = spools.claim(&desc).unwrap();
        assert_eq!(spool.held(), 30_000);
        let feed = spool.feed(source.clone());
        let got = collect(feed.open(0).await.unwrap()).await.unwrap();
        assert_eq!(got, source.data);
        assert_eq!(*source.reads.lock().unwrap(), vec![0, 30_000]);
        // From an offset inside the spool and one beyond it.
        assert_eq!(
            collect(feed.open(10_000).await.unwrap()).await.unwrap(),
            source.data.slice(10_000..)
        );
        spool.finish();
        assert_eq!(spools.bytes_on_disk(), 0);
    }

    #[tokio::test]
    async fn an_offset_beyond_the_spool_skips_what_the_target_has() {
        let (_dir, spools, desc, source) = setup(20_000);
        let spool = spools.claim(&desc).unwrap();
        let got = collect(spool.feed(source.clone()).open(12_345).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, source.data.slice(12_345..));
    }

    #[tokio::test]
    async fn untrusted_state_is_discarded() {
        let (_dir, spools, desc, source) = setup(20_000);
        let spool = spools.claim(&desc).unwrap();
        collect(spool.feed(source.clone()).open(0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(spool.held(), 20_000);
        // A complete file whose bytes changed on disk: hashed again, refused.
        let mut bytes = fs::read(&spool.paths.data).unwrap();
        bytes[7] ^= 1;
        fs::write(&spool.paths.data, &bytes).unwrap();
        assert_eq!(spool.held(), 0);
        collect(spool.feed(source.clone()).open(0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(spool.held(), 20_000);
        // A data file cut short under its checkpoint.
        let file = OpenOptions::new()
            .write(true)
            .open(&spool.paths.data)
            .unwrap();
        file.set_len(100).unwrap();
        assert_eq!(spool.held(), 0);
        // A checkpoint that is not JSON.
        fs::write(&spool.paths.checkpoint, b"garbage").unwrap();
        assert_eq!(spool.held(), 0);
    }

    #[tokio::test]
    async fn a_spool_whose_bytes_went_bad_is_discarded_when_the_digest_fails() {
        let (_dir, spools, desc, source) = setup(50_000);
        *source.cut.lock().unwrap() = Some(30_000);
        let spool = spools.claim(&desc).unwrap();
        let feed = spool.feed(source.clone());
        assert!(collect(feed.open(0).await.unwrap()).await.is_err());
        drop(feed);
        assert_eq!(spool.held(), 30_000);
        // A byte changes on disk under a checkpoint that still fits it (a
        // power loss): the rest from the source ends in a wrong digest.
        let mut bytes = fs::read(&spool.paths.data).unwrap();
        bytes[123] ^= 1;
        fs::write(&spool.paths.data, &bytes).unwrap();
        let err = collect(spool.feed(source.clone()).open(0).await.unwrap())
            .await
            .unwrap_err();
        assert!(is_wrong_digest(&err), "{err}");
        // Nothing of it is kept, so the next try reads the blob afresh.
        assert_eq!(spool.held(), 0);
        let kept = fs::metadata(&spool.paths.data)
            .map(|m| m.len())
            .unwrap_or(0);
        assert_eq!(kept, 0, "no byte of the bad spool is kept");
        let got = collect(spool.feed(source.clone()).open(0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, source.data);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_spool_file_planted_as_a_link_is_not_written_through() {
        let (dir, spools, desc, source) = setup(20_000);
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let spool = spools.claim(&desc).unwrap();
        // A checkpoint that trusts nothing yet, and the data file a link to
        // another file: resuming would truncate it and write the blob there.
        write_checkpoint(&spool.paths.checkpoint, &desc, 0).unwrap();
        std::os::unix::fs::symlink(&victim, &spool.paths.data).unwrap();
        let got = collect(spool.feed(source.clone()).open(0).await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, source.data);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let meta = fs::symlink_metadata(&spool.paths.data).unwrap();
        assert!(meta.is_file(), "the link was replaced by a file of its own");
        assert_eq!(spool.held(), 20_000);

        // A checkpoint planted as a link is not read: nothing is trusted.
        fs::remove_file(&spool.paths.checkpoint).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        write_checkpoint(&elsewhere, &desc, 20_000).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &spool.paths.checkpoint).unwrap();
        assert_eq!(spool.held(), 0);
    }

    #[tokio::test]
    async fn a_spool_another_run_holds_is_left_alone_and_the_blob_streams_without() {
        let (dir, first_run, desc, source) = setup(50_000);
        let second_run = Spools::new(dir.path().to_path_buf(), 1);
        *source.cut.lock().unwrap() = Some(30_000);
        let spool = first_run.claim(&desc).unwrap();
        assert!(collect(spool.feed(source.clone()).open(0).await.unwrap())
            .await
            .is_err());
        assert!(
            second_run.claim(&desc).is_none(),
            "another run's spool is not claimed"
        );
        assert_eq!(spool.held(), 30_000, "and not touched");
        // Released (as the kernel does for a killed run): the next run
        // continues what the first kept.
        drop(spool);
        let spool = second_run.claim(&desc).unwrap();
        assert_eq!(spool.held(), 30_000);
        assert!(first_run.claim(&desc).is_none());
        spool.finish();
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "finish leaves nothing, the lock file included"
        );
        assert!(first_run.claim(&desc).is_some(), "free after finish");
    }

    #[test]
    fn one_task_per_blob_and_small_blobs_are_not_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let spools = Spools::new(dir.path().to_path_buf(), 100);
        let small = Descriptor::new("x", Digest::sha256_of(b"a"), 99);
        let big = Descriptor::new("x", Digest::sha256_of(b"b"), 100);
        assert!(spools.claim(&small).is_none());
        let held = spools.claim(&big).unwrap();
        assert!(spools.claim(&big).is_none());
        drop(held);
        assert!(spools.claim(&big).is_some());
    }
}
