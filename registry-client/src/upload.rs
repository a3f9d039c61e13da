//! Blob uploads: sessions, monolithic streaming PUT, chunked PATCHes (each
//! body streamed from a source that can be read again from an offset, or
//! a buffered chunk) that resume from the server's upload status, finish,
//! cancel, and cross-repository mount.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{header, Method, StatusCode};
use url::Url;

use crate::auth::Scopes;
use crate::client::{Body, Call, Client};
use crate::digest::Digest;
use crate::error::{redact_url, Error};
use crate::limits::MAX_SERVER_CHUNK;
use crate::manifest::header_str;
use crate::reference::Repository;

/// How many times a chunk is resumed after a failed PATCH.
const PATCH_RESUMES: u32 = 5;

/// An open upload session at a registry. `location` is what to persist to
/// continue it in another run (see [`Client::resume_upload`]).
///
/// A push: open a session (or try a mount), send the bytes in one PUT or
/// in chunks, and close it with the digest, which the registry verifies.
///
/// ```no_run
/// # async fn run(client: registry_client::Client) -> Result<(), registry_client::Error> {
/// use bytes::Bytes;
/// use registry_client::{Digest, Repository};
///
/// let repo = Repository::parse("myacr.azurecr.io/team/app")?;
/// let data = Bytes::from_static(b"a small blob");
/// let digest = Digest::sha256_of(&data);
/// if client.head_blob(&repo, &digest).await?.is_none() {
///     let body = futures::stream::iter([Ok::<_, std::io::Error>(data.clone())]);
///     let session = client.start_upload(&repo).await?;
///     session.put_whole(body, data.len() as u64, &digest).await?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct UploadSession {
    client: Client,
    repo: Repository,
    location: Url,
    offset: u64,
    min_chunk: Option<u64>,
}

impl std::fmt::Debug for UploadSession {
    /// The location's query (upload state, signatures) is redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSession")
            .field("repo", &self.repo)
            .field("location", &redact_url(&self.location))
            .field("offset", &self.offset)
            .field("min_chunk", &self.min_chunk)
            .finish()
    }
}

/// What a mount request achieved.
#[derive(Debug)]
pub enum MountOutcome {
    /// The blob is now in the target repository.
    Mounted,
    /// The registry could not mount and opened an upload session instead.
    Upload(UploadSession),
}

impl Client {
    /// Open an upload session (`POST /v2/<name>/blobs/uploads/`).
    ///
    /// # Errors
    ///
    /// Those of any request; [`Error::Protocol`] for an answer other than
    /// 202 or a `Location` on another host.
    pub async fn start_upload(&self, repo: &Repository) -> Result<UploadSession, Error> {
        let url = self.api_url(repo, "blobs/uploads/")?;
        let resp = self
            .send(Call::new(
                Method::POST,
                url.clone(),
                repo.registry(),
                Scopes::push(repo.name()),
            ))
            .await?;
        self.session_from(repo, &url, resp)
    }

    /// Mount `digest` from `from` (same registry) into `repo`. The token
    /// needs pull on `from` as well as push on `repo`. A registry that cannot
    /// mount (the blob is not there, or it does not mount) opens a session
    /// instead, to upload the blob into.
    ///
    /// # Errors
    ///
    /// As [`Client::start_upload`].
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        from: &Repository,
    ) -> Result<MountOutcome, Error> {
        let mut url = self.api_url(repo, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from.name());
        let scopes = Scopes::push(repo.name()).merge(&Scopes::pull(from.name()));
        let resp = self
            .send(Call::new(
                Method::POST,
                url.clone(),
                repo.registry(),
                scopes,
            ))
            .await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(MountOutcome::Mounted);
        }
        self.session_from(repo, &url, resp)
            .map(MountOutcome::Upload)
    }

    /// Continue a session opened earlier, from its persisted location. Call
    /// [`UploadSession::status`] to learn the offset.
    pub fn resume_upload(&self, repo: &Repository, location: Url) -> UploadSession {
        UploadSession {
            client: self.clone(),
            repo: repo.clone(),
            location,
            offset: 0,
            min_chunk: None,
        }
    }

    fn session_from(
        &self,
        repo: &Repository,
        url: &Url,
        resp: reqwest::Response,
    ) -> Result<UploadSession, Error> {
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Error::Protocol {
                method: "POST".into(),
                url: redact_url(url),
                reason: format!(
                    "expected 202 for a new upload session, got {}",
                    resp.status()
                ),
            });
        }
        let location = location(url, &resp, "POST")?;
        let min_chunk = header_str(&resp, "oci-chunk-min-length").and_then(|v| v.parse().ok());
        Ok(UploadSession {
            client: self.clone(),
            repo: repo.clone(),
            location,
            offset: 0,
            min_chunk,
        })
    }
}

