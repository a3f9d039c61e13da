//! Blobs against the real registry: HEAD, ranged GET, chunked and
//! monolithic uploads, mounts.

use bytes::Bytes;
use futures::{stream, TryStreamExt};
use mirror_tests::images::{blob, push_blob, read_all, read_resuming, read_sized, repo};
use mirror_tests::setup::open_registry_with_repo;
use registry_client::{BlobRead, Digest, ErrorKind, MountOutcome};

#[tokio::test]
async fn head_reports_size_or_absence() {
    let (_reg, c, r) = open_registry_with_repo("blobs/head").await;
    let data = blob(1, 12345);
    let d = push_blob(&c, &r, data.clone()).await;
    assert_eq!(c.head_blob(&r, &d).await.unwrap(), Some(12345));
    assert_eq!(
        c.head_blob(&r, &Digest::sha256_of(b"absent"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn ranged_get_from_an_offset_is_verified_to_the_end() {
    let (reg, c, r) = open_registry_with_repo("blobs/range").await;
    let data = blob(2, 3 * 1024 * 1024 + 17);
    let d = push_blob(&c, &r, data.clone()).await;

    let offset = 1_000_003;
    let held = read_resuming(&d, data.len() as u64, &data[..offset]);
    let s = c.get_blob(&r, &d, held).await.unwrap();
    let rest = read_all(s).await.unwrap();
    assert_eq!(&rest[..], &data[offset..]);
    assert!(reg.log().contains("206") || reg.count_requests("GET", &format!("/blobs/{d}")) == 1);

    // A resume whose held bytes are wrong fails at the end, naming both digests.
    let wrong = read_resuming(&d, data.len() as u64, &vec![0u8; offset]);
    let s = c.get_blob(&r, &d, wrong).await.unwrap();
    let err = read_all(s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
    assert!(err.to_string().contains(&d.to_string()), "{err}");
}

#[tokio::test]
async fn a_wrong_size_in_the_descriptor_fails_the_read() {
    let (_reg, c, r) = open_registry_with_repo("blobs/size").await;
    let data = blob(3, 4096);
    let d = push_blob(&c, &r, data).await;
    let s = c.get_blob(&r, &d, read_sized(4000)).await.unwrap();
    let err = read_all(s).await.unwrap_err().to_string();
    assert!(
        err.contains("expected 4000") && err.contains(&d.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn chunked_upload_with_status_and_finish() {
    let (reg, c, r) = open_registry_with_repo("blobs/chunked").await;
    let data = blob(4, 5 * 1024 * 1024 + 3);
    let d = Digest::sha256_of(&data);
    let mut s = c.start_upload(&r).await.unwrap();
    let chunks = stream::iter(
        data.chunks(64 * 1024)
            .map(|c| Ok::<_, registry_client::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let sent = s.upload_chunked(chunks, 1024 * 1024).await.unwrap();
    assert_eq!(sent, data.len() as u64);
    assert_eq!(s.status().await.unwrap(), data.len() as u64);
    s.finish(&d).await.unwrap();
    assert_eq!(c.head_blob(&r, &d).await.unwrap(), Some(data.len() as u64));
    // Six PATCHes of at most 1 MiB each.
    assert_eq!(
        reg.count_requests("PATCH", "/v2/blobs/chunked/blobs/uploads/"),
        6
    );
    let back = read_all(c.get_blob(&r, &d, BlobRead::default()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(back, data);
}

#[tokio::test]
async fn finishing_with_the_wrong_digest_commits_nothing() {
    let (_reg, c, r) = open_registry_with_repo("blobs/wrong").await;
    let data = blob(5, 1000);
    let claimed = Digest::sha256_of(b"something else");
    let s = c.start_upload(&r).await.unwrap();
    let err = s
        .put_whole(
            stream::iter([Ok(data.clone())]),
            data.len() as u64,
            &claimed,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DIGEST_INVALID"), "{err}");
    assert_eq!(c.head_blob(&r, &claimed).await.unwrap(), None);
}

#[tokio::test]
async fn mount_from_a_sibling_repository() {
    let (reg, c, to) = open_registry_with_repo("app/image").await;
    let from = repo(&reg.host(), "base/image");
    let data = blob(6, 2048);
    let d = push_blob(&c, &from, data).await;
    match c.mount_blob(&to, &d, &from).await.unwrap() {
        MountOutcome::Mounted => {}
        MountOutcome::Upload(_) => panic!("the registry holds the blob; the mount should succeed"),
    }
    assert_eq!(c.head_blob(&to, &d).await.unwrap(), Some(2048));
}

#[tokio::test]
async fn mount_of_a_missing_blob_continues_as_an_upload() {
    let (reg, c, to) = open_registry_with_repo("app/target").await;
    let from = repo(&reg.host(), "empty/source");
    let data = blob(7, 4096);
    let d = Digest::sha256_of(&data);
    let session = match c.mount_blob(&to, &d, &from).await.unwrap() {
        MountOutcome::Upload(s) => s,
        MountOutcome::Mounted => panic!("nothing to mount"),
    };
    session
        .put_whole(stream::iter([Ok(data.clone())]), data.len() as u64, &d)
        .await
        .unwrap();
    assert_eq!(c.head_blob(&to, &d).await.unwrap(), Some(4096));
}

#[tokio::test]
async fn an_upload_session_can_be_resumed_from_its_location_and_cancelled() {
    let (_reg, c, r) = open_registry_with_repo("blobs/resume").await;
    let data = blob(8, 3000);
    let d = Digest::sha256_of(&data);
    let mut s = c.start_upload(&r).await.unwrap();
    s.patch(data.slice(..1000)).await.unwrap();
    let location = s.location().clone();
    drop(s);

    // Another process (or run) picks the session up from the saved URL.
    let mut again = c.resume_upload(&r, location);
    assert_eq!(again.status().await.unwrap(), 1000);
    again.patch(data.slice(1000..)).await.unwrap();
    again.finish(&d).await.unwrap();
    assert_eq!(c.head_blob(&r, &d).await.unwrap(), Some(3000));

    let s = c.start_upload(&r).await.unwrap();
    let loc = s.location().clone();
    s.cancel().await.unwrap();
    let err = c.resume_upload(&r, loc).status().await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn streamed_get_yields_the_blob_in_pieces() {
    let (_reg, c, r) = open_registry_with_repo("blobs/stream").await;
    let data = blob(9, 2 * 1024 * 1024);
    let d = push_blob(&c, &r, data.clone()).await;
    let s = c
        .get_blob(&r, &d, read_sized(data.len() as u64))
        .await
        .unwrap();
    let pieces: Vec<Bytes> = s.try_collect().await.unwrap();
    assert!(pieces.len() > 1);
    assert_eq!(pieces.concat(), data.to_vec());
}

#[tokio::test]
async fn sha512_blobs_round_trip_verified() {
    let (_reg, c, r) = open_registry_with_repo("blobs/sha512").await;
    let data = blob(10, 100_000);
    let d = Digest::of(registry_client::Algorithm::Sha512, &data);
    let s = c.start_upload(&r).await.unwrap();
    s.put_whole(stream::iter([Ok(data.clone())]), data.len() as u64, &d)
        .await
        .unwrap();
    assert_eq!(c.head_blob(&r, &d).await.unwrap(), Some(100_000));
    let back = read_all(c.get_blob(&r, &d, read_sized(100_000)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(back, data);
}
