//! Faults and bad data at the level of `mirror copy`: the binary, with the
//! scripted proxy between it and a real registry. Each fault either ends in
//! a copy whose manifests match the source byte for byte, or in a clean
//! failure: a non-zero exit, an error naming the blob or manifest, and no
//! tag on incomplete content. (Faults of one client request are tested in
//! `faults.rs`; a monolithic upload cut mid-body and a download cut once are
//! in `copy.rs`.)

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use mirror_tests::cli::{copy_json, mirror_bin, Run};
use mirror_tests::images::{
    client, has_blob, image, push_image, push_index, push_to, repo, tag_digest, TestImage,
};
use mirror_tests::peers::skopeo_raw;
use mirror_tests::sandbox::private_mounts_possible;
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::{Fault, Registry, Rule};
use registry_client::Digest;

/// A run in which some images failed; returns each image's error (or "").
fn failed(run: &Run) -> Vec<String> {
    run.assert_code(1);
    run.json()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The target's manifest is the source's, byte for byte (read by skopeo).
fn same_manifest(host: &str, name: &str, tag: &str, img: &TestImage) {
    assert_eq!(
        skopeo_raw(&format!("docker://{host}/{name}:{tag}")),
        img.manifest.to_vec(),
        "{host}/{name}:{tag}"
    );
}

fn layer_digest(img: &TestImage, i: usize) -> Digest {
    Digest::sha256_of(&img.layers[i])
}

// ---- throttling and the per-host cap ------------------------------------

/// The most arrivals among `times` within any `window` after one of them.
fn most_within(times: &[std::time::Instant], window: Duration) -> usize {
    times
        .iter()
        .map(|t| {
            times
                .iter()
                .filter(|u| **u >= *t && **u < *t + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn jobs_bounds_blob_streams_by_size_while_small_requests_get_four_times_as_many() {
    // Across a network a HEAD or a small blob costs a round trip, not
    // memory: at --jobs 1 the digests of ten tags are still asked four at
    // a time and small blobs stream up to four at once, while large blobs
    // move one stream at a time.
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let mut pairs = Vec::new();
    let mut small = Vec::new();
    let mut large = Vec::new();
    for i in 0..10 {
        let big = i >= 8;
        let img = image(400 + i, &[if big { 4 << 20 } else { 20_000 }], false);
        push_to(&src.host(), "budget/img", &format!("t{i}"), &img).await;
        pairs.push(format!("{}/budget/img:t{i}", proxy.host()));
        pairs.push(format!("{}/budget/img:t{i}", dst.host()));
        small.push(Digest::sha256_of(&img.config));
        if big {
            large.push(layer_digest(&img, 0));
        } else {
            small.push(layer_digest(&img, 0));
        }
    }
    let pause = Duration::from_millis(300);
    proxy.add_rule(Rule::new(Fault::Delay(pause)).method(Method::HEAD));
    proxy.add_rule(
        Rule::new(Fault::Delay(pause))
            .method(Method::GET)
            .path_contains("/blobs/"),
    );
    let mut args = vec!["--jobs", "1"];
    args.extend(pairs.iter().map(String::as_str));
    copy_json(&args).await.assert_code(0);

    let heads = proxy.arrivals(&Method::HEAD, "/manifests/");
    assert_eq!(heads.len(), 10, "one digest asked per tag");
    assert!(
        most_within(&heads, pause - Duration::from_millis(50)) >= 4,
        "the source's HEADs went one at a time: {heads:?}"
    );
    let arrivals = |digests: &[Digest]| {
        let mut times: Vec<_> = digests
            .iter()
            .flat_map(|d| proxy.arrivals(&Method::GET, &d.to_string()))
            .collect();
        times.sort();
        times
    };
    let small = arrivals(&small);
    assert_eq!(small.len(), 18, "eight layers and ten configs");
    let at_once = most_within(&small, pause - Duration::from_millis(50));
    assert!(
        (2..=4).contains(&at_once),
        "{at_once} small blobs streamed at once at --jobs 1: {small:?}"
    );
    let large = arrivals(&large);
    assert_eq!(large.len(), 2);
    assert!(
        large[1] - large[0] >= pause - Duration::from_millis(50),
        "two large blob streams at once at --jobs 1"
    );
}

#[tokio::test]
async fn a_blobs_upload_session_opens_while_the_source_answers() {
    // Across a network each step one after another is a round trip: the
    // target's POST need not wait for the source's GET to answer.
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (_dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image(450, &[30_000], false);
    push_to(&src.host(), "overlap/img", "v1", &img).await;
    let pause = Duration::from_millis(400);
    src_proxy.add_rule(
        Rule::new(Fault::Delay(pause))
            .method(Method::GET)
            .path_contains("/blobs/"),
    );
    copy_json(&[
        "--jobs",
        "1",
        &format!("{}/overlap/img:v1", src_proxy.host()),
        &format!("{}/overlap/img:v1", dst_proxy.host()),
    ])
    .await
    .assert_code(0);

    let gets = src_proxy.arrivals(&Method::GET, "/blobs/");
    let posts = dst_proxy.arrivals(&Method::POST, "/blobs/uploads/");
    assert_eq!((gets.len(), posts.len()), (2, 2), "a layer and a config");
    for (get, post) in gets.iter().zip(&posts) {
        let waited = post.saturating_duration_since(*get);
        assert!(
            waited < pause - Duration::from_millis(100),
            "the upload session waited {waited:?} for the source's answer"
        );
    }
}

#[tokio::test]
async fn max_requests_per_host_caps_what_is_in_flight_at_the_source() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let mut imgs = Vec::new();
    for i in 0..3 {
        let img = image(100 + i, &[50_000, 60_000, 70_000], false);
        push_to(&src.host(), &format!("cap/img{i}"), "v1", &img).await;
        imgs.push(img);
    }
    // Each blob answer waits a moment, so requests overlap when allowed to.
    proxy.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(150)))
            .method(Method::GET)
            .path_contains("/blobs/"),
    );
    let dir = tempfile::tempdir().unwrap();
    let pairs = |layout: &str| -> Vec<String> {
        (0..3)
            .flat_map(|i| {
                [
                    format!("{}/cap/img{i}:v1", proxy.host()),
                    format!("oci:{}/{layout}:img{i}", dir.path().display()),
                ]
            })
            .collect()
    };

    // Without a cap below --jobs, the gauge sees more than two at once.
    let free = pairs("free");
    let mut args = vec!["--jobs", "8"];
    args.extend(free.iter().map(String::as_str));
    copy_json(&args).await.assert_code(0);
    assert!(
        proxy.max_in_flight() > 2,
        "the control run overlapped only {} requests",
        proxy.max_in_flight()
    );

    proxy.reset_max_in_flight();
    let capped = pairs("capped");
    let mut args = vec!["--jobs", "8", "--max-requests-per-host", "2"];
    args.extend(capped.iter().map(String::as_str));
    copy_json(&args).await.assert_code(0);
    assert_eq!(
        proxy.max_in_flight(),
        2,
        "two requests (and their bodies) in flight at most, and the cap was used"
    );
    for i in 0..3 {
        let raw =
            mirror_tests::peers::skopeo_raw(&format!("oci:{}/capped:img{i}", dir.path().display()));
        assert_eq!(raw, imgs[i as usize].manifest.to_vec());
    }
}

#[tokio::test]
async fn a_429_storm_pauses_the_host_halves_what_is_in_flight_and_the_copy_completes() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let img = image(
        110,
        &[
            30_000, 31_000, 32_000, 33_000, 34_000, 35_000, 36_000, 37_000, 38_000, 39_000, 40_000,
        ],
        false,
    );
    push_to(&src.host(), "storm/img", "v1", &img).await;
    // The first four blob reads are throttled; every blob answer takes a
    // moment, so requests overlap.
    proxy.add_rule(
        Rule::new(Fault::throttle(1))
            .method(Method::GET)
            .path_contains("/blobs/")
            .first(4),
    );
    proxy.add_rule(
        Rule::new(Fault::Delay(Duration::from_millis(300)))
            .method(Method::GET)
            .path_contains("/blobs/"),
    );
    mirror_bin(); // built before the clock starts
    let src_ref = format!("{}/storm/img:v1", proxy.host());
    let dst_ref = format!("{}/storm/img", dst.host());
    // The host's cap at eight, the blob streams' budget, so the cut shows.
    let run = tokio::spawn(async move {
        copy_json(&[
            "--jobs",
            "8",
            "--max-requests-per-host",
            "8",
            &src_ref,
            &dst_ref,
        ])
        .await
    });
    // Once the storm has passed and the reads sent before it are answered,
    // measure what is in flight while the host is under its halved limit.
    let started = std::time::Instant::now();
    while proxy
        .requests()
        .iter()
        .filter(|q| q.status == Some(429))
        .count()
        < 4
    {
        assert!(started.elapsed() < Duration::from_secs(20), "no storm");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.reset_max_in_flight();
    let run = run.await.unwrap();
    run.assert_code(0);
    same_manifest(&dst.host(), "storm/img", "v1", &img);

    let reqs = proxy.requests();
    let first_429 = reqs
        .iter()
        .filter(|q| q.status == Some(429))
        .map(|q| q.arrived)
        .min()
        .unwrap();
    // Nothing reached the host while it said to wait (a request already on
    // its way when the answer came is allowed a short grace).
    let early: Vec<_> = reqs
        .iter()
        .filter(|q| {
            q.arrived > first_429 + Duration::from_millis(150)
                && q.arrived < first_429 + Duration::from_millis(950)
        })
        .map(|q| format!("{} {}", q.method, q.path))
        .collect();
    assert!(early.is_empty(), "sent during the pause: {early:?}");
    let retried = reqs
        .iter()
        .filter(|q| q.arrived >= first_429 + Duration::from_millis(950))
        .count();
    assert!(
        retried >= 4,
        "the throttled reads went again after the pause"
    );
    // Eight reads were in flight when the storm hit: the limit halved to
    // four (one step of growth back is allowed within the window).
    assert!(
        proxy.max_in_flight() <= 5,
        "{} requests in flight after the storm",
        proxy.max_in_flight()
    );
}

#[tokio::test]
async fn a_copy_within_one_host_at_one_request_per_host_does_not_deadlock() {
    // Each download holds the host's only read place while its bytes feed an
    // upload to the same host: uploads draw on the write places, so neither
    // waits on the other.
    let (reg, proxy) = open_registry_behind_proxy().await;
    let img = image(115, &[200_000, 210_000, 220_000], false);
    let c = client(&proxy.host(), None);
    push_image(&c, &repo(&proxy.host(), "one/src"), "v1", &img).await;
    // The registry declines every mount (an upload session it then drops),
    // so the blobs stream through the client.
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 202,
            headers: vec![(
                "Location".into(),
                "/v2/one/dst/blobs/uploads/declined".into(),
            )],
            body: Bytes::new(),
        })
        .method(Method::POST)
        .path_contains("mount="),
    );
    let run = tokio::time::timeout(
        Duration::from_secs(120),
        copy_json(&[
            "--jobs",
            "8",
            "--max-requests-per-host",
            "1",
            &format!("{}/one/src:v1", proxy.host()),
            &format!("{}/one/dst", proxy.host()),
        ]),
    )
    .await
    .expect("the copy finished");
    run.assert_code(0);
    assert_eq!(run.json()["images"][0]["blobs_copied"], 4);
    // skopeo (a blocking call) reads the registry itself, not the proxy
    // this test's runtime serves.
    same_manifest(&reg.host(), "one/dst", "v1", &img);
}

