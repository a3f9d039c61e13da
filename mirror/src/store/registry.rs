//! A registry repository as an image store, over the registry client.

use futures::StreamExt;
use registry_client::{
    BlobRead, BlobStream as ClientBlobStream, Client, Descriptor, Digest, Manifest, MountOutcome,
    Repository,
};

use super::{BlobStream, ImageRef, ImageStore, StoreError};

/// How blobs are uploaded: one streamed PUT up to `chunk_threshold` bytes,
/// chunked PATCHes of `chunk_size` above it (memory holds one chunk per
/// upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPolicy {
    pub chunk_threshold: u64,
    pub chunk_size: usize,
}

/// Chunk size when chunking: 8 upload streams hold 64 MiB at most.
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
    client: Client,
    repo: Repository,
    uploads: UploadPolicy,
}

impl RegistryStore {
    pub fn new(client: Client, repo: Repository) -> Self {
        let uploads = UploadPolicy::for_registry(repo.registry());
        RegistryStore {
            client,
            repo,
            uploads,
        }
    }

    pub fn with_upload_policy(mut self, uploads: UploadPolicy) -> Self {
        self.uploads = uploads;
        self
    }

    fn reference(&self, r: &ImageRef) -> Result<registry_client::Reference, StoreError> {
        match r {
            ImageRef::Tag(t) => Ok(self.repo.tag(t)?),
            ImageRef::Digest(d) => Ok(self.repo.digest(d)),
            ImageRef::Only => Ok(self.repo.tag("latest")?),
        }
    }
}

#[async_trait::async_trait]
impl ImageStore for RegistryStore {
    fn describe(&self) -> String {
        self.repo.to_string()
    }

    fn blob_domain(&self) -> String {
        format!("registry:{}", self.repo.registry())
    }

    fn repository(&self) -> Option<&Repository> {
        Some(&self.repo)
    }

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

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .client
            .head_manifest(&self.repo.digest(digest))
            .await?
            .is_some())
    }

    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        self.client
            .put_manifest(
                &self.repo,
                &manifest.digest.to_string(),
                &manifest.media_type,
                manifest.bytes.clone(),
            )
            .await?;
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

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.client.head_blob(&self.repo, digest).await?)
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        let read = BlobRead {
            size: Some(desc.size),
            resume: None,
        };
        let first = self.client.get_blob(&self.repo, &desc.digest, read).await?;
        Ok(resuming(
            self.client.clone(),
            self.repo.clone(),
            desc.clone(),
            first,
        ))
    }

    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError> {
        let mut session = self.client.start_upload(&self.repo).await?;
        // The registry verifies size and digest when the session is closed;
        // a stream error aborts the upload, and the session is never
        // committed. The source's own error says more than the broken upload
        // it caused, so it is kept aside and returned instead.
        let (errors_tx, mut errors_rx) = tokio::sync::mpsc::unbounded_channel();
        let body = data.map(move |r| {
            r.map_err(|e| {
                let msg = e.to_string();
                let _ = errors_tx.send(e);
                std::io::Error::other(msg)
            })
        });
        let result = if desc.size > self.uploads.chunk_threshold {
            let body = body.map(|r| {
                r.map_err(|e| registry_client::Error::Io {
                    context: "reading the source".into(),
                    source: e,
                })
            });
            let sent = session
                .upload_chunked(Box::pin(body), self.uploads.chunk_size)
                .await;
            match sent {
                Ok(_) => session.finish(&desc.digest).await.map(|_| ()),
                Err(e) => {
                    let _ = session.cancel().await;
                    Err(e)
                }
            }
        } else {
            session
                .put_whole(body, desc.size, &desc.digest)
                .await
                .map(|_| ())
        };
        if let Ok(source_error) = errors_rx.try_recv() {
            return Err(source_error);
        }
        result?;
        Ok(())
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
