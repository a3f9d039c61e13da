//! Chunked uploads whose chunk bodies stream from a source that can be read
//! again from an offset (`UploadSession::upload_chunked_from`), against a
//! real registry behind the scripted proxy: a blob of many chunks lands
//! byte for byte, a chunk cut midway is resumed from the registry's upload
//! status with the source read again from there, and a source that breaks
//! inside a chunk ends the upload with its own error; through `mirror copy`
//! a blob that is not spooled has its cut chunk read from the source
//! again, since no chunk is held in memory. (The buffered
//! `upload_chunked` is tested in `blobs.rs` and `faults.rs`; flat memory in
//! `chunked_upload_memory.rs`.)

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream;
use http::Method;
use mirror_tests::cli::copy_json;
use mirror_tests::images::{blob, client, image, push_to, read_all, repo, tag_digest};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, FaultProxy, Rule};
use registry_client::{BlobRead, Digest, Error};

const MIB: usize = 1024 * 1024;

/// A source over `data` that records the offset of every read.
#[derive(Clone)]
struct Source {
    data: Bytes,
    opened: Arc<Mutex<Vec<u64>>>,
}

impl Source {
    fn new(data: Bytes) -> Self {
        Source {
            data,
            opened: Arc::default(),
        }
    }

    /// The bytes from `offset`, in 64 KiB pieces.
    async fn open(
        &self,
        offset: u64,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, Error>> + Send + 'static, Error> {
        self.opened.lock().unwrap().push(offset);
        let rest = self.data.slice(offset as usize..);
        let pieces: Vec<Result<Bytes, Error>> = (0..rest.len())
            .step_by(64 * 1024)
            .map(|i| Ok(rest.slice(i..(i + 64 * 1024).min(rest.len()))))
            .collect();
        Ok(stream::iter(pieces))
    }

    fn opened(&self) -> Vec<u64> {
        self.opened.lock().unwrap().clone()
    }
}

/// The `Content-Range` of every PATCH the proxy saw, in order.
fn patch_ranges(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .requests()
        .iter()
        .filter(|q| q.method == Method::PATCH)
        .map(|q| {
            q.headers
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn status_gets(proxy: &FaultProxy) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|q| q.method == Method::GET && q.path.contains("/blobs/uploads/"))
        .count()
}

#[tokio::test]
async fn a_blob_of_many_chunks_streams_in_and_lands_byte_for_byte() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "chunks/many");
    let data = blob(21, 5 * MIB + 3);
    let d = Digest::sha256_of(&data);
    let source = Source::new(data.clone());

    let mut s = c.start_upload(&r).await.unwrap();
    let mut confirmed = Vec::new();
    let sent = s
        .upload_chunked_from(
            data.len() as u64,
            MIB,
            |offset| {
                let source = source.clone();
                async move { source.open(offset).await }
            },
            |s| confirmed.push(s.offset()),
        )
        .await
        .unwrap();
    s.finish(&d).await.unwrap();

    assert_eq!(sent, data.len() as u64);
    let mib = MIB as u64;
    let ends: Vec<u64> = (1..6).map(|n| n * mib).chain([sent]).collect();
    assert_eq!(confirmed, ends, "each chunk confirmed as it landed");
    let ranges = patch_ranges(&proxy);
    let expected: Vec<String> = (0..6)
        .map(|n| format!("{}-{}", n * mib, ((n + 1) * mib).min(sent) - 1))
        .collect();
    assert_eq!(ranges, expected, "six PATCHes, one after the other");
    assert_eq!(source.opened(), [0], "the source read once");
    let back = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(back, data);
}

