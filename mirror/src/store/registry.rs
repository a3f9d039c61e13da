//! A registry repository as an image store, over the registry client.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use registry_client::{
    BlobRead, BlobStream as ClientBlobStream, Client, Descriptor, Digest, ErrorKind, Hasher,
    Manifest, MountOutcome, Repository, UploadSession, Url,
};

use super::sessions::{UploadRecord, UploadSessions};
use super::{BlobFeed, BlobStream, ImageRef, ImageSource, ImageTarget, Store, StoreError, StoreId};

/// How blobs are uploaded: one streamed PUT up to `chunk_threshold` bytes,
/// chunked PATCHes of `chunk_size` above it (each chunk's body streamed:
/// the size costs no memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPolicy {
    pub chunk_threshold: u64,
    pub chunk_size: usize,
}

/// Chunk size when chunking. Chunk bodies stream, so it decides how many
/// PATCHes a blob takes and how much a failed one sends again, not memory.
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

impl UploadPolicy {
    /// Azure Container Registry refuses single-request uploads above about
    /// 20 MB (reported), so its hosts chunk above 16 MiB; other registries
    /// take one streamed PUT, the fastest on distribution.
    pub fn for_registry(registry: &str) -> Self {
        let host = registry.split(':').next().unwrap_or(registry);
        let chunk_threshold = if host.ends_with(".azurecr.io") {
            16 * 1024 * 1024
        } else {
            u64::MAX
        };
        UploadPolicy {
            chunk_threshold,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// One repository of one registry.
#[derive(Debug, Clone)]
pub struct RegistryStore {
    id: StoreId,
    client: Client,
    repo: Repository,
    uploads: UploadPolicy,
    /// Where chunked upload sessions are recorded so another run can
    /// continue them; `None` keeps no state.
    sessions: Option<Arc<dyn UploadSessions>>,
}

impl RegistryStore {
    pub fn new(client: Client, repo: Repository) -> Self {
        let uploads = UploadPolicy::for_registry(repo.registry());
        RegistryStore {
            id: StoreId::Registry(repo.clone()),
            client,
            repo,
            uploads,
            sessions: None,
        }
    }

    pub fn with_sessions(mut self, sessions: Arc<dyn UploadSessions>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    pub fn with_upload_policy(mut self, uploads: UploadPolicy) -> Self {
        self.uploads = uploads;
        self
    }

    async fn read_from(
        &self,
        desc: &Descriptor,
        held: Option<Hasher>,
    ) -> Result<BlobStream, StoreError> {
        let read = BlobRead {
            size: Some(desc.size),
            resume: held,
        };
        let first = self.client.get_blob(&self.repo, &desc.digest, read).await?;
        Ok(resuming(
            self.client.clone(),
            self.repo.clone(),
            desc.clone(),
            first,
        ))
    }

    /// One streamed `PUT`. The registry verifies size and digest; a stream
    /// error aborts the request, so nothing is committed.
    async fn upload_whole(
        &self,
        desc: &Descriptor,
        session: UploadSession,
        data: BlobStream,
    ) -> Result<(), StoreError> {
        let source_error = SourceError::default();
        let body = source_error.watch(data);
        let result = session.put_whole(body, desc.size, &desc.digest).await;
        source_error.take_or(result.map(|_| ()).map_err(StoreError::from))
    }

    /// `PATCH`es of `chunk_size`, then the closing `PUT`. Each PATCH's body
    /// streams from `feed`, so memory holds no chunk; a chunk that fails is
    /// sent again from where the registry's status says it stopped, with
    /// the feed's bytes from there (the spool's, or the source's read
    /// again). With a journal the session is recorded after each chunk and
    /// kept when the transfer broke in a way another try can continue.
    async fn upload_chunked(
        &self,
        desc: &Descriptor,
        mut session: UploadSession,
        feed: &dyn BlobFeed,
        journal: Option<&dyn UploadSessions>,
    ) -> Result<(), StoreError> {
        let record = |s: &UploadSession| UploadRecord {
            repository: self.repo.to_string(),
            digest: desc.digest.clone(),
            size: desc.size,
            location: s.location().to_string(),
            offset: s.offset(),
        };
        if let Some(j) = journal {
            j.save(&record(&session));
        }
        let source_error = SourceError::default();
        let open = |offset| {
            let kept = source_error.clone();
            async move {
                match feed.open(offset).await {
                    Ok(data) => Ok(kept.watch(data).map(|r| {
                        r.map_err(|e| registry_client::Error::Io {
                            context: "reading the source".into(),
                            source: e,
                        })
                    })),
                    Err(e) => Err(registry_client::Error::Io {
                        context: "reading the source".into(),
                        source: kept.keep(e),
                    }),
                }
            }
        };
        let sent = session
            .upload_chunked_from(desc.size, self.uploads.chunk_size, open, |s| {
                if let Some(j) = journal {
                    j.save(&record(s));
                }
            })
            .await;
        let result = match sent {
            Ok(_) => session
                .finish(&desc.digest)
                .await
                .map(|_| ())
                .map_err(StoreError::from),
            Err(e) => {
                let result = source_error.take_or(Err(e.into()));
                if !keeps_session(journal, &result) {
                    let _ = session.cancel().await;
                }
                result
            }
        };
        if let Some(j) = journal {
            if !keeps_session(journal, &result) {
                j.remove(&self.repo, &desc.digest);
            }
        }
        result
    }

    /// The session a previous try recorded for this blob, asked for its
    /// offset; `None` (and the record dropped) when it cannot be trusted:
    /// unreadable, for another size, or unknown to the registry (expired,
    /// or broken by a cut chunk as distribution does).
    async fn continue_session(
        &self,
        desc: &Descriptor,
        journal: &dyn UploadSessions,
    ) -> Result<Option<UploadSession>, StoreError> {
        let Some(record) = journal.load(&self.repo, &desc.digest) else {
            return Ok(None);
        };
        let drop_it = |why: &str| {
            tracing::info!(digest = %desc.digest, reason = why, "discarding a recorded upload session");
            journal.remove(&self.repo, &desc.digest);
            Ok(None)
        };
        if record.size != desc.size {
            return drop_it("recorded for another size");
        }
        let Ok(location) = Url::parse(&record.location) else {
            return drop_it("unreadable location");
        };
        let mut session = self.client.resume_upload(&self.repo, location);
        match session.status().await {
            Ok(have) if have <= desc.size => {
                tracing::info!(digest = %desc.digest, have, size = desc.size, "continuing an upload the registry kept");
                Ok(Some(session))
            }
            Ok(_) => {
                let _ = session.cancel().await;
                drop_it("the registry holds more than the blob")
            }
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(_) => drop_it("the registry no longer knows the session"),
        }
    }

    fn reference(&self, r: &ImageRef) -> Result<registry_client::Reference, StoreError> {
        match r {
            ImageRef::Tag(t) => Ok(self.repo.tag(t)?),
            ImageRef::Digest(d) => Ok(self.repo.digest(d)),
            ImageRef::Only => Ok(self.repo.tag("latest")?),
        }
    }
}

impl Store for RegistryStore {
    fn id(&self) -> &StoreId {
        &self.id
    }
}

#[async_trait::async_trait]
impl ImageSource for RegistryStore {
    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError> {
        Ok(self
            .client
            .get_manifest(&self.reference(reference)?)
            .await?)
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        let info = self
            .client
            .head_manifest(&self.reference(reference)?)
            .await?;
        Ok(info.map(|i| i.digest))
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        Ok(self.client.get_manifest(&self.repo.digest(digest)).await?)
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        self.read_from(desc, None).await
    }

    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        Ok(self
            .client
            .referrers(&self.repo, subject, artifact_types)
            .await?
            .manifests)
    }

    async fn read_blob_from(
        &self,
        desc: &Descriptor,
        held: Hasher,
    ) -> Result<BlobStream, StoreError> {
        self.read_from(desc, Some(held)).await
    }

    async fn list_tags(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.client.list_tags(&self.repo, None).await?)
    }
}

#[async_trait::async_trait]
impl ImageTarget for RegistryStore {
    async fn current(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        self.resolve_digest(reference).await
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let put = self
            .client
            .put_manifest_with_subject(
                &self.repo,
                &manifest.digest.to_string(),
                &manifest.media_type,
                manifest.bytes.clone(),
            )
            .await?;
        // A referrer the registry did not list itself (no referrers API,
        // so no `OCI-Subject` in the answer) goes into the tag-schema index
        // of its subject, where clients of such a registry look.
        let subject = manifest.content().ok().and_then(|c| c.subject);
        if let (Some(subject), None) = (subject, put.oci_subject) {
            let entry = manifest.referrer_descriptor()?;
            self.client
                .add_to_referrers_index(&self.repo, &subject.digest, &entry)
                .await?;
        }
        Ok(())
    }

    async fn set_tag(&self, tag: &str, manifest: &Manifest) -> Result<(), StoreError> {
        // A tag is set by pushing the same bytes under the tag; the registry
        // already has them, so this only moves the name.
        self.client
            .put_manifest(
                &self.repo,
                tag,
                &manifest.media_type,
                manifest.bytes.clone(),
            )
            .await?;
        Ok(())
    }

    fn tag_stores_manifest(&self) -> bool {
        true
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.client.head_blob(&self.repo, digest).await?)
    }

    async fn held_referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Option<Vec<Descriptor>>, StoreError> {
        Ok(Some(
            ImageSource::referrers(self, subject, artifact_types).await?,
        ))
    }

    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        let session = self.client.start_upload(&self.repo).await?;
        if desc.size > self.uploads.chunk_threshold {
            self.upload_chunked(desc, session, &OneShot::new(data), None)
                .await
        } else {
            self.upload_whole(desc, session, data).await
        }
    }

