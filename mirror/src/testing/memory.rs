//! An image store held in memory, for tests of the engine without
//! processes. It keeps every contract of [`ImageStore`] as strictly as a
//! registry would (and refuses a manifest whose references are missing),
//! and records what it was asked: requests per kind and per digest, the
//! order of writes, and how many requests were in flight at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use registry_client::{Descriptor, Digest, Manifest, Verifier};

use super::images::{Blob, Image};
use crate::graph::successors;
use crate::store::{BlobStream, ImageRef, ImageSource, ImageTarget, Store, StoreError, StoreId};

/// The kinds of request a store answers, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    Resolve,
    ResolveDigest,
    Manifest,
    HasManifest,
    PutManifest,
    SetTag,
    BlobSize,
    ReadBlob,
    WriteBlob,
    Referrers,
}

/// One change made visible, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Blob(Digest),
    Manifest(Digest),
    Tag(String, Digest),
}

#[derive(Debug, Default)]
struct Content {
    manifests: HashMap<Digest, Manifest>,
    tags: HashMap<String, Digest>,
    blobs: HashMap<Digest, Bytes>,
    writes: Vec<Written>,
    counts: HashMap<Request, usize>,
    per_digest: HashMap<(Request, Digest), usize>,
}

/// Requests in flight now and the most seen at once. A blob stream counts
/// until it is dropped.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// One request on every gauge it counts on.
struct InFlight(Vec<Arc<Gauge>>);

impl InFlight {
    fn start(gauges: Vec<Arc<Gauge>>) -> Self {
        for gauge in &gauges {
            let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
            gauge.max.fetch_max(now, Ordering::SeqCst);
        }
        InFlight(gauges)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for gauge in &self.0 {
            gauge.now.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A repository held in memory. Its blob domain is its name: two stores
/// share blobs only if they are one store.
#[derive(Debug)]
pub struct MemoryStore {
    id: StoreId,
    chunk: usize,
    latency: Mutex<Duration>,
    content: Mutex<Content>,
    gauge: Arc<Gauge>,
    /// Blob reads and writes only.
    streams: Arc<Gauge>,
}

impl MemoryStore {
    /// An empty store; blobs stream in 4 KiB chunks.
    pub fn new(name: &str) -> Self {
        MemoryStore {
            id: StoreId::Memory(name.to_string()),
            chunk: 4096,
            latency: Mutex::new(Duration::ZERO),
            content: Mutex::default(),
            gauge: Arc::default(),
            streams: Arc::default(),
        }
    }

    /// Blobs stream in chunks of `bytes`.
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }

    /// Every request waits this long (while counted in flight), so that
    /// concurrent requests overlap and a concurrency limit shows.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().expect("latency") = latency;
    }

    // --- seeding, without counting ---

    /// Hold every manifest and blob of `image`, and tag its root when asked.
    pub fn seed(&self, image: &Image, tag: Option<&str>) {
        for b in &image.blobs {
            self.seed_blob(b);
        }
        for m in &image.manifests {
            self.seed_manifest(m);
        }
        if let Some(tag) = tag {
            self.seed_tag(tag, image.digest());
        }
    }

    pub fn seed_blob(&self, blob: &Blob) {
        self.lock()
            .blobs
            .insert(blob.digest().clone(), blob.bytes.clone());
    }

    /// Put `bytes` under `digest` whatever they hash to: a corrupted store.
    pub fn seed_corrupt_blob(&self, digest: &Digest, bytes: Bytes) {
        self.lock().blobs.insert(digest.clone(), bytes);
    }

    pub fn seed_manifest(&self, manifest: &Manifest) {
        self.lock()
            .manifests
            .insert(manifest.digest.clone(), manifest.clone());
    }

    pub fn seed_tag(&self, tag: &str, digest: &Digest) {
        self.lock().tags.insert(tag.to_string(), digest.clone());
    }

    // --- inspection ---

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.lock().blobs.contains_key(digest)
    }

    pub fn blob_bytes(&self, digest: &Digest) -> Option<Bytes> {
        self.lock().blobs.get(digest).cloned()
    }

    pub fn manifest_bytes(&self, digest: &Digest) -> Option<Bytes> {
        self.lock().manifests.get(digest).map(|m| m.bytes.clone())
    }

    pub fn tag(&self, tag: &str) -> Option<Digest> {
        self.lock().tags.get(tag).cloned()
    }

    pub fn blob_count(&self) -> usize {
        self.lock().blobs.len()
    }

    pub fn manifest_count(&self) -> usize {
        self.lock().manifests.len()
    }

    /// Blobs, manifests and tags made visible by requests, in order.
    pub fn writes(&self) -> Vec<Written> {
        self.lock().writes.clone()
    }

    /// Requests of one kind so far.
    pub fn count(&self, request: Request) -> usize {
        self.lock().counts.get(&request).copied().unwrap_or(0)
    }

