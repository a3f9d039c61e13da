//! `mirror copy --referrers` end to end: signatures, SBOMs and their own
//! signatures travel with their image, between the real registry (the tag
//! schema: distribution 2.8 has no referrers API) and the purpose-built
//! [`ReferrersServer`] (the API), with their digests.

use mirror_tests::cli::{copy_json, mirror, sync_json};
use mirror_tests::images::{client, image, push_image, push_listed_referrer, repo, tag_digest};
use mirror_tests::peers::skopeo_raw;
use mirror_tests::setup::{open_registry_behind_proxy, open_registry_with_repo};
use mirror_tests::signed::{push_signed, referrers_at, sorted, SIG};
use mirror_tests::{Fault, ReferrersServer, Registry, Rule};
use registry_client::referrers_tag;

#[tokio::test]
async fn signatures_and_sboms_travel_with_their_image_recursively_with_their_digests() {
    let (src, sc, sr) = open_registry_with_repo("signed/app").await;
    let dst = Registry::start_open().await.unwrap();
    let dc = client(&dst.host(), None);
    let s = push_signed(&sc, &sr, 700).await;
    let from = format!("{}/signed/app:v1", src.host());

    // Without --referrers nothing but the image moves.
    copy_json(&[from.clone(), format!("{}/plain/app:v1", dst.host())])
        .await
        .assert_code(0);
    let plain = repo(&dst.host(), "plain/app");
    assert!(referrers_at(&dc, &plain, &s.image.digest).await.is_empty());

    let run = copy_json(&[
        "--referrers".to_string(),
        from.clone(),
        format!("{}/signed/app:v1", dst.host()),
    ])
    .await;
    run.assert_code(0);
    assert_eq!(run.json()["images"][0]["referrers"], 3, "{}", run.stdout);
    let dr = repo(&dst.host(), "signed/app");
    assert_eq!(
        referrers_at(&dc, &dr, &s.image.digest).await,
        sorted(vec![s.sig.digest.clone(), s.sbom.digest.clone()])
    );
    assert_eq!(
        referrers_at(&dc, &dr, &s.sbom.digest).await,
        vec![s.sbom_sig.digest.clone()]
    );
    // Byte for byte, as a peer reads them.
    for m in [&s.sig, &s.sbom, &s.sbom_sig] {
        assert_eq!(
            skopeo_raw(&format!("docker://{}/signed/app@{}", dst.host(), m.digest)),
            m.bytes.to_vec()
        );
    }
    assert_eq!(
        tag_digest(&dst.host(), "signed/app", "v1").await,
        Some(s.image.digest.clone())
    );

    // Only signatures: the SBOM stays, and so its signature.
    let run = copy_json(&[
        "--referrers".to_string(),
        "--referrers-type".to_string(),
        SIG.to_string(),
        from,
        format!("{}/sigs/app:v1", dst.host()),
    ])
    .await;
    run.assert_code(0);
    let only = repo(&dst.host(), "sigs/app");
    assert_eq!(
        referrers_at(&dc, &only, &s.image.digest).await,
        vec![s.sig.digest.clone()]
    );
}

#[tokio::test]
async fn the_referrers_api_and_the_tag_schema_convert_both_ways() {
    let api = ReferrersServer::start().await.unwrap();
    let (reg, rc, rr) = open_registry_with_repo("tagschema/app").await;
    let ac = client(&api.host(), None);
    let ar = repo(&api.host(), "api/app");
    let s = push_signed(&ac, &ar, 710).await;

    // API → tag schema: distribution lists them under the `sha256-…` tag.
    copy_json(&[
        "--referrers".to_string(),
        format!("{}/api/app:v1", api.host()),
        format!("{}/tagschema/app:v1", reg.host()),
    ])
    .await
    .assert_code(0);
    assert!(tag_digest(
        &reg.host(),
        "tagschema/app",
        &referrers_tag(&s.image.digest)
    )
    .await
    .is_some());
    assert_eq!(
        referrers_at(&rc, &rr, &s.image.digest).await,
        sorted(vec![s.sig.digest.clone(), s.sbom.digest.clone()])
    );

    // Tag schema → API: the server lists them itself, so no index tag is
    // written there.
    copy_json(&[
        "--referrers".to_string(),
        format!("{}/tagschema/app:v1", reg.host()),
        format!("{}/back/app:v1", api.host()),
    ])
    .await
    .assert_code(0);
    let back = repo(&api.host(), "back/app");
    assert_eq!(
        referrers_at(&ac, &back, &s.image.digest).await,
        sorted(vec![s.sig.digest.clone(), s.sbom.digest.clone()])
    );
    assert_eq!(
        referrers_at(&ac, &back, &s.sbom.digest).await,
        vec![s.sbom_sig.digest.clone()]
    );
    assert_eq!(api.tags("back/app"), vec!["v1".to_string()]);
    for m in [&s.sig, &s.sbom, &s.sbom_sig] {
        assert_eq!(api.manifest("back/app", &m.digest), Some(m.bytes.clone()));
    }
}

