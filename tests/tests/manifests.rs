//! Manifests against the real registry: every kind round-trips byte for byte.

use bytes::Bytes;
use mirror_tests::images::{self, client, image, index, push_image, repo};
use mirror_tests::setup::open_registry_with_repo;
use mirror_tests::Registry;
use registry_client::media_type::OCI_MANIFEST;
use registry_client::{Digest, Reference, ReferrersSource};
use serde_json::json;

#[tokio::test]
async fn oci_index_round_trips_byte_identical() {
    let (_reg, c, r) = open_registry_with_repo("multi/arch").await;
    let amd = image(1, &[100, 200], false);
    let arm = image(2, &[300], false);
    push_image(&c, &r, &amd.digest.to_string(), &amd).await;
    push_image(&c, &r, &arm.digest.to_string(), &arm).await;
    let (bytes, digest, mt) = index(&[(&amd, "linux/amd64"), (&arm, "linux/arm64")], false);
    assert_eq!(
        c.put_manifest(&r, "v1", mt, bytes.clone()).await.unwrap(),
        digest
    );

    let got = c.get_manifest(&r.tag("v1").unwrap()).await.unwrap();
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.digest, digest);
    assert_eq!(got.media_type, mt);
    assert!(got.is_index());
    let children: Vec<Digest> = got
        .content()
        .unwrap()
        .manifests
        .into_iter()
        .map(|d| d.digest)
        .collect();
    assert_eq!(children, vec![amd.digest.clone(), arm.digest.clone()]);

    let by_digest = c.get_manifest(&r.digest(&digest)).await.unwrap();
    assert_eq!(by_digest.bytes, bytes);

    let head = c
        .head_manifest(&r.tag("v1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (head.digest, head.size, head.media_type.as_str()),
        (digest, bytes.len() as u64, mt)
    );
}

#[tokio::test]
async fn docker_manifest_list_round_trips_byte_identical() {
    let (_reg, c, r) = open_registry_with_repo("docker/list").await;
    let a = image(3, &[50], true);
    let b = image(4, &[60], true);
    push_image(&c, &r, "a", &a).await;
    push_image(&c, &r, "b", &b).await;
    let (bytes, digest, mt) = index(&[(&a, "linux/amd64"), (&b, "windows/amd64")], true);
    c.put_manifest(&r, "list", mt, bytes.clone()).await.unwrap();
    let got = c.get_manifest(&r.tag("list").unwrap()).await.unwrap();
    assert_eq!(
        (got.bytes, got.digest, got.media_type.as_str()),
        (bytes, digest, mt)
    );
    let single = c.get_manifest(&r.tag("a").unwrap()).await.unwrap();
    assert_eq!(single.bytes, a.manifest);
    assert_eq!(single.media_type, a.media_type);
}

#[tokio::test]
async fn artifact_with_subject_round_trips_and_is_found_as_a_referrer() {
    let (_reg, c, r) = open_registry_with_repo("app").await;
    let img = image(5, &[10], false);
    push_image(&c, &r, "v1", &img).await;

    let empty = Bytes::from_static(b"{}");
    images::push_blob(&c, &r, empty.clone()).await;
    let sig = Bytes::from_static(b"signature payload");
    images::push_blob(&c, &r, sig.clone()).await;
    let artifact = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&empty).to_string(), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": Digest::sha256_of(&sig).to_string(), "size": sig.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": img.digest.to_string(), "size": img.manifest.len()},
        }))
        .unwrap(),
    );
    let art_digest = Digest::sha256_of(&artifact);
    c.put_manifest(&r, &art_digest.to_string(), OCI_MANIFEST, artifact.clone())
        .await
        .unwrap();
    let got = c.get_manifest(&r.digest(&art_digest)).await.unwrap();
    assert_eq!(got.bytes, artifact);
    let content = got.content().unwrap();
    assert_eq!(
        content.artifact_type.as_deref(),
        Some("application/vnd.example.signature")
    );
    assert_eq!(content.subject.unwrap().digest, img.digest);

    // distribution 2.8 has no referrers API: the client falls back to the
    // tag schema, which a pusher maintains as an index under `sha256-<hex>`.
    let none = c.referrers(&r, &img.digest, &[]).await.unwrap();
    assert!(none.source == ReferrersSource::TagSchema && none.manifests.is_empty());
    let fallback = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": art_digest.to_string(), "size": artifact.len(), "artifactType": "application/vnd.example.signature"}],
        }))
        .unwrap(),
    );
    let tag = format!("sha256-{}", img.digest.hex());
    c.put_manifest(
        &r,
        &tag,
        "application/vnd.oci.image.index.v1+json",
        fallback,
    )
    .await
    .unwrap();
    let found = c
        .referrers(
            &r,
            &img.digest,
            &["application/vnd.example.signature".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(found.manifests.len(), 1);
    assert_eq!(found.manifests[0].digest, art_digest);
    let other = c
        .referrers(&r, &img.digest, &["application/other".to_string()])
        .await
        .unwrap();
    assert!(other.manifests.is_empty());
}

#[tokio::test]
async fn missing_manifest_is_not_found_and_head_says_none() {
    let reg = Registry::start_open().await.unwrap();
    let c = client(&reg.host(), None);
    let reference = Reference::parse(&format!("{}/nothing/here:v1", reg.host())).unwrap();
    assert!(c.head_manifest(&reference).await.unwrap().is_none());
    let err = c.get_manifest(&reference).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("GET") && msg.contains("/v2/nothing/here/manifests/v1"),
        "{msg}"
    );
    assert!(
        msg.contains("MANIFEST_UNKNOWN") || msg.contains("NAME_UNKNOWN"),
        "{msg}"
    );
}

#[tokio::test]
async fn manifest_pushed_before_its_blobs_is_refused_with_the_registry_code() {
    let (_reg, c, r) = open_registry_with_repo("orphan").await;
    let img = image(6, &[10], false);
    let err = c
        .put_manifest(&r, "v1", img.media_type, img.manifest.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MANIFEST_BLOB_UNKNOWN"), "{err}");
}

#[tokio::test]
async fn all_tags_are_listed() {
    let (reg, c, r) = open_registry_with_repo("listed").await;
    let img = image(7, &[10], false);
    let mut expected = Vec::new();
    for i in 0..7 {
        let tag = format!("t{i}");
        push_image(&c, &r, &tag, &img).await;
        expected.push(tag);
    }
    // distribution 2.8.2 answers every tag in one page, in no order, whatever
    // `n` says; Link pagination is covered in faults.rs.
    let mut all = c.list_tags(&r, Some(2)).await.unwrap();
    all.sort();
    assert_eq!(all, expected);
    let err = c
        .list_tags(&repo(&reg.host(), "no/such/repo"), None)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}