impl UploadSession {
    /// The session's URL as the registry last gave it (it may change with
    /// every chunk): what to persist, and pass to [`Client::resume_upload`].
    /// It holds the upload's state: keep it as private as a token.
    pub fn location(&self) -> &Url {
        &self.location
    }

    /// Bytes the registry has (as far as this session knows).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The registry's minimum chunk size (`OCI-Chunk-Min-Length`), if any.
    pub fn min_chunk_size(&self) -> Option<u64> {
        self.min_chunk
    }

    fn scopes(&self) -> Scopes {
        Scopes::push(self.repo.name())
    }

    /// Ask the registry how much it has (`GET` the session → `Range: 0-N`).
    ///
    /// # Errors
    ///
    /// Not found for a session the registry no longer has
    /// ([`ErrorCode::BlobUploadUnknown`](crate::ErrorCode::BlobUploadUnknown));
    /// [`Error::Protocol`] for an unreadable `Range`.
    pub async fn status(&mut self) -> Result<u64, Error> {
        let call = Call::new(
            Method::GET,
            self.location.clone(),
            self.repo.registry(),
            self.scopes(),
        );
        let resp = self.client.send(call).await?;
        let range = header_str(&resp, header::RANGE.as_str());
        self.location =
            location(&self.location, &resp, "GET").unwrap_or_else(|_| self.location.clone());
        self.offset = match range.as_deref() {
            None => 0,
            Some(r) => parse_range_end(r).ok_or_else(|| Error::Protocol {
                method: "GET".into(),
                url: redact_url(&self.location),
                reason: format!("unreadable upload Range {r:?}"),
            })?,
        };
        Ok(self.offset)
    }

    /// Send one chunk at the current offset (`PATCH`, `Content-Range:
    /// start-end`, explicit Content-Length). The body is not resent on
    /// failure: see [`UploadSession::upload_chunked`]. Returns the new offset.
    ///
    /// # Errors
    ///
    /// Those of any request; [`Error::Protocol`] when the registry reports
    /// holding another amount than was sent.
    pub async fn patch(&mut self, chunk: Bytes) -> Result<u64, Error> {
        if chunk.is_empty() {
            return Ok(self.offset);
        }
        let len = chunk.len() as u64;
        self.patch_body(reqwest::Body::from(chunk), len).await
    }