#[tokio::test]
async fn a_referrer_that_fails_fails_its_image_and_moves_no_tag() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let sc = client(&src.host(), None);
    let sr = repo(&src.host(), "bad/app");
    let s = push_signed(&sc, &sr, 720).await;
    // The SBOM's manifest comes back corrupted.
    proxy.add_rule(
        Rule::new(Fault::FlipResponseByte(10))
            .method(http::Method::GET)
            .path_contains(&format!("/manifests/{}", s.sbom.digest)),
    );
    let run = mirror(
        &[
            "copy",
            "--progress",
            "none",
            "--output",
            "json",
            "--referrers",
            &format!("{}/bad/app:v1", proxy.host()),
            &format!("{}/bad/app:v1", dst.host()),
        ],
        &[],
    )
    .await;
    run.assert_code(1);
    let err = run.json()["images"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains(&s.sbom.digest.to_string()), "{err}");
    assert!(tag_digest(&dst.host(), "bad/app", "v1").await.is_none());
}

#[tokio::test]
async fn sync_picks_up_a_signature_added_to_an_unchanged_image_for_one_listing_a_side() {
    let (src, sc, sr) = open_registry_with_repo("synced/app").await;
    let dst = Registry::start_open().await.unwrap();
    let dc = client(&dst.host(), None);
    let dr = repo(&dst.host(), "synced/app");
    let s = push_signed(&sc, &sr, 730).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sync.yaml");
    let write = |referrers: bool| {
        std::fs::write(
            &config,
            format!(
                "sync:\n  - source: {}/synced/app\n    target: {}/synced/app\n    tags: [v1]\n    referrers: {referrers}\n",
                src.host(),
                dst.host()
            ),
        )
        .unwrap()
    };
    write(true);
    let run = sync_json(&config).await;
    run.assert_code(0);
    assert_eq!(run.json()["copied"], 1);
    assert_eq!(run.json()["images"][0]["referrers"], 3, "{}", run.stdout);
    assert_eq!(
        referrers_at(&dc, &dr, &s.image.digest).await,
        sorted(vec![s.sig.digest.clone(), s.sbom.digest.clone()])
    );

    // Nothing new: current, for one listing of the image's referrers at
    // each side (on a registry without the API, one GET of its index tag).
    let index_tag = format!("/manifests/{}", referrers_tag(&s.image.digest));
    let (src_before, dst_before) = (
        src.count_requests("GET", &index_tag),
        dst.count_requests("GET", &index_tag),
    );
    let run = sync_json(&config).await;
    run.assert_code(0);
    assert_eq!(run.json()["current"], 1, "{}", run.stdout);
    assert_eq!(src.count_requests("GET", &index_tag) - src_before, 1);
    assert_eq!(dst.count_requests("GET", &index_tag) - dst_before, 1);

    // A signature added at the source to the unchanged image is noticed and
    // copied; then the image is current again.
    let late = push_listed_referrer(&sc, &sr, &s.image.descriptor(), SIG, 739).await;
    let run = sync_json(&config).await;
    run.assert_code(0);
    assert_eq!(run.json()["copied"], 1, "{}", run.stdout);
    assert!(referrers_at(&dc, &dr, &s.image.digest)
        .await
        .contains(&late.digest));
    assert_eq!(sync_json(&config).await.json()["current"], 1);

    // Without `referrers:` only digests are compared.
    let later = push_listed_referrer(&sc, &sr, &s.image.descriptor(), SIG, 740).await;
    write(false);
    let run = sync_json(&config).await;
    assert_eq!(run.json()["current"], 1, "{}", run.stdout);
    assert!(!referrers_at(&dc, &dr, &s.image.digest)
        .await
        .contains(&later.digest));
}

#[tokio::test]
async fn cosign_legacy_tags_travel_when_asked_for() {
    let (src, sc, sr) = open_registry_with_repo("cosigned/app").await;
    let dst = Registry::start_open().await.unwrap();
    let img = image(750, &[1500], false);
    push_image(&sc, &sr, "v1", &img).await;
    // What cosign writes to a registry without the API: an image of its
    // own, tagged after the digest it signs.
    let [sig_tag, att_tag, _] = mirror::graph::cosign_tags(&img.digest);
    let sig = image(751, &[300], false);
    push_image(&sc, &sr, &sig_tag, &sig).await;
    let from = format!("{}/cosigned/app:v1", src.host());

    copy_json(&[from.clone(), format!("{}/plain/app:v1", dst.host())])
        .await
        .assert_code(0);
    assert!(tag_digest(&dst.host(), "plain/app", &sig_tag)
        .await
        .is_none());

    let run = copy_json(&[
        "--cosign-tags".to_string(),
        from,
        format!("{}/cosigned/app:v1", dst.host()),
    ])
    .await;
    run.assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "cosigned/app", &sig_tag).await,
        Some(sig.digest.clone())
    );
    assert!(tag_digest(&dst.host(), "cosigned/app", &att_tag)
        .await
        .is_none());
    assert_eq!(
        skopeo_raw(&format!("docker://{}/cosigned/app:{sig_tag}", dst.host())),
        sig.manifest.to_vec()
    );
    assert_eq!(
        tag_digest(&dst.host(), "cosigned/app", "v1").await,
        Some(img.digest.clone())
    );
}