    /// Chunked uploads stream each chunk from the feed, and are recorded
    /// in the state directory after every chunk, to be continued from the
    /// offset the registry confirms.
    async fn write_blob_from(
        &self,
        desc: &Descriptor,
        feed: &dyn BlobFeed,
    ) -> Result<(), StoreError> {
        if desc.size <= self.uploads.chunk_threshold {
            // The upload session and the source's answer at once: across a
            // network one round trip before the bytes flow, not two.
            let (session, data) = tokio::join!(self.client.start_upload(&self.repo), feed.open(0));
            return match (session, data) {
                (Ok(session), Ok(data)) => self.upload_whole(desc, session, data).await,
                // The source's failure says more, as when it was asked first.
                (session, Err(e)) => {
                    if let Ok(session) = session {
                        let _ = session.cancel().await;
                    }
                    Err(e)
                }
                (Err(e), Ok(_)) => Err(e.into()),
            };
        }
        let journal = self.sessions.as_deref();
        let continued = match journal {
            Some(j) => self.continue_session(desc, j).await?,
            None => None,
        };
        let session = match continued {
            Some(s) => s,
            None => self.client.start_upload(&self.repo).await?,
        };
        self.upload_chunked(desc, session, feed, journal).await
    }

    async fn mount_blob(&self, desc: &Descriptor, from: &Repository) -> Result<bool, StoreError> {
        if from.registry() != self.repo.registry() || from == &self.repo {
            return Ok(false);
        }
        match self
            .client
            .mount_blob(&self.repo, &desc.digest, from)
            .await?
        {
            MountOutcome::Mounted => Ok(true),
            MountOutcome::Upload(session) => {
                let _ = session.cancel().await;
                Ok(false)
            }
        }
    }
}