// ---- connection faults ---------------------------------------------------

#[tokio::test]
async fn a_download_reset_again_and_again_continues_each_time_or_fails_cleanly() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let img = image(120, &[1_000_000], false);
    let other = image(121, &[20_000], false);
    push_to(&src.host(), "reset/img", "v1", &img).await;
    push_to(&src.host(), "reset/other", "v1", &other).await;
    let layer = layer_digest(&img, 0);
    // Every read of the layer breaks after 300 000 bytes: each continues
    // from where the last stopped.
    proxy.add_rule(
        Rule::new(Fault::CutResponseBodyAfter(300_000)).path_contains(&format!("/blobs/{layer}")),
    );
    copy_json(&[
        &format!("{}/reset/img:v1", proxy.host()),
        &format!("{}/reset/img", dst.host()),
    ])
    .await
    .assert_code(0);
    same_manifest(&dst.host(), "reset/img", "v1", &img);
    let reads = proxy.count(&Method::GET, &format!("/blobs/{layer}"));
    assert_eq!(reads, 4, "1 000 000 bytes in reads of 300 000");

    // Reads that break before any byte arrives never get anywhere: the
    // image fails, naming the layer, with no tag; the other image lands.
    proxy.clear_rules();
    proxy.add_rule(
        Rule::new(Fault::CutResponseBodyAfter(0)).path_contains(&format!("/blobs/{layer}")),
    );
    let run = copy_json(&[
        &format!("{}/reset/img:v1", proxy.host()),
        &format!("{}/reset/again", dst.host()),
        &format!("{}/reset/other:v1", proxy.host()),
        &format!("{}/reset/other", dst.host()),
    ])
    .await;
    let errors = failed(&run);
    assert!(
        errors[0].contains(&layer.to_string()) && errors[0].contains("attempt 3 of 3"),
        "{}",
        errors[0]
    );
    assert!(errors[1].is_empty(), "{}", errors[1]);
    assert_eq!(tag_digest(&dst.host(), "reset/again", "v1").await, None);
    same_manifest(&dst.host(), "reset/other", "v1", &other);
}

