//! A wrapper around any [`ImageStore`] that injects faults on demand: a
//! call that fails with a chosen error, a blob stream cut after some bytes
//! or with a byte changed, a delay. Faults are data: "the 2nd blob read
//! fails with a retryable error", "every write of blob X is cut at 100
//! bytes"; everything else passes through to the wrapped store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use registry_client::{Descriptor, Digest, Manifest, Repository};

use crate::store::{
    BlobStream, ImageRef, ImageSource, ImageStore, ImageTarget, Store, StoreError, StoreId,
};

/// The calls a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Resolve,
    Manifest,
    PutManifest,
    SetTag,
    BlobSize,
    ReadBlob,
    WriteBlob,
    Referrers,
}

/// Which calls of an [`Op`] a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// The `n`th call (1-based), whatever it is about; once.
    Nth(usize),
    /// The first `n` calls about this digest (a blob, or a manifest
    /// pushed, tagged or read).
    FirstOf(Digest, usize),
    /// Every call about this digest.
    Digest(Digest),
    /// Every call.
    Always,
}

/// Makes the error a fault returns, fresh each time (errors are not `Clone`).
pub type MakeError = Arc<dyn Fn() -> StoreError + Send + Sync>;

/// What happens to a call a fault hits.
#[derive(Clone)]
pub enum Fault {
    /// The call fails at once.
    Fail(MakeError),
    /// The blob stream (the one read, or the one a write receives) yields
    /// its first `after` bytes and then this error.
    Cut { after: u64, error: MakeError },
    /// One byte of the blob stream is changed and the stream ends cleanly:
    /// a source that breaks its contract, for the target to catch.
    Flip { at: u64 },
    /// The call waits this long first.
    Delay(Duration),
}

impl Fault {
    pub fn fail(error: impl Fn() -> StoreError + Send + Sync + 'static) -> Self {
        Fault::Fail(Arc::new(error))
    }

    pub fn cut(after: u64, error: impl Fn() -> StoreError + Send + Sync + 'static) -> Self {
        Fault::Cut {
            after,
            error: Arc::new(error),
        }
    }
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Fail(e) => write!(f, "Fail({})", e()),
            Fault::Cut { after, error } => write!(f, "Cut({after}, {})", error()),
            Fault::Flip { at } => write!(f, "Flip({at})"),
            Fault::Delay(d) => write!(f, "Delay({d:?})"),
        }
    }
}

/// A transient failure, as a dropped connection or a 503 would give
/// (`ErrorKind::Retryable`).
pub fn retryable() -> StoreError {
    StoreError::from(registry_client::Error::Timeout {
        method: "GET".into(),
        url: "memory://injected".into(),
        after: Duration::from_secs(1),
    })
}

/// A failure not worth retrying (`ErrorKind::Protocol`).
pub fn refused() -> StoreError {
    StoreError::invalid("injected fault", "the store refused the request")
}

#[derive(Debug)]
struct Rule {
    op: Op,
    when: When,
    fault: Fault,
    /// Calls of `op` this rule has seen, and those about its digest.
    calls: usize,
    matching: usize,
}

impl Rule {
    /// Whether this call is hit; counts it either way.
    fn hits(&mut self, op: Op, digest: Option<&Digest>) -> bool {
        if op != self.op {
            return false;
        }
        self.calls += 1;
        match &self.when {
            When::Nth(n) => self.calls == *n,
            When::Always => true,
            When::Digest(d) => digest == Some(d),
            When::FirstOf(d, n) => {
                if digest != Some(d) {
                    return false;
                }
                self.matching += 1;
                self.matching <= *n
            }
        }
    }
}

/// A store that fails where told to.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn ImageStore>,
    rules: Mutex<Vec<Rule>>,
    fired: AtomicUsize,
}

impl Faulty {
    pub fn new(inner: Arc<dyn ImageStore>) -> Self {
        Faulty {
            inner,
            rules: Mutex::default(),
            fired: AtomicUsize::new(0),
        }
    }

    /// Add a fault; every rule a call matches applies, in the order added.
    pub fn inject(&self, op: Op, when: When, fault: Fault) -> &Self {
        self.rules.lock().expect("rules").push(Rule {
            op,
            when,
            fault,
            calls: 0,
            matching: 0,
        });
        self
    }

