//! A blob over 256 MiB streams up and down through flat memory. In its own
//! test binary so no other test's allocations blur the measurement.

use bytes::Bytes;
use futures::{stream, StreamExt};
use mirror_tests::images::blob;
use mirror_tests::memory::{reset_peak, status_kib};
use mirror_tests::setup::open_registry_with_repo;
use registry_client::{Algorithm, BlobRead, Hasher};

const CHUNK: usize = 1024 * 1024;
const CHUNKS: usize = 300;
/// Far below the blob's 300 MiB; what the HTTP stack and buffers may use.
const MAX_GROWTH: u64 = 64 * 1024 * 1024;

#[tokio::test]
async fn a_300_mib_blob_streams_up_and_down_with_flat_memory() {
    let (_reg, c, r) = open_registry_with_repo("big/blob").await;
    let piece: Bytes = blob(42, CHUNK);
    let mut h = Hasher::new(Algorithm::Sha256);
    for _ in 0..CHUNKS {
        h.update(&piece);
    }
    let digest = h.finish();
    let total = (CHUNK * CHUNKS) as u64;

    reset_peak();
    let base = status_kib("VmRSS:") * 1024;
    let body = stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(piece.clone())));
    let session = c.start_upload(&r).await.unwrap();
    session.put_whole(body, total, &digest).await.unwrap();
    let up_peak = status_kib("VmHWM:") * 1024;
    assert_eq!(c.head_blob(&r, &digest).await.unwrap(), Some(total));

    reset_peak();
    let mut s = c
        .get_blob(
            &r,
            &digest,
            BlobRead {
                size: Some(total),
                resume: None,
            },
        )
        .await
        .unwrap();
    let mut seen = 0u64;
    while let Some(chunk) = s.next().await {
        seen += chunk.unwrap().len() as u64;
    }
    assert_eq!(seen, total);
    let down_peak = status_kib("VmHWM:") * 1024;
    eprintln!(
        "baseline {} MiB, upload peak {} MiB, download peak {} MiB",
        base >> 20,
        up_peak >> 20,
        down_peak >> 20
    );
    assert!(
        up_peak.saturating_sub(base) < MAX_GROWTH,
        "upload grew memory by {} MiB",
        (up_peak - base) >> 20
    );
    assert!(
        down_peak.saturating_sub(base) < MAX_GROWTH,
        "download grew memory by {} MiB",
        (down_peak - base) >> 20
    );
}