#[tokio::test]
async fn a_chunked_upload_reset_mid_patch_starts_that_blob_again() {
    let src = Registry::start_open().await.unwrap();
    let (dst, proxy) = open_registry_behind_proxy().await;
    let img = image(130, &[1_000_000], false);
    push_to(&src.host(), "chunks/img", "v1", &img).await;
    // distribution keeps the part of a broken PATCH and then refuses the
    // session (BLOB_UPLOAD_INVALID): the blob starts again in a new one.
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(100_000))
            .method(Method::PATCH)
            .nth(2),
    );
    copy_json(&[
        "--chunk-threshold",
        "512K",
        "--chunk-size",
        "256K",
        &format!("{}/chunks/img:v1", src.host()),
        &format!("{}/chunks/img", proxy.host()),
    ])
    .await
    .assert_code(0);
    same_manifest(&dst.host(), "chunks/img", "v1", &img);
    let sessions = proxy.count(&Method::POST, "/blobs/uploads/");
    assert!(
        sessions >= 3,
        "config, layer, and the layer again: {sessions}"
    );
}

#[tokio::test]
async fn server_errors_on_either_side_are_retried_and_the_copy_completes() {
    let (src, src_proxy) = open_registry_behind_proxy().await;
    let (dst, dst_proxy) = open_registry_behind_proxy().await;
    let img = image(140, &[200_000, 10_000], false);
    push_to(&src.host(), "errors/img", "v1", &img).await;
    let layer = layer_digest(&img, 0);
    src_proxy.add_rule(
        Rule::new(Fault::status(500))
            .method(Method::GET)
            .path_contains("/manifests/")
            .nth(1),
    );
    src_proxy.add_rule(
        Rule::new(Fault::status(502))
            .method(Method::GET)
            .path_contains(&format!("/blobs/{layer}"))
            .nth(1),
    );
    // A streamed upload is not resent by the client: the engine starts the
    // blob again.
    dst_proxy.add_rule(
        Rule::new(Fault::status(503))
            .method(Method::PUT)
            .path_contains("/blobs/uploads/")
            .nth(1),
    );
    dst_proxy.add_rule(
        Rule::new(Fault::status(500))
            .method(Method::PUT)
            .path_contains("/manifests/")
            .nth(1),
    );
    copy_json(&[
        &format!("{}/errors/img:v1", src_proxy.host()),
        &format!("{}/errors/img", dst_proxy.host()),
    ])
    .await
    .assert_code(0);
    same_manifest(&dst.host(), "errors/img", "v1", &img);
    for (proxy, status) in [(&src_proxy, 500), (&src_proxy, 502), (&dst_proxy, 503)] {
        assert!(
            proxy.requests().iter().any(|q| q.status == Some(status)),
            "the {status} was served"
        );
    }
}