    /// A `PATCH` of the next `len` (> 0) bytes, `body` sent once.
    async fn patch_body(&mut self, body: reqwest::Body, len: u64) -> Result<u64, Error> {
        let start = self.offset;
        let end = start + len - 1;
        let call = Call::new(
            Method::PATCH,
            self.location.clone(),
            self.repo.registry(),
            self.scopes(),
        )
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_RANGE, &format!("{start}-{end}"))
        .header(header::CONTENT_LENGTH, &len.to_string())
        // A one-shot body: a failed PATCH is continued from the status.
        .body(Body::Stream(Some(body)));
        let resp = self.client.send(call).await?;
        self.location = location(&self.location, &resp, "PATCH")?;
        self.offset = end + 1;
        if let Some(have) =
            header_str(&resp, header::RANGE.as_str()).and_then(|r| parse_range_end(&r))
        {
            // distribution writes `0-0` for one byte as for none.
            if have != self.offset && !(have == 0 && self.offset == 1) {
                return Err(Error::Protocol {
                    method: "PATCH".into(),
                    url: redact_url(&self.location),
                    reason: format!(
                        "sent up to byte {}, the registry reports {have} bytes",
                        self.offset
                    ),
                });
            }
        }
        Ok(self.offset)
    }

    /// Upload a stream in chunks of `chunk_size` (raised to the registry's
    /// minimum). Memory holds one chunk, to send again what a failed PATCH
    /// did not deliver: the session status says how much arrived and the
    /// rest of the chunk follows. A source that can be read again from an
    /// offset holds none with [`UploadSession::upload_chunked_from`].
    /// Returns the bytes the session holds; close it with
    /// [`UploadSession::finish`].
    ///
    /// # Errors
    ///
    /// The stream's own; [`Error::TooLarge`] for a registry minimum past
    /// [`crate::limits::MAX_SERVER_CHUNK`]; a PATCH failure that resuming
    /// did not cure.
    pub async fn upload_chunked<S, E>(&mut self, stream: S, chunk_size: usize) -> Result<u64, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Error>,
    {
        let chunk_size = self.chunk_len(chunk_size)?;
        let mut stream = stream;
        let mut buf = BytesMut::with_capacity(chunk_size);
        loop {
            let next = stream.next().await;
            let at_end = next.is_none();
            if let Some(item) = next {
                buf.extend_from_slice(&item.map_err(Into::into)?);
            }
            while buf.len() >= chunk_size || (at_end && !buf.is_empty()) {
                let n = buf.len().min(chunk_size);
                let chunk = buf.split_to(n).freeze();
                self.patch_resuming(chunk).await?;
            }
            if at_end {
                return Ok(self.offset);
            }
        }
    }

    /// Upload a blob of `size` bytes in chunks of `chunk_size` (raised to
    /// the registry's minimum), each PATCH's body streamed from the source:
    /// memory holds no chunk, only the pieces in flight. `open(offset)`
    /// gives the blob's bytes from `offset` to its end. It is called for the
    /// first chunk at the session's offset, and again after a PATCH that
    /// failed: the session status says how much arrived, and the upload
    /// continues from there (a bounded number of times per chunk). The last
    /// stream is read to its end, so a verifying stream has checked the
    /// digest before this returns. `confirmed` is called after every chunk
    /// the registry accepted (to persist the session's location and
    /// offset, which change with each chunk). Close the session with
    /// [`UploadSession::finish`].
    ///
    /// # Errors
    ///
    /// The source's own, from `open` or its stream (a chunk that broke
    /// because its source did is not resumed); [`Error::Io`] for a stream
    /// that ends before `size` bytes or runs past them; [`Error::TooLarge`]
    /// for a registry minimum past [`crate::limits::MAX_SERVER_CHUNK`]; a
    /// PATCH failure that resuming did not cure.
    pub async fn upload_chunked_from<O, Fut, S, F>(
        &mut self,
        size: u64,
        chunk_size: usize,
        mut open: O,
        mut confirmed: F,
    ) -> Result<u64, Error>
    where
        O: FnMut(u64) -> Fut,
        Fut: Future<Output = Result<S, Error>>,
        S: Stream<Item = Result<Bytes, Error>> + Send + 'static,
        F: FnMut(&UploadSession),
    {
        let chunk_size = self.chunk_len(chunk_size)? as u64;
        let source: Shared = Arc::default();
        while self.offset < size {
            let start = self.offset;
            let end = start.saturating_add(chunk_size).min(size);
            let mut resumes = 0;
            loop {
                source_at(&source, self.offset, &mut open).await?;
                let len = end - self.offset;
                let body = ChunkBody::next(&source, len);
                let sent = self.patch_body(reqwest::Body::wrap_stream(body), len).await;
                let source_failed = ChunkSource::end_turn(&source);
                match sent {
                    Ok(_) => break,
                    Err(e) => {
                        if let Some(failed) = source_failed {
                            return Err(failed);
                        }
                        if !resumable(&e) || resumes >= PATCH_RESUMES {
                            return Err(e);
                        }
                        resumes += 1;
                        if self.resume_point(&e, start, end, resumes).await? == end {
                            break;
                        }
                    }
                }
            }
            confirmed(self);
        }
        // The stream is read to its end, where a verifying stream checks
        // the digest (for a session continued whole, that is all of it).
        source_at(&source, self.offset, &mut open).await?;
        ChunkSource::read_to_end(&source, size).await?;
        Ok(self.offset)
    }

    /// The chunk size to use: `asked`, raised to the registry's minimum
    /// when that is within [`MAX_SERVER_CHUNK`].
    fn chunk_len(&self, asked: usize) -> Result<usize, Error> {
        let min_chunk = self.min_chunk.unwrap_or(0);
        if min_chunk > MAX_SERVER_CHUNK {
            return Err(Error::TooLarge {
                what: format!(
                    "the upload chunk the registry asks for (OCI-Chunk-Min-Length {min_chunk})"
                ),
                url: redact_url(&self.location),
                limit: MAX_SERVER_CHUNK,
            });
        }
        // Within the bound, so it fits a usize on every supported target.
        Ok(asked.max(min_chunk as usize).max(1))
    }

    async fn patch_resuming(&mut self, chunk: Bytes) -> Result<(), Error> {
        let start = self.offset;
        let end = start + chunk.len() as u64;
        let mut resumes = 0;
        loop {
            let sent_from = self.offset;
            let rest = chunk.slice((sent_from - start) as usize..);
            match self.patch(rest).await {
                Ok(_) => return Ok(()),
                Err(e) if resumable(&e) && resumes < PATCH_RESUMES => {
                    resumes += 1;
                    if self.resume_point(&e, start, end, resumes).await? == end {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After a failed PATCH of the chunk `start..end`: wait out the
    /// backoff, then ask the registry how much it holds, which must lie in
    /// the chunk. The session's offset is then that amount.
    async fn resume_point(
        &mut self,
        error: &Error,
        start: u64,
        end: u64,
        resumes: u32,
    ) -> Result<u64, Error> {
        tracing::debug!(error = %error, "PATCH failed; asking the registry how much arrived");
        tokio::time::sleep(self.client.config().retry.backoff(resumes)).await;
        let have = self.status().await?;
        if have < start || have > end {
            return Err(Error::Protocol {
                method: "PATCH".into(),
                url: redact_url(&self.location),
                reason: format!(
                    "after a failed chunk the registry holds {have} bytes, outside the chunk {start}..{end}"
                ),
            });
        }
        Ok(have)
    }

    /// Close the session: `PUT ?digest=`. The registry verifies the digest.
    ///
    /// # Errors
    ///
    /// The registry's refusal ([`ErrorCode::DigestInvalid`](crate::ErrorCode::DigestInvalid)
    /// for bytes of another digest, [`ErrorCode::SizeInvalid`](crate::ErrorCode::SizeInvalid));
    /// [`Error::Protocol`] when it says it committed another digest.
    pub async fn finish(self, digest: &Digest) -> Result<Digest, Error> {
        self.put(digest, Body::Empty, None).await
    }

    /// The whole blob in one streamed `PUT ?digest=` of known length. The
    /// stream is sent once: a failure is not retried (open a new session).
    ///
    /// # Errors
    ///
    /// As [`UploadSession::finish`], and the stream's own.
    pub async fn put_whole<S>(self, body: S, len: u64, digest: &Digest) -> Result<Digest, Error>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        self.put(
            digest,
            Body::Stream(Some(reqwest::Body::wrap_stream(body))),
            Some(len),
        )
        .await
    }

    async fn put(self, digest: &Digest, body: Body, len: Option<u64>) -> Result<Digest, Error> {
        let mut url = self.location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut call = Call::new(
            Method::PUT,
            url.clone(),
            self.repo.registry(),
            self.scopes(),
        )
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body);
        call = call.header(header::CONTENT_LENGTH, &len.unwrap_or(0).to_string());
        match self.client.send(call).await {
            Ok(resp) => {
                if let Some(got) =
                    header_str(&resp, "docker-content-digest").and_then(|d| Digest::parse(&d).ok())
                {
                    // Registries may answer in their canonical algorithm
                    // (distribution says sha256 for a sha512 upload).
                    if got.algorithm() == digest.algorithm() && &got != digest {
                        return Err(Error::Protocol {
                            method: "PUT".into(),
                            url: redact_url(&url),
                            reason: format!("the registry committed {got}, not {digest}"),
                        });
                    }
                }
                Ok(digest.clone())
            }
            // A retried PUT whose first try landed finds no session: the
            // blob being there is success.
            Err(e) if e.is_not_found() => match self.client.head_blob(&self.repo, digest).await {
                Ok(Some(_)) => Ok(digest.clone()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Abandon the session (`DELETE`). A session the registry no longer has
    /// is already gone: that is success.
    ///
    /// # Errors
    ///
    /// Those of any request.
    pub async fn cancel(self) -> Result<(), Error> {
        let call = Call::new(
            Method::DELETE,
            self.location.clone(),
            self.repo.registry(),
            self.scopes(),
        );
        match self.client.send(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Whether a failed PATCH is worth asking the session's status about: a
/// transient failure, or a registry whose account of the session differs
/// from ours.
fn resumable(e: &Error) -> bool {
    e.is_retryable() || e.kind() == crate::ErrorKind::Protocol
}

type SourceStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;
type Shared = Arc<Mutex<ChunkSource>>;

/// A blob's bytes as the bodies of its chunks take them, from one stream.
#[derive(Default)]
struct ChunkSource {
    stream: Option<SourceStream>,
    /// The blob offset of the next byte handed out.
    at: u64,
    /// Read past the last chunk's end: the next chunk's first bytes.
    spare: Bytes,
    /// The stream's own failure: the chunk it broke is not resumed.
    failed: Option<Error>,
    /// Which body may read. A connection may hold on to a body after its
    /// PATCH ended; that body must not take the next chunk's bytes.
    turn: u64,
}

fn lock(source: &Shared) -> std::sync::MutexGuard<'_, ChunkSource> {
    source.lock().expect("chunk source")
}

/// Make `source` give the blob's bytes from `offset`: with the stream it
/// has when that stands there, else with a new one from `open`.
async fn source_at<O, Fut, S>(source: &Shared, offset: u64, open: &mut O) -> Result<(), Error>
where
    O: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<S, Error>>,
    S: Stream<Item = Result<Bytes, Error>> + Send + 'static,
{
    let old = {
        let mut s = lock(source);
        if s.stream.is_some() && s.at == offset {
            return Ok(());
        }
        s.spare = Bytes::new();
        s.stream.take()
    };
    // The old stream goes first: it may hold a host permit, or a spool
    // file that the new one reads.
    drop(old);
    let stream = open(offset).await?;
    let mut s = lock(source);
    s.stream = Some(Box::pin(stream));
    s.at = offset;
    s.failed = None;
    Ok(())
}

impl ChunkSource {
    /// The PATCH of the current body ended: no body reads until the next
    /// one. Returns the source's failure if that broke the body.
    fn end_turn(source: &Shared) -> Option<Error> {
        let mut s = lock(source);
        s.turn += 1;
        s.failed.take()
    }

    /// Read the rest of the stream, which must hold no more bytes: a
    /// verifying stream reports a wrong digest at its end.
    async fn read_to_end(source: &Shared, size: u64) -> Result<(), Error> {
        let (stream, spare) = {
            let mut s = lock(source);
            (s.stream.take(), std::mem::take(&mut s.spare))
        };
        let too_long = || {
            Error::io(
                "reading the blob to upload",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the source has more than the blob's {size} bytes"),
                ),
            )
        };
        if !spare.is_empty() {
            return Err(too_long());
        }
        let Some(mut stream) = stream else {
            return Ok(());
        };
        while let Some(item) = stream.next().await {
            if !item?.is_empty() {
                return Err(too_long());
            }
        }
        Ok(())
    }
}

/// One PATCH's body: the next `left` bytes of the source, passed through
/// as they arrive.
struct ChunkBody {
    source: Shared,
    turn: u64,
    left: u64,
}

impl ChunkBody {
    /// The body of the next chunk, `len` bytes; it takes the turn.
    fn next(source: &Shared, len: u64) -> Self {
        let mut s = lock(source);
        s.turn += 1;
        ChunkBody {
            source: source.clone(),
            turn: s.turn,
            left: len,
        }
    }
}

impl Stream for ChunkBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let mut guard = lock(&this.source);
        let s = &mut *guard;
        if s.turn != this.turn {
            return Poll::Ready(Some(Err(io::Error::other("this chunk's PATCH has ended"))));
        }
        loop {
            let mut piece = if s.spare.is_empty() {
                let Some(stream) = s.stream.as_mut() else {
                    return Poll::Ready(Some(Err(io::Error::other("the source has failed"))));
                };
                match stream.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(piece))) => piece,
                    Poll::Ready(Some(Err(e))) => {
                        let shown = io::Error::other(e.to_string());
                        s.failed = Some(e);
                        s.stream = None;
                        return Poll::Ready(Some(Err(shown)));
                    }
                    Poll::Ready(None) => {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the source ended at byte {}, inside a chunk", s.at),
                        );
                        let shown = io::Error::new(e.kind(), e.to_string());
                        s.failed = Some(Error::io("reading the blob to upload", e));
                        s.stream = None;
                        return Poll::Ready(Some(Err(shown)));
                    }
                }
            } else {
                std::mem::take(&mut s.spare)
            };
            if piece.is_empty() {
                continue;
            }
            if piece.len() as u64 > this.left {
                s.spare = piece.split_off(this.left as usize);
            }
            s.at += piece.len() as u64;
            this.left -= piece.len() as u64;
            return Poll::Ready(Some(Ok(piece)));
        }
    }
}

/// The session URL from a `Location` header, resolved against the request.
/// It must stay on the request's origin (scheme, host and port): the blob
/// and the session's state go where it points, and a registry naming
/// another host (or plain http) there is refused, not followed.
fn location(base: &Url, resp: &reqwest::Response, method: &str) -> Result<Url, Error> {
    let loc = header_str(resp, header::LOCATION.as_str()).ok_or_else(|| Error::Protocol {
        method: method.into(),
        url: redact_url(base),
        reason: "no Location header for the upload session".into(),
    })?;
    let next = base.join(&loc).map_err(|e| Error::Protocol {
        method: method.into(),
        url: redact_url(base),
        reason: format!("unusable upload Location: {e}"),
    })?;
    if next.origin() != base.origin() {
        return Err(Error::Protocol {
            method: method.into(),
            url: redact_url(base),
            reason: format!(
                "the upload Location points to another host ({}); refusing to send the blob there",
                next.origin().ascii_serialization()
            ),
        });
    }
    Ok(next)
}

/// `0-99` (or `bytes=0-99`) → 100 bytes held. distribution writes `0-0`
/// for an empty session, so that reads as 0.
pub(crate) fn parse_range_end(r: &str) -> Option<u64> {
    let r = r
        .trim()
        .trim_start_matches("bytes=")
        .trim_start_matches("bytes ");
    let (start, end) = r.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if start != 0 {
        return None;
    }
    // `0-18446744073709551615` would hold more bytes than a u64 counts.
    Some(if end == 0 { 0 } else { end.checked_add(1)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_session_state() {
        let client = Client::new(crate::ClientConfig::default()).unwrap();
        let repo = Repository::parse("r.io/a").unwrap();
        let url =
            Url::parse("https://r.io/v2/a/blobs/uploads/u?_state=SECRETSTATE&sig=SIG").unwrap();
        let shown = format!("{:?}", client.resume_upload(&repo, url));
        assert!(
            !shown.contains("SECRETSTATE") && !shown.contains("SIG"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_chunk_size_past_the_bound_is_refused_before_anything_is_held() {
        let client = Client::new(crate::ClientConfig::default()).unwrap();
        let repo = Repository::parse("r.io/a").unwrap();
        let url = Url::parse("https://r.io/v2/a/blobs/uploads/u").unwrap();
        for asked in [u64::MAX, MAX_SERVER_CHUNK + 1] {
            let mut session = client.resume_upload(&repo, url.clone());
            session.min_chunk = Some(asked);
            let data = futures::stream::iter([Ok::<_, Error>(Bytes::from_static(b"x"))]);
            let err = session.upload_chunked(data, 1024).await.unwrap_err();
            assert!(matches!(err, Error::TooLarge { .. }), "{err}");
            assert!(err.to_string().contains(&asked.to_string()), "{err}");
            let mut opened = 0;
            let open = |_| {
                opened += 1;
                async { Ok(futures::stream::empty::<Result<Bytes, Error>>()) }
            };
            let err = session
                .upload_chunked_from(10_000, 1024, open, |_| {})
                .await
                .unwrap_err();
            assert_eq!(opened, 0, "nothing is read for a refused chunk size");
            assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        }
    }

    fn shared_source(pieces: &[&'static [u8]]) -> Shared {
        let items: Vec<Result<Bytes, Error>> =
            pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        let source: Shared = Arc::default();
        lock(&source).stream = Some(Box::pin(futures::stream::iter(items)));
        source
    }

    async fn body_bytes(body: ChunkBody) -> Result<Vec<u8>, io::Error> {
        let pieces: Vec<Bytes> = futures::TryStreamExt::try_collect(body).await?;
        Ok(pieces.concat())
    }

    #[tokio::test]
    async fn chunk_bodies_pass_the_source_through_split_at_chunk_ends() {
        let source = shared_source(&[b"abc", b"defgh", b"ijkl"]);
        let mut got = Vec::new();
        for len in [4, 4, 4] {
            got.push(body_bytes(ChunkBody::next(&source, len)).await.unwrap());
            assert!(ChunkSource::end_turn(&source).is_none());
        }
        assert_eq!(got, [&b"abcd"[..], b"efgh", b"ijkl"]);
        assert_eq!(lock(&source).at, 12);
        ChunkSource::read_to_end(&source, 12).await.unwrap();
    }

    #[tokio::test]
    async fn a_body_whose_patch_ended_takes_nothing_from_the_next_chunk() {
        let source = shared_source(&[b"abcd", b"efgh"]);
        let stale = ChunkBody::next(&source, 4);
        ChunkSource::end_turn(&source);
        let current = ChunkBody::next(&source, 4);
        assert!(body_bytes(stale).await.is_err());
        assert_eq!(body_bytes(current).await.unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn a_source_that_breaks_or_ends_inside_a_chunk_is_the_error() {
        let items = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(Error::io(
                "reading the source",
                io::Error::other("disk gone"),
            )),
        ];
        let source: Shared = Arc::default();
        lock(&source).stream = Some(Box::pin(futures::stream::iter(items)));
        assert!(body_bytes(ChunkBody::next(&source, 4)).await.is_err());
        let failed = ChunkSource::end_turn(&source).expect("the source's failure");
        assert!(failed.to_string().contains("disk gone"), "{failed}");

        let short = shared_source(&[b"ab"]);
        assert!(body_bytes(ChunkBody::next(&short, 4)).await.is_err());
        let failed = ChunkSource::end_turn(&short).expect("the early end");
        assert!(failed.to_string().contains("ended at byte 2"), "{failed}");
    }

    #[tokio::test]
    async fn a_source_longer_than_the_blob_is_refused_at_its_end() {
        let source = shared_source(&[b"abcdef"]);
        body_bytes(ChunkBody::next(&source, 4)).await.unwrap();
        let err = ChunkSource::read_to_end(&source, 4).await.unwrap_err();
        assert!(
            err.to_string().contains("more than the blob's 4 bytes"),
            "{err}"
        );
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_range_end("0-99"), Some(100));
        assert_eq!(parse_range_end("bytes=0-99"), Some(100));
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end("junk"), None);
    }

    /// Found by fuzz/fuzz_targets/content_range.rs: the end plus one
    /// overflowed (a panic in debug builds, 0 held in release).
    #[test]
    fn an_upload_range_ending_at_u64_max_is_refused() {
        assert_eq!(parse_range_end("0-18446744073709551615"), None);
        assert_eq!(parse_range_end("0-18446744073709551614"), Some(u64::MAX));
    }
}
