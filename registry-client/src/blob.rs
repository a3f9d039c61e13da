//! Blob reads: HEAD, and GET as a verified stream from any offset.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http::{header, Method, StatusCode};

use crate::auth::Scopes;
use crate::client::{Call, Client};
use crate::digest::{Digest, Hasher, Verifier};
use crate::error::{redact_url, Error, TransportError};
use crate::manifest::header_str;
use crate::reference::Repository;

/// How to read a blob ([`Client::get_blob`]). The default reads it whole,
/// checking only the digest.
#[derive(Debug, Clone, Default)]
pub struct BlobRead {
    /// The size the descriptor promises; the stream fails beyond it.
    pub size: Option<u64>,
    /// The hasher of bytes already held: the read starts at its length and
    /// the digest check covers the whole blob.
    pub resume: Option<Hasher>,
}

impl Client {
    /// The blob's size, or `None` when the repository does not have it.
    ///
    /// # Errors
    ///
    /// Those of any request (auth, transport, status); [`Error::Protocol`]
    /// for an answer without `Content-Length`.
    pub async fn head_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Option<u64>, Error> {
        let url = self.api_url(repo, &format!("blobs/{digest}"))?;
        let call = Call::new(
            Method::HEAD,
            url.clone(),
            repo.registry(),
            Scopes::pull(repo.name()),
        );
        match self.send(call).await {
            Ok(resp) => {
                let size = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::Protocol {
                        method: "HEAD".into(),
                        url: redact_url(&url),
                        reason: "no Content-Length for an existing blob".into(),
                    })?;
                Ok(Some(size))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stream a blob, verified: the stream yields an error instead of its
    /// end when the size or digest is wrong. Resumes with `Range` from
    /// `read.resume`'s length; a server that ignores `Range` and answers 200
    /// is coped with by skipping the bytes already held.
    ///
    /// The stream holds one of the host's read permits
    /// ([`ClientConfig::max_requests_per_host`](crate::ClientConfig)) until it
    /// ends, fails or is dropped: read streams in turn rather than opening
    /// more than the cap before reading any.
    ///
    /// ```no_run
    /// # async fn run(client: registry_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use futures::StreamExt;
    /// use registry_client::{BlobRead, Reference};
    ///
    /// let image = Reference::parse("docker.io/library/alpine:3.20")?;
    /// let manifest = client.get_manifest(&image).await?;
    /// let config = manifest.content()?.config.ok_or("not an image manifest")?;
    /// let read = BlobRead { size: Some(config.size), ..BlobRead::default() };
    /// let mut stream = client.get_blob(image.repository(), &config.digest, read).await?;
    /// let mut bytes = Vec::new();
    /// while let Some(chunk) = stream.next().await {
    ///     // The last item is an error if the size or digest is wrong.
    ///     bytes.extend_from_slice(&chunk?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Not found for a blob the repository lacks
    /// ([`ErrorCode::BlobUnknown`](crate::ErrorCode::BlobUnknown));
    /// [`Error::InvalidHasherState`] for a resume hasher of another
    /// algorithm; [`Error::Protocol`] for a range answered from elsewhere
    /// than asked. The stream's items fail with [`Error::Transport`] or
    /// [`Error::Timeout`] (resume from [`BlobStream::hasher`]),
    /// [`Error::SizeMismatch`] or [`Error::DigestMismatch`].
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        read: BlobRead,
    ) -> Result<BlobStream, Error> {
        let url = self.api_url(repo, &format!("blobs/{digest}"))?;
        let verifier = match read.resume {
            Some(h) => Verifier::resume(digest.clone(), read.size, h)?,
            None => Verifier::new(digest.clone(), read.size),
        };
        let offset = verifier.offset();
        let mut call = Call::new(
            Method::GET,
            url.clone(),
            repo.registry(),
            Scopes::pull(repo.name()),
        );
        if offset > 0 {
            // A continuation of a read that held a host permit: it does not
            // queue behind other requests (see `Call::limited`).
            call = call
                .header(header::RANGE, &format!("bytes={offset}-"))
                .unlimited();
        }
        let resp = self.send(call).await?;
        let mut skip = 0;
        if offset > 0 {
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => {
                    let start = header_str(&resp, header::CONTENT_RANGE.as_str())
                        .and_then(|v| parse_content_range_start(&v));
                    if start != Some(offset) {
                        return Err(Error::Protocol {
                            method: "GET".into(),
                            url: redact_url(&url),
                            reason: format!("asked for bytes from {offset}, got Content-Range starting at {start:?}"),
                        });
                    }
                }
                StatusCode::OK => skip = offset,
                other => {
                    return Err(Error::Protocol {
                        method: "GET".into(),
                        url: redact_url(&url),
                        reason: format!("unexpected HTTP {other} for a range request"),
                    })
                }
            }
        }
        Ok(BlobStream {
            body: Box::pin(resp.bytes_stream()),
            verifier: Some(verifier),
            skip,
            url: redact_url(&url),
        })
    }
}

/// `bytes 100-199/200` → 100. A range that ends before it starts is none.
pub(crate) fn parse_content_range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes").unwrap_or(v).trim();
    let start: u64 = v.split(['-', '/']).next()?.trim().parse().ok()?;
    let end = v.split_once('-').and_then(|(_, e)| e.split('/').next());
    match end.and_then(|e| e.trim().parse::<u64>().ok()) {
        Some(end) if end < start => None,
        _ => Some(start),
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A blob's bytes, hashed and counted as they pass. The last item is an
/// error if the size or digest is wrong; a transport error mid-way leaves
/// [`BlobStream::hasher`] at the verified offset to resume from.
pub struct BlobStream {
    body: ByteStream,
    verifier: Option<Verifier>,
    skip: u64,
    url: String,
}

impl BlobStream {
    /// Bytes verified so far (those held before a resume included).
    pub fn offset(&self) -> u64 {
        self.verifier.as_ref().map_or(0, |v| v.offset())
    }

    /// The hasher over every byte so far, to save for a resume.
    pub fn hasher(&self) -> Option<Hasher> {
        self.verifier.as_ref().map(|v| v.hasher().clone())
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStream({}, offset {})", self.url, self.offset())
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.verifier.is_none() {
                return Poll::Ready(None);
            }
            match self.body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(Error::Transport {
                        method: "GET".into(),
                        url: self.url.clone(),
                        source: TransportError::new(e),
                    })));
                }
                Poll::Ready(Some(Ok(mut chunk))) => {
                    if self.skip > 0 {
                        let n = self.skip.min(chunk.len() as u64);
                        self.skip -= n;
                        chunk = chunk.slice(n as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    let verifier = self.verifier.as_mut().expect("checked above");
                    if let Err(e) = verifier.update(&chunk) {
                        self.verifier = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(None) => {
                    let verifier = self.verifier.take().expect("checked above");
                    return match verifier.finish() {
                        Ok(_) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("100-199/*"), Some(100));
        assert_eq!(parse_content_range_start("bytes */200"), None);
    }

    /// Found by fuzz/fuzz_targets/content_range.rs: `bytes 500-0` was
    /// taken as a range starting at 500.
    #[test]
    fn a_content_range_ending_before_its_start_is_none() {
        assert_eq!(parse_content_range_start("bytes 500-0"), None);
        assert_eq!(parse_content_range_start("bytes 500-500/501"), Some(500));
    }
}