    /// Requests of one kind about one digest (a blob, a manifest by digest).
    pub fn count_of(&self, request: Request, digest: &Digest) -> usize {
        let key = (request, digest.clone());
        self.lock().per_digest.get(&key).copied().unwrap_or(0)
    }

    /// Requests of every kind so far.
    pub fn total(&self) -> usize {
        self.lock().counts.values().sum()
    }

    /// Forget the counts and the write log (after seeding by requests).
    pub fn reset_counts(&self) {
        let mut c = self.lock();
        c.counts.clear();
        c.per_digest.clear();
        c.writes.clear();
        self.gauge.max.store(0, Ordering::SeqCst);
        self.streams.max.store(0, Ordering::SeqCst);
    }

    /// The most requests (and open blob streams) seen in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.gauge.max.load(Ordering::SeqCst)
    }

    /// The most blob reads and writes seen open at once.
    pub fn max_streams_in_flight(&self) -> usize {
        self.streams.max.load(Ordering::SeqCst)
    }

    // --- internals ---

    fn lock(&self) -> std::sync::MutexGuard<'_, Content> {
        self.content.lock().expect("memory store lock")
    }

    /// Count a request, mark it in flight and wait out the latency.
    async fn begin(&self, request: Request, digest: Option<&Digest>) -> InFlight {
        {
            let mut c = self.lock();
            *c.counts.entry(request).or_default() += 1;
            if let Some(d) = digest {
                *c.per_digest.entry((request, d.clone())).or_default() += 1;
            }
        }
        let mut gauges = vec![self.gauge.clone()];
        if matches!(request, Request::ReadBlob | Request::WriteBlob) {
            gauges.push(self.streams.clone());
        }
        let guard = InFlight::start(gauges);
        let latency = *self.latency.lock().expect("latency");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        guard
    }

    fn not_found(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::NotFound(format!("{what} in {}", self.describe()))
    }

    fn lookup(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        let c = self.lock();
        Ok(match reference {
            ImageRef::Tag(t) => c.tags.get(t).cloned(),
            ImageRef::Digest(d) => c.manifests.contains_key(d).then(|| d.clone()),
            ImageRef::Only => match c.tags.len() {
                0 => None,
                1 => c.tags.values().next().cloned(),
                n => {
                    return Err(StoreError::invalid(
                        self.describe(),
                        format!("holds {n} images; name one"),
                    ))
                }
            },
        })
    }

    fn stored_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        self.lock()
            .manifests
            .get(digest)
            .cloned()
            .ok_or_else(|| self.not_found(format!("manifest {digest}")))
    }

    /// What a manifest references that this store lacks (foreign layers
    /// are fetched from elsewhere, so they may be absent).
    fn missing_references(&self, manifest: &Manifest) -> Result<Vec<Digest>, StoreError> {
        let c = self.lock();
        Ok(successors(manifest)?
            .into_iter()
            .filter(|(edge, d)| {
                if edge.is_manifest() {
                    !c.manifests.contains_key(&d.digest)
                } else {
                    !d.is_foreign() && !c.blobs.contains_key(&d.digest)
                }
            })
            .map(|(_, d)| d.digest)
            .collect())
    }
}

impl Store for MemoryStore {
    fn id(&self) -> &StoreId {
        &self.id
    }
}

#[async_trait::async_trait]
impl ImageSource for MemoryStore {
    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError> {
        let digest = match reference {
            ImageRef::Digest(d) => Some(d),
            _ => None,
        };
        let _f = self.begin(Request::Resolve, digest).await;
        let digest = self
            .lookup(reference)?
            .ok_or_else(|| self.not_found(format!("image {reference}")))?;
        self.stored_manifest(&digest)
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        let _f = self.begin(Request::ResolveDigest, None).await;
        self.lookup(reference)
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let _f = self.begin(Request::Manifest, Some(digest)).await;
        self.stored_manifest(digest)
    }