#[tokio::test]
async fn a_server_error_that_persists_fails_cleanly_and_leaves_the_tag_where_it_was() {
    let src = Registry::start_open().await.unwrap();
    let (dst, proxy) = open_registry_behind_proxy().await;
    let old = image(150, &[5_000], false);
    let new = image(151, &[6_000], false);
    push_to(&src.host(), "stuck/img", "v1", &new).await;
    push_to(&dst.host(), "stuck/img", "v1", &old).await;
    proxy.add_rule(
        Rule::new(Fault::status(503))
            .method(Method::PUT)
            .path_contains("/manifests/"),
    );
    let run = copy_json(&[
        &format!("{}/stuck/img:v1", src.host()),
        &format!("{}/stuck/img", proxy.host()),
    ])
    .await;
    let errors = failed(&run);
    assert!(
        errors[0].contains(&new.digest.to_string()) && errors[0].contains("503"),
        "{}",
        errors[0]
    );
    assert_eq!(
        tag_digest(&dst.host(), "stuck/img", "v1").await,
        Some(old.digest.clone()),
        "the tag did not move"
    );
}

#[tokio::test]
async fn a_stalled_source_hits_the_read_timeout_and_the_copy_continues() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let img = image(160, &[800_000], false);
    push_to(&src.host(), "stall/img", "v1", &img).await;
    let layer = layer_digest(&img, 0);
    // The first manifest answer never starts; the first layer answer stops
    // mid-body. Both hang far longer than the read timeout.
    proxy.add_rule(
        Rule::new(Fault::Delay(Duration::from_secs(30)))
            .method(Method::GET)
            .path_contains("/manifests/")
            .nth(1),
    );
    proxy.add_rule(
        Rule::new(Fault::StallResponseBodyAfter(300_000))
            .path_contains(&format!("/blobs/{layer}"))
            .nth(1),
    );
    mirror_bin(); // built before the clock starts
    let started = std::time::Instant::now();
    copy_json(&[
        "--read-timeout",
        "1s",
        &format!("{}/stall/img:v1", proxy.host()),
        &format!("{}/stall/img", dst.host()),
    ])
    .await
    .assert_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    same_manifest(&dst.host(), "stall/img", "v1", &img);
    let layer_reads: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.path.contains(&format!("/blobs/{layer}")))
        .collect();
    assert_eq!(layer_reads.len(), 2);
    assert_eq!(
        layer_reads[1]
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes=300000-"),
        "continued after the bytes that did arrive"
    );
}