/// Whether a chunked upload that ended with `result` stays open for another
/// try or run: only with a journal, and only when the transfer broke in a
/// retryable way (what the registry holds so far is good).
fn keeps_session(journal: Option<&dyn UploadSessions>, result: &Result<(), StoreError>) -> bool {
    journal.is_some() && matches!(result, Err(e) if e.kind() == ErrorKind::Retryable)
}

/// The source's own error, kept aside while the upload sees only its
/// message: it says more than the broken upload it caused. Clones share it.
#[derive(Clone, Default)]
struct SourceError(Arc<Mutex<Option<StoreError>>>);

impl SourceError {
    fn take_or<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match self.0.lock().expect("source error").take() {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Keep `e` (unless an earlier error is kept); its message for the upload.
    fn keep(&self, e: StoreError) -> std::io::Error {
        let msg = e.to_string();
        self.0.lock().expect("source error").get_or_insert(e);
        std::io::Error::other(msg)
    }

    /// A blob stream as an upload body, its first error kept here.
    fn watch(
        &self,
        data: BlobStream,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
        let kept = self.clone();
        data.map(move |r| r.map_err(|e| kept.keep(e)))
    }
}

/// A blob stream as a feed that serves it once, from its start: a chunk
/// the registry did not take cannot be sent again from it.
struct OneShot(Mutex<Option<BlobStream>>);

impl OneShot {
    fn new(data: BlobStream) -> Self {
        OneShot(Mutex::new(Some(data)))
    }
}

#[async_trait::async_trait]
impl BlobFeed for OneShot {
    async fn open(&self, offset: u64) -> Result<BlobStream, StoreError> {
        let data = self.0.lock().expect("one-shot feed").take();
        match data {
            Some(data) if offset == 0 => Ok(data),
            _ => Err(StoreError::invalid(
                "a blob stream read once",
                format!("cannot send its bytes again from offset {offset}"),
            )),
        }
    }
}

/// How many times one blob read continues after a dropped connection.
const READ_RESUMES: u32 = 5;

/// A blob read that survives dropped connections: after a transient error
/// mid-stream it asks again with `Range` from the verified offset, the hash
/// continuing from its state, so no byte is read twice and none is skipped.
fn resuming(
    client: Client,
    repo: Repository,
    desc: Descriptor,
    first: ClientBlobStream,
) -> BlobStream {
    struct State {
        client: Client,
        repo: Repository,
        desc: Descriptor,
        current: Option<ClientBlobStream>,
        resumes: u32,
    }
    let state = State {
        client,
        repo,
        desc,
        current: Some(first),
        resumes: 0,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            let stream = st.current.as_mut()?;
            match stream.next().await {
                Some(Err(e)) if e.is_retryable() && st.resumes < READ_RESUMES => {
                    st.resumes += 1;
                    let held = stream.hasher();
                    tracing::debug!(
                        digest = %st.desc.digest,
                        offset = stream.offset(),
                        error = %e,
                        "blob read broke; continuing from the verified offset"
                    );
                    let read = BlobRead {
                        size: Some(st.desc.size),
                        resume: held,
                    };
                    match st.client.get_blob(&st.repo, &st.desc.digest, read).await {
                        Ok(next) => st.current = Some(next),
                        Err(e) => {
                            st.current = None;
                            return Some((Err(StoreError::from(e)), st));
                        }
                    }
                }
                Some(item) => return Some((item.map_err(StoreError::from), st)),
                None => return None,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts_chunk_large_uploads_and_others_stream_one_put() {
        let acr = UploadPolicy::for_registry("myacr.azurecr.io");
        assert_eq!(acr.chunk_threshold, 16 * 1024 * 1024);
        assert_eq!(acr.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(
            UploadPolicy::for_registry("127.0.0.1:5000").chunk_threshold,
            u64::MAX
        );
        assert_eq!(
            UploadPolicy::for_registry("docker.io").chunk_threshold,
            u64::MAX
        );
    }
}
