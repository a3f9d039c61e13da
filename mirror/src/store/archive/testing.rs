//! What the reader's and the writer's tests share: blobs, streams, a
//! manifest over blobs, and a look at what landed on disk.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use futures::{stream, StreamExt};
use registry_client::{media_type, Descriptor, Digest, Manifest};
use serde_json::{json, Value};

use crate::store::{BlobStream, StoreError};

pub(super) fn desc(data: &[u8]) -> Descriptor {
    Descriptor::new(
        media_type::OCTET_STREAM,
        Digest::sha256_of(data),
        data.len() as u64,
    )
}

pub(super) fn chunks(data: &[u8], size: usize) -> BlobStream {
    let parts: Vec<_> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts).boxed()
}

pub(super) async fn read_all(s: BlobStream) -> Result<Vec<u8>, StoreError> {
    let mut s = s;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

/// A manifest naming `blobs` as layers (no config: enough for the store).
pub(super) fn manifest_over(blobs: &[&[u8]]) -> Manifest {
    let layers: Vec<Value> = blobs
        .iter()
        .map(|b| json!({"mediaType": "application/octet-stream", "digest": Digest::sha256_of(b).to_string(), "size": b.len()}))
        .collect();
    let bytes = Bytes::from(
        serde_json::to_vec_pretty(
            &json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST, "layers": layers}),
        )
        .unwrap(),
    );
    Manifest {
        media_type: media_type::OCI_MANIFEST.into(),
        digest: Digest::sha256_of(&bytes),
        bytes,
    }
}

/// The entry names of a tar, as the `tar` crate reads them.
pub(super) fn entry_names(path: &Path) -> Vec<String> {
    let mut ar = ::tar::Archive::new(fs::File::open(path).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

pub(super) fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