#[tokio::test]
async fn a_dropped_upload_session_starts_the_blob_again_or_fails_cleanly() {
    let src = Registry::start_open().await.unwrap();
    let (dst, proxy) = open_registry_behind_proxy().await;
    let img = image(170, &[300_000], false);
    push_to(&src.host(), "session/img", "v1", &img).await;
    let layer = layer_digest(&img, 0);
    let layer_put = format!("digest={}", layer.to_string().replace(':', "%3A"));
    let unknown = || {
        Fault::Respond {
        status: 404,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Bytes::from_static(
            br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#,
        ),
    }
    };
    proxy.add_rule(
        Rule::new(unknown())
            .method(Method::PUT)
            .path_contains(&layer_put)
            .nth(1),
    );
    copy_json(&[
        &format!("{}/session/img:v1", src.host()),
        &format!("{}/session/img", proxy.host()),
    ])
    .await
    .assert_code(0);
    same_manifest(&dst.host(), "session/img", "v1", &img);
    assert_eq!(proxy.count(&Method::PUT, &layer_put), 2);

    proxy.clear_rules();
    proxy.clear_requests();
    proxy.add_rule(
        Rule::new(unknown())
            .method(Method::PUT)
            .path_contains(&layer_put),
    );
    let run = copy_json(&[
        &format!("{}/session/img:v1", src.host()),
        &format!("{}/session/lost", proxy.host()),
    ])
    .await;
    let errors = failed(&run);
    assert!(
        errors[0].contains(&layer.to_string()) && errors[0].contains("BLOB_UPLOAD_UNKNOWN"),
        "{}",
        errors[0]
    );
    assert_eq!(tag_digest(&dst.host(), "session/lost", "v1").await, None);
}

