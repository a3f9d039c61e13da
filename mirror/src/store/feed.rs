//! Blob feeds: a blob's bytes from any offset, for stores that can continue
//! an interrupted upload from where the server says it stopped.

use std::sync::Arc;

use futures::StreamExt;
use registry_client::{Descriptor, Hasher};

use super::{BlobStream, ImageSource, StoreError};

/// A blob's bytes from any offset. The stream from `offset` yields the bytes
/// at `offset..size`, and ends in an error, never a clean end, when the blob
/// as a whole does not match its descriptor.
#[async_trait::async_trait]
pub trait BlobFeed: Send + Sync {
    async fn open(&self, offset: u64) -> Result<BlobStream, StoreError>;
}

/// Reads straight from the source store. From an offset it reads from the
/// start and drops what the target already has: without a saved hash state
/// the bytes before the offset must pass through the verifier again.
pub struct DirectFeed {
    pub source: Arc<dyn ImageSource>,
    pub desc: Descriptor,
}

#[async_trait::async_trait]
impl BlobFeed for DirectFeed {
    async fn open(&self, offset: u64) -> Result<BlobStream, StoreError> {
        let stream = self.source.read_blob(&self.desc).await?;
        Ok(skip_bytes(stream, offset))
    }
}

/// A stream without its first `n` bytes (still read, so still verified).
pub fn skip_bytes(stream: BlobStream, n: u64) -> BlobStream {
    if n == 0 {
        return stream;
    }
    let mut left = n;
    Box::pin(stream.filter_map(move |item| {
        let out = match item {
            Ok(mut chunk) if left > 0 => {
                let drop = left.min(chunk.len() as u64);
                left -= drop;
                let rest = chunk.split_off(drop as usize);
                (!rest.is_empty()).then_some(Ok(rest))
            }
            other => Some(other),
        };
        futures::future::ready(out)
    }))
}

/// The default for stores that cannot resume a read: read from the start
/// and skip what `held` covers (it is hashed again on the way).
pub async fn read_from_start<S: ImageSource + ?Sized>(
    store: &S,
    desc: &Descriptor,
    held: Hasher,
) -> Result<BlobStream, StoreError> {
    let stream = store.read_blob(desc).await?;
    Ok(skip_bytes(stream, held.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn skipping_crosses_chunk_boundaries() {
        let chunks = ["abc", "defg", "h"].map(|s| Ok(Bytes::from_static(s.as_bytes())));
        let stream: BlobStream = Box::pin(futures::stream::iter(chunks));
        let got: Vec<Bytes> = skip_bytes(stream, 5).try_collect().await.unwrap();
        assert_eq!(got.concat(), b"fgh");
    }
}