    /// Found as the referrers API finds them: every stored manifest whose
    /// `subject` is `subject`.
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        let _f = self.begin(Request::Referrers, Some(subject)).await;
        let content = self.content.lock().unwrap();
        let mut found: Vec<Descriptor> = content
            .manifests
            .values()
            .filter_map(|m| {
                let c = m.content().ok()?;
                if c.subject.as_ref()?.digest != *subject {
                    return None;
                }
                let artifact_type = c
                    .artifact_type
                    .or_else(|| c.config.map(|d| d.media_type))
                    .unwrap_or_default();
                if !artifact_types.is_empty() && !artifact_types.contains(&artifact_type) {
                    return None;
                }
                let mut d =
                    Descriptor::new(m.media_type.clone(), m.digest.clone(), m.bytes.len() as u64);
                d.artifact_type = Some(artifact_type);
                Some(d)
            })
            .collect();
        found.sort_by_key(|d| d.digest.to_string());
        Ok(found)
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        let guard = self.begin(Request::ReadBlob, Some(&desc.digest)).await;
        let bytes = self
            .blob_bytes(&desc.digest)
            .ok_or_else(|| self.not_found(format!("blob {}", desc.digest)))?;
        let chunks: Vec<Bytes> = (0..bytes.len())
            .step_by(self.chunk)
            .map(|at| bytes.slice(at..(at + self.chunk).min(bytes.len())))
            .collect();
        let context = format!("reading blob {} from {}", desc.digest, self.describe());
        Ok(verified(
            Box::pin(futures::stream::iter(chunks.into_iter().map(Ok))),
            desc,
            context,
            guard,
        ))
    }

    async fn list_tags(&self) -> Result<Vec<String>, StoreError> {
        let content = self.content.lock().expect("memory store lock");
        let mut tags: Vec<String> = content.tags.keys().cloned().collect();
        tags.sort();
        Ok(tags)
    }
}

#[async_trait::async_trait]
impl ImageTarget for MemoryStore {
    async fn current(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        self.resolve_digest(reference).await
    }

    async fn held_referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Option<Vec<Descriptor>>, StoreError> {
        Ok(Some(self.referrers(subject, artifact_types).await?))
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let _f = self
            .begin(Request::PutManifest, Some(&manifest.digest))
            .await;
        let actual = Digest::sha256_of(&manifest.bytes);
        if actual != manifest.digest {
            return Err(StoreError::invalid(
                format!("pushing manifest {}", manifest.digest),
                format!("its bytes hash to {actual}"),
            ));
        }
        let missing = self.missing_references(manifest)?;
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|d| d.to_string()).collect();
            return Err(StoreError::invalid(
                self.describe(),
                format!(
                    "manifest {} references what is not here: {}",
                    manifest.digest,
                    list.join(", ")
                ),
            ));
        }
        let mut c = self.lock();
        c.manifests
            .insert(manifest.digest.clone(), manifest.clone());
        c.writes.push(Written::Manifest(manifest.digest.clone()));
        Ok(())
    }

    async fn set_tag(&self, tag: &str, manifest: &Manifest) -> Result<(), StoreError> {
        let _f = self.begin(Request::SetTag, Some(&manifest.digest)).await;
        let mut c = self.lock();
        if !c.manifests.contains_key(&manifest.digest) {
            return Err(StoreError::invalid(
                format!("tagging {} as {tag}", manifest.digest),
                "the manifest is not stored",
            ));
        }
        c.tags.insert(tag.to_string(), manifest.digest.clone());
        c.writes
            .push(Written::Tag(tag.to_string(), manifest.digest.clone()));
        Ok(())
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let _f = self.begin(Request::BlobSize, Some(digest)).await;
        Ok(self.lock().blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        let _f = self.begin(Request::WriteBlob, Some(&desc.digest)).await;
        let context = || format!("writing blob {} to {}", desc.digest, self.describe());
        let integrity = |e| StoreError::Integrity {
            context: context(),
            source: Box::new(e),
        };
        // Held aside until whole and verified; dropped on any error.
        let mut received = Vec::new();
        let mut verifier = Verifier::new(desc.digest.clone(), Some(desc.size));
        let mut data = data;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            verifier.update(&chunk).map_err(integrity)?;
            received.extend_from_slice(&chunk);
        }
        verifier.finish().map_err(integrity)?;
        let mut c = self.lock();
        c.blobs.insert(desc.digest.clone(), Bytes::from(received));
        c.writes.push(Written::Blob(desc.digest.clone()));
        Ok(())
    }
}

/// `stream` checked against `desc` as it goes: it ends in an error, not a
/// clean end, when size or digest differ. `guard` lives as long as it.
fn verified(stream: BlobStream, desc: &Descriptor, context: String, guard: InFlight) -> BlobStream {
    let verifier = Verifier::new(desc.digest.clone(), Some(desc.size));
    let state = (stream, Some(verifier), context, guard);
    Box::pin(futures::stream::unfold(
        state,
        |(mut stream, mut verifier, context, guard)| async move {
            let v = verifier.as_mut()?;
            let fail = |e, context: &String| StoreError::Integrity {
                context: context.clone(),
                source: Box::new(e),
            };
            let item = match stream.next().await {
                Some(Ok(chunk)) => match v.update(&chunk) {
                    Ok(()) => Ok(chunk),
                    Err(e) => {
                        verifier = None;
                        Err(fail(e, &context))
                    }
                },
                Some(Err(e)) => {
                    verifier = None;
                    Err(e)
                }
                None => {
                    let v = verifier.take().expect("checked above");
                    match v.finish() {
                        Ok(_) => return None,
                        Err(e) => Err(fail(e, &context)),
                    }
                }
            };
            Some((item, (stream, verifier, context, guard)))
        },
    ))
}