// ---- bad data ------------------------------------------------------------

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn wrong_bytes_commit_nothing_under_that_digest_in_a_layout() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let bad = image(180, &[100_000], false);
    let good = image(181, &[100_000], false);
    push_to(&src.host(), "bytes/bad", "v1", &bad).await;
    push_to(&src.host(), "bytes/good", "v1", &good).await;
    let layer = layer_digest(&bad, 0);
    proxy.add_rule(
        Rule::new(Fault::FlipResponseByte(4321)).path_contains(&format!("/blobs/{layer}")),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = copy_json(&[
        &format!("{}/bytes/bad:v1", proxy.host()),
        &format!("oci:{}:bad", out.display()),
        &format!("{}/bytes/good:v1", proxy.host()),
        &format!("oci:{}:good", out.display()),
    ])
    .await;
    let errors = failed(&run);
    assert!(
        errors[0].contains(&layer.to_string()) && errors[0].contains("digest mismatch"),
        "{}",
        errors[0]
    );
    let stored = files(&out);
    assert!(
        !stored.iter().any(|f| f.contains(layer.hex())),
        "nothing under the bad layer's name: {stored:?}"
    );
    assert!(!stored.iter().any(|f| f.contains("partial")), "{stored:?}");
    let index = std::fs::read_to_string(out.join("index.json")).unwrap();
    assert!(
        !index.contains("\"bad\"") && index.contains("\"good\""),
        "{index}"
    );
    assert_eq!(
        skopeo_raw(&format!("oci:{}:good", out.display())),
        good.manifest.to_vec()
    );
}

#[tokio::test]
async fn a_body_shorter_or_longer_than_its_descriptor_is_refused() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let short = image(190, &[50_000], false);
    let long = image(191, &[50_000], false);
    let good = image(192, &[50_000], false);
    push_to(&src.host(), "size/short", "v1", &short).await;
    push_to(&src.host(), "size/long", "v1", &long).await;
    push_to(&src.host(), "size/good", "v1", &good).await;
    let (short_layer, long_layer) = (layer_digest(&short, 0), layer_digest(&long, 0));
    // Cleanly framed answers (Content-Length matches the body), but not
    // the size the manifest gives.
    proxy.add_rule(
        Rule::new(Fault::ReplaceResponseBody(short.layers[0].slice(..40_000)))
            .method(Method::GET)
            .path_contains(&format!("/blobs/{short_layer}")),
    );
    let mut longer = long.layers[0].to_vec();
    longer.extend_from_slice(b"trailing junk");
    proxy.add_rule(
        Rule::new(Fault::ReplaceResponseBody(Bytes::from(longer)))
            .method(Method::GET)
            .path_contains(&format!("/blobs/{long_layer}")),
    );
    let mut args = Vec::new();
    for name in ["short", "long", "good"] {
        args.push(format!("{}/size/{name}:v1", proxy.host()));
        args.push(format!("{}/size/{name}", dst.host()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let errors = failed(&copy_json(&args).await);
    for (err, layer) in [(&errors[0], &short_layer), (&errors[1], &long_layer)] {
        assert!(
            err.contains(&layer.to_string()) && err.contains("size mismatch"),
            "{err}"
        );
    }
    assert!(errors[0].contains("got 40000"), "{}", errors[0]);
    assert!(errors[2].is_empty(), "{}", errors[2]);
    for (name, layer) in [("short", &short_layer), ("long", &long_layer)] {
        assert!(!has_blob(&dst.host(), &format!("size/{name}"), layer).await);
        assert_eq!(
            tag_digest(&dst.host(), &format!("size/{name}"), "v1").await,
            None
        );
    }
    same_manifest(&dst.host(), "size/good", "v1", &good);
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "mdigest/multi");
    let (amd, arm) = (image(200, &[3_000], false), image(201, &[4_000], false));
    let (_, idx_digest, _) = push_index(
        &c,
        &r,
        "v1",
        &[(&amd, "linux/amd64"), (&arm, "linux/arm64")],
        false,
    )
    .await;
    let good = image(202, &[5_000], false);
    push_to(&src.host(), "mdigest/good", "v1", &good).await;
    // Asked for the arm64 child by digest, the source serves other bytes.
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 200,
            headers: vec![("Content-Type".into(), amd.media_type.into())],
            body: amd.manifest.clone(),
        })
        .method(Method::GET)
        .path_contains(&format!("/manifests/{}", arm.digest)),
    );
    let run = copy_json(&[
        &format!("{}/mdigest/multi:v1", proxy.host()),
        &format!("{}/mdigest/multi", dst.host()),
        &format!("{}/mdigest/good:v1", proxy.host()),
        &format!("{}/mdigest/good", dst.host()),
    ])
    .await;
    let errors = failed(&run);
    assert!(
        errors[0].contains(&arm.digest.to_string()) && errors[0].contains(&amd.digest.to_string()),
        "names the manifest asked for and what came: {}",
        errors[0]
    );
    assert!(errors[1].is_empty(), "{}", errors[1]);
    assert_eq!(tag_digest(&dst.host(), "mdigest/multi", "v1").await, None);
    for d in [&arm.digest, &idx_digest] {
        let by_digest = client(&dst.host(), None)
            .head_manifest(&repo(&dst.host(), "mdigest/multi").digest(d))
            .await
            .unwrap();
        assert!(by_digest.is_none(), "{d} is not at the target");
    }
    same_manifest(&dst.host(), "mdigest/good", "v1", &good);
}