#[tokio::test]
async fn a_patch_cut_midway_is_resumed_from_the_status_with_the_source_read_again_from_there() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "chunks/cut");
    let data = blob(22, 4 * MIB + 5);
    let d = Digest::sha256_of(&data);
    let source = Source::new(data.clone());
    // The third chunk's connection dies after its headers, before any of
    // its body is stored (distribution drops a session whose PATCH broke
    // after some of its body: `faults.rs` shows that).
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(0))
            .method(Method::PATCH)
            .nth(3),
    );

    let mut s = c.start_upload(&r).await.unwrap();
    s.upload_chunked_from(
        data.len() as u64,
        MIB,
        |offset| {
            let source = source.clone();
            async move { source.open(offset).await }
        },
        |_| {},
    )
    .await
    .unwrap();
    s.finish(&d).await.unwrap();

    let mib = MIB as u64;
    let ranges = patch_ranges(&proxy);
    assert_eq!(ranges.len(), 6, "five chunks, the third twice: {ranges:?}");
    assert_eq!(ranges[2], ranges[3], "the cut chunk is sent again whole");
    assert_eq!(ranges[3], format!("{}-{}", 2 * mib, 3 * mib - 1));
    assert_eq!(status_gets(&proxy), 1, "one status request after the cut");
    assert_eq!(
        source.opened(),
        [0, 2 * mib],
        "the source is read again from the offset the registry confirmed"
    );
    let back = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(back, data);
}

#[tokio::test]
async fn a_source_that_breaks_inside_a_chunk_ends_the_upload_with_its_own_error() {
    let (_reg, proxy) = open_registry_behind_proxy().await;
    let c = client(&proxy.host(), None);
    let r = repo(&proxy.host(), "chunks/broken-source");
    let data = blob(23, 3 * MIB);
    let d = Digest::sha256_of(&data);
    let opened = Arc::new(Mutex::new(0));

    let mut s = c.start_upload(&r).await.unwrap();
    let first = data.slice(..MIB + MIB / 2);
    let err = s
        .upload_chunked_from(
            data.len() as u64,
            MIB,
            |_| {
                *opened.lock().unwrap() += 1;
                let first = first.clone();
                async move {
                    let broken = Error::Io {
                        context: "reading the test source".into(),
                        source: std::io::Error::other("disk gone"),
                    };
                    Ok(stream::iter([Ok(first), Err(broken)]))
                }
            },
            |_| {},
        )
        .await
        .unwrap_err();

    assert!(err.to_string().contains("disk gone"), "{err}");
    assert_eq!(*opened.lock().unwrap(), 1, "not read again");
    // The broken chunk's PATCH may not have reached the proxy at all.
    let patches = patch_ranges(&proxy);
    assert!(patches.len() <= 2, "no PATCH after the break: {patches:?}");
    assert_eq!(status_gets(&proxy), 0, "not resumed");
    s.cancel().await.unwrap();
    assert_eq!(
        c.head_blob(&r, &d).await.unwrap(),
        None,
        "nothing committed"
    );
}

#[tokio::test]
async fn mirror_copy_sends_a_cut_chunk_again_from_the_source_in_the_same_session() {
    let (_src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image(24, &[3_000_000], false);
    push_to(&src_proxy.host(), "chunks/copy", "v1", &img).await;
    src_proxy.clear_requests();
    dst_proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(0))
            .method(Method::PATCH)
            .nth(3),
    );
    copy_json(&[
        "--chunk-threshold",
        "512K",
        "--chunk-size",
        "512K",
        // Not spooled: the bytes come again from the source.
        "--spool-threshold",
        "64G",
        &format!("{}/chunks/copy:v1", src_proxy.host()),
        &format!("{}/chunks/copy", dst_proxy.host()),
    ])
    .await
    .assert_code(0);

    assert_eq!(
        tag_digest(&dst.host(), "chunks/copy", "v1").await,
        Some(img.digest.clone())
    );
    let ranges = patch_ranges(&dst_proxy);
    assert_eq!(ranges.len(), 7, "six chunks, the third twice: {ranges:?}");
    assert_eq!(ranges[2], ranges[3], "the cut chunk is sent again whole");
    assert_eq!(
        dst_proxy.count(&Method::POST, "/blobs/uploads/"),
        2,
        "the config and the layer, each in one session"
    );
    let layer = Digest::sha256_of(&img.layers[0]);
    assert_eq!(
        src_proxy.count(&Method::GET, &format!("/blobs/{layer}")),
        2,
        "the layer read again for the cut chunk: no chunk is held in memory"
    );
    let c = client(&dst.host(), None);
    let back = read_all(
        c.get_blob(
            &repo(&dst.host(), "chunks/copy"),
            &layer,
            BlobRead::default(),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(back, img.layers[0]);
}