    /// How many times a fault hit a call.
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }

    /// The faults that hit this call, after waiting out any delay; the
    /// first `Fail` among them as an error.
    async fn enter(&self, op: Op, digest: Option<&Digest>) -> Result<Vec<Fault>, StoreError> {
        let hit: Vec<Fault> = self
            .rules
            .lock()
            .expect("rules")
            .iter_mut()
            .filter_map(|r| r.hits(op, digest).then(|| r.fault.clone()))
            .collect();
        self.fired.fetch_add(hit.len(), Ordering::SeqCst);
        for f in &hit {
            match f {
                Fault::Delay(d) => tokio::time::sleep(*d).await,
                Fault::Fail(e) => return Err(e()),
                _ => {}
            }
        }
        Ok(hit)
    }
}

/// `stream` with the stream faults among `faults` applied.
fn tamper(mut stream: BlobStream, faults: &[Fault]) -> BlobStream {
    for f in faults {
        stream = match f.clone() {
            Fault::Cut { after, error } => cut(stream, after, error),
            Fault::Flip { at } => flip(stream, at),
            _ => stream,
        };
    }
    stream
}

fn cut(stream: BlobStream, after: u64, error: MakeError) -> BlobStream {
    let mut left = after;
    let mut done = false;
    Box::pin(
        stream
            .scan((), move |_, item| {
                if done {
                    return futures::future::ready(None);
                }
                let out = match item {
                    Ok(mut chunk) if chunk.len() as u64 >= left => {
                        done = true;
                        let head = chunk.split_to(left as usize);
                        left = 0;
                        // The bytes before the cut, then the error.
                        vec![Ok(head), Err(error())]
                    }
                    Ok(chunk) => {
                        left -= chunk.len() as u64;
                        vec![Ok(chunk)]
                    }
                    Err(e) => vec![Err(e)],
                };
                futures::future::ready(Some(futures::stream::iter(out)))
            })
            .flatten()
            .filter(|item| futures::future::ready(!matches!(item, Ok(b) if b.is_empty()))),
    )
}

fn flip(stream: BlobStream, at: u64) -> BlobStream {
    let mut offset = 0u64;
    Box::pin(stream.map(move |item| {
        let chunk: Bytes = item?;
        let start = offset;
        offset += chunk.len() as u64;
        if (start..offset).contains(&at) {
            let mut changed = BytesMut::from(&chunk[..]);
            changed[(at - start) as usize] ^= 0xff;
            return Ok(changed.freeze());
        }
        Ok(chunk)
    }))
}

fn digest_of(reference: &ImageRef) -> Option<&Digest> {
    match reference {
        ImageRef::Digest(d) => Some(d),
        _ => None,
    }
}

impl Store for Faulty {
    fn id(&self) -> &StoreId {
        self.inner.id()
    }
}

#[async_trait::async_trait]
impl ImageSource for Faulty {
    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError> {
        self.enter(Op::Resolve, digest_of(reference)).await?;
        self.inner.resolve(reference).await
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        self.enter(Op::Resolve, digest_of(reference)).await?;
        self.inner.resolve_digest(reference).await
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        self.enter(Op::Manifest, Some(digest)).await?;
        self.inner.manifest(digest).await
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        let faults = self.enter(Op::ReadBlob, Some(&desc.digest)).await?;
        let stream = self.inner.read_blob(desc).await?;
        Ok(tamper(stream, &faults))
    }

    async fn list_tags(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_tags().await
    }

    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        self.enter(Op::Referrers, Some(subject)).await?;
        self.inner.referrers(subject, artifact_types).await
    }
}

#[async_trait::async_trait]
impl ImageTarget for Faulty {
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
        self.enter(Op::PutManifest, Some(&manifest.digest)).await?;
        self.inner.put_manifest(manifest).await
    }

    async fn set_tag(&self, tag: &str, manifest: &Manifest) -> Result<(), StoreError> {
        self.enter(Op::SetTag, Some(&manifest.digest)).await?;
        self.inner.set_tag(tag, manifest).await
    }

    fn tag_stores_manifest(&self) -> bool {
        self.inner.tag_stores_manifest()
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.enter(Op::BlobSize, Some(digest)).await?;
        self.inner.blob_size(digest).await
    }

    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        let faults = self.enter(Op::WriteBlob, Some(&desc.digest)).await?;
        self.inner.write_blob(desc, tamper(data, &faults)).await
    }

    async fn mount_blob(&self, desc: &Descriptor, from: &Repository) -> Result<bool, StoreError> {
        self.inner.mount_blob(desc, from).await
    }

    async fn finish(&self) -> Result<(), StoreError> {
        self.inner.finish().await
    }
}