#[tokio::test]
async fn a_manifest_naming_a_blob_the_source_lost_fails_that_image_only() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let lost = image(210, &[20_000], false);
    let good = image(211, &[20_000], false);
    push_to(&src.host(), "lost/img", "v1", &lost).await;
    push_to(&src.host(), "lost/good", "v1", &good).await;
    // The source's storage loses the layer's data behind its back.
    let layer = layer_digest(&lost, 0);
    let data = src
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex());
    std::fs::remove_dir_all(&data).unwrap();
    let run = copy_json(&[
        &format!("{}/lost/img:v1", src.host()),
        &format!("{}/lost/img", dst.host()),
        &format!("{}/lost/good:v1", src.host()),
        &format!("{}/lost/good", dst.host()),
    ])
    .await;
    let errors = failed(&run);
    assert!(errors[0].contains(&layer.to_string()), "{}", errors[0]);
    assert!(errors[1].is_empty(), "{}", errors[1]);
    assert!(!has_blob(&dst.host(), "lost/img", &layer).await);
    assert_eq!(tag_digest(&dst.host(), "lost/img", "v1").await, None);
    same_manifest(&dst.host(), "lost/good", "v1", &good);
}

// ---- a full disk ---------------------------------------------------------

#[tokio::test]
async fn a_full_disk_fails_the_layout_write_cleanly_and_keeps_what_was_there() {
    // A 2 MiB tmpfs in a private mount namespace stands for a full disk.
    if !private_mounts_possible().await {
        return;
    }
    let src = Registry::start_open().await.unwrap();
    let small = image(220, &[10_000], false);
    let big = image(221, &[3_000_000], false);
    push_to(&src.host(), "disk/small", "v1", &small).await;
    push_to(&src.host(), "disk/big", "v1", &big).await;
    let work = tempfile::tempdir().unwrap();
    let mnt = work.path().join("mnt");
    let out = work.path().join("out");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let script = r#"
set -u
mount -t tmpfs -o size=2m tmpfs "$MNT" || exit 90
run() { name=$1; shift; "$MIRROR" copy --progress none --output json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; echo $? >"$OUT/$name.code"; }
run small "$SRC/disk/small:v1" "oci:$MNT/layout:small"
cp "$MNT/layout/index.json" "$OUT/index.before"
run big "$SRC/disk/big:v1" "oci:$MNT/layout:big"
cp "$MNT/layout/index.json" "$OUT/index.after"
(cd "$MNT/layout" && find . -type f | sort) >"$OUT/files"
run check "oci:$MNT/layout:small" "oci:$OUT/check:small"
"#;
    let status = tokio::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("MNT", &mnt)
        .env("OUT", &out)
        .env("MIRROR", mirror_bin())
        .env("SRC", src.host())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "the script ran: {status}");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    assert_eq!(read("small.code").trim(), "0", "{}", read("small.err"));

    assert_eq!(read("big.code").trim(), "1", "{}", read("big.err"));
    let report: serde_json::Value = serde_json::from_str(&read("big.json")).unwrap();
    let err = report["images"][0]["error"].as_str().unwrap();
    let layer = layer_digest(&big, 0);
    assert!(
        err.contains("No space left on device")
            && err.contains(&layer.to_string())
            && err.contains(&format!("{}/layout", mnt.display())),
        "names the blob, the layout and the cause: {err}"
    );
    let stored = read("files");
    assert!(
        !stored.contains(layer.hex()),
        "no file for the unfinished blob, partial or final: {stored}"
    );
    assert_eq!(
        read("index.before"),
        read("index.after"),
        "index.json unchanged"
    );
    // The image that landed before is whole: copying it out verifies every byte.
    assert_eq!(read("check.code").trim(), "0", "{}", read("check.err"));
    assert_eq!(
        skopeo_raw(&format!("oci:{}:small", out.join("check").display())),
        small.manifest.to_vec()
    );
}
