//! `mirror copy` end to end: the binary against real registries, layouts
//! and peers (skopeo, umoci).

use bytes::Bytes;
use mirror_tests::cli::{copy_json, copy_ok, mirror};
use mirror_tests::fixtures::AZUREML_REPOSITORIES;
use mirror_tests::images::{
    blob, client, has_blob, image, image_from_layers, push_blob, push_image, push_index, repo,
    tag_digest,
};
use mirror_tests::peers::{run_peer, skopeo_copy_from_registry, skopeo_raw, umoci_ls};
use mirror_tests::setup::{open_registry_behind_proxy, open_registry_with_repo};
use mirror_tests::{Fault, Registry, RegistryOptions, Rule};
use registry_client::media_type::OCI_MANIFEST;
use registry_client::{Digest, Reference};
use serde_json::json;

#[tokio::test]
async fn every_manifest_kind_is_copied_with_its_digest() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "kinds/app");

    let oci = image(1, &[1000, 2000], false);
    push_image(&c, &r, "oci", &oci).await;
    let docker = image(2, &[1500], true);
    push_image(&c, &r, "docker", &docker).await;
    let (a, b) = (image(3, &[700], false), image(4, &[800], false));
    let (idx, _, idx_mt) = push_index(
        &c,
        &r,
        "index",
        &[(&a, "linux/amd64"), (&b, "linux/arm64")],
        false,
    )
    .await;
    // An index of an index.
    let nested = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": idx_mt, "manifests": [
            {"mediaType": idx_mt, "digest": Digest::sha256_of(&idx).to_string(), "size": idx.len()}]}))
        .unwrap(),
    );
    c.put_manifest(&r, "nested", idx_mt, nested).await.unwrap();
    let (da, db) = (image(5, &[600], true), image(6, &[500], true));
    push_index(
        &c,
        &r,
        "list",
        &[(&da, "linux/amd64"), (&db, "linux/arm64")],
        true,
    )
    .await;
    let empty = Bytes::from_static(b"{}");
    push_blob(&c, &r, empty.clone()).await;
    let payload = push_blob(&c, &r, Bytes::from_static(b"sbom")).await;
    let artifact = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(&empty).to_string(), "size": 2},
            "layers": [{"mediaType": "application/json", "digest": payload.to_string(), "size": 4}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": oci.digest.to_string(), "size": oci.manifest.len()}}))
        .unwrap(),
    );
    c.put_manifest(&r, "artifact", OCI_MANIFEST, artifact)
        .await
        .unwrap();

    let tags = ["oci", "docker", "index", "nested", "list", "artifact"];
    let mut args = vec![
        "copy".to_string(),
        "--output".into(),
        "json".into(),
        "--progress".into(),
        "none".into(),
    ];
    for t in tags {
        args.push(format!("{}/kinds/app:{t}", src.host()));
        args.push(format!("{}/copied/app", dst.host()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = mirror(&args, &[]).await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["failed"], 0);
    for (i, t) in tags.iter().enumerate() {
        let img = &report["images"][i];
        assert_eq!(img["source_digest"], img["target_digest"], "{t}");
        let source = skopeo_raw(&format!("docker://{}/kinds/app:{t}", src.host()));
        let copied = skopeo_raw(&format!("docker://{}/copied/app:{t}", dst.host()));
        assert_eq!(source, copied, "{t}: bytes differ");
    }
}

#[tokio::test]
async fn a_shared_base_layer_crosses_the_wire_once_and_is_mounted_elsewhere() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let base = blob(100, 300_000);
    let base_digest = Digest::sha256_of(&base);
    let repos = AZUREML_REPOSITORIES;
    let mut args = vec!["copy", "--output", "json", "--progress", "plain"];
    let mut names = Vec::new();
    for (i, name) in repos.iter().enumerate() {
        let img = image_from_layers(
            200 + i as u64,
            vec![base.clone(), blob(300 + i as u64, 50_000)],
            false,
        );
        push_image(&c, &repo(&src.host(), name), "eastus-stable", &img).await;
        names.push((
            format!("{}/{name}:eastus-stable", src.host()),
            format!("{}/{name}:stable", dst.host()),
        ));
    }
    for (s, d) in &names {
        args.push(s);
        args.push(d);
    }
    let run = mirror(&args, &[]).await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(
        src.count_requests("GET", &format!("/blobs/{base_digest}")),
        1,
        "base layer downloaded once"
    );
    let uploads = dst
        .access_log()
        .into_iter()
        .filter(|e| {
            e.method == "PUT"
                && e.uri.contains(&format!(
                    "digest={}",
                    base_digest.to_string().replace(':', "%3A")
                ))
        })
        .count();
    assert_eq!(uploads, 1, "base layer uploaded once");
    let mounted: u64 = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["blobs_mounted"].as_u64().unwrap())
        .sum();
    assert_eq!(mounted, 5, "the other five repositories mount it");
    assert!(dst.count_requests("POST", "mount=") >= 5);
    for name in repos {
        let got = tag_digest(&dst.host(), name, "stable").await;
        assert!(got.is_some(), "{name}:stable landed");
    }
    assert!(
        run.stderr.contains("done: "),
        "plain progress lines: {}",
        run.stderr
    );

    // A second run moves no blob bytes.
    let before = src.count_requests("GET", "/blobs/sha256:");
    let again = mirror(&args, &[]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        src.count_requests("GET", "/blobs/sha256:"),
        before,
        "no blob read again"
    );
    assert_eq!(again.json()["bytes_copied"], 0);
}

#[tokio::test]
async fn a_corrupted_source_blob_fails_its_image_only_and_tags_nothing() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let good = image(10, &[40_000], false);
    let bad = image(11, &[40_000], false);
    push_image(&c, &repo(&src.host(), "good/img"), "v1", &good).await;
    push_image(&c, &repo(&src.host(), "bad/img"), "v1", &bad).await;
    let layer = Digest::sha256_of(&bad.layers[0]);
    proxy.add_rule(
        Rule::new(Fault::FlipResponseByte(1234)).path_contains(&format!("/blobs/{layer}")),
    );
    let run = copy_json(&[
        format!("{}/good/img:v1", proxy.host()),
        format!("{}/good/img:v1", dst.host()),
        format!("{}/bad/img:v1", proxy.host()),
        format!("{}/bad/img:v1", dst.host()),
    ])
    .await;
    assert_eq!(run.code, 1, "some images failed: {}", run.stderr);
    let report = run.json();
    assert!(report["images"][0]["error"].is_null());
    let err = report["images"][1]["error"].as_str().unwrap();
    let mut corrupted = bad.layers[0].to_vec();
    corrupted[1234] ^= 0xff;
    assert!(err.contains(&layer.to_string()), "{err}");
    assert!(
        err.contains(&Digest::sha256_of(&corrupted).to_string()),
        "{err}"
    );
    assert!(tag_digest(&dst.host(), "bad/img", "v1").await.is_none());
    assert!(!has_blob(&dst.host(), "bad/img", &layer).await);
    assert!(tag_digest(&dst.host(), "good/img", "v1").await.is_some());
}

#[tokio::test]
async fn layout_to_registry_to_layout_round_trips_and_peers_read_ours() {
    let reg = Registry::start_open().await.unwrap();
    let c = client(&reg.host(), None);
    let (a, b) = (image(20, &[3000], false), image(21, &[4000], false));
    let r = repo(&reg.host(), "round/trip");
    let (idx, idx_digest, _) = push_index(
        &c,
        &r,
        "v1",
        &[(&a, "linux/amd64"), (&b, "linux/arm64")],
        false,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    copy_ok(&[
        &format!("{}/round/trip:v1", reg.host()),
        &format!("oci:{}:app", one.display()),
    ])
    .await;
    copy_ok(&[
        &format!("oci:{}:app", one.display()),
        &format!("{}/back/again:v2", reg.host()),
    ])
    .await;
    copy_ok(&[
        &format!("{}/back/again:v2", reg.host()),
        &format!("oci:{}:app", two.display()),
    ])
    .await;
    for dir in [&one, &two] {
        let raw = skopeo_raw(&format!("oci:{}:app", dir.display()));
        assert_eq!(raw, idx.to_vec());
        let blob_path = dir.join("blobs/sha256").join(idx_digest.hex());
        assert_eq!(std::fs::read(blob_path).unwrap(), idx.to_vec());
        assert!(umoci_ls(dir).contains("app"));
    }
    // skopeo copies our layout into a registry, byte for byte.
    run_peer(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:app", two.display()),
            &format!("docker://{}/by/skopeo:v3", reg.host()),
        ],
    );
    assert_eq!(
        skopeo_raw(&format!("docker://{}/by/skopeo:v3", reg.host())),
        idx.to_vec()
    );
}

#[tokio::test]
async fn a_layout_written_by_skopeo_is_read_by_mirror() {
    let reg = Registry::start_open().await.unwrap();
    let c = client(&reg.host(), None);
    let img = image(30, &[5000, 6000], false);
    push_image(&c, &repo(&reg.host(), "from/skopeo"), "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    skopeo_copy_from_registry(
        &format!("docker://{}/from/skopeo:v1", reg.host()),
        &format!("oci:{}:sk", dir.path().display()),
    );
    copy_ok(&[
        &format!("oci:{}:sk", dir.path().display()),
        &format!("{}/into/registry:v1", reg.host()),
    ])
    .await;
    let copied = skopeo_raw(&format!("docker://{}/into/registry:v1", reg.host()));
    assert_eq!(
        copied,
        skopeo_raw(&format!("oci:{}:sk", dir.path().display()))
    );
}

#[tokio::test]
async fn a_platform_filter_writes_a_new_index_and_says_so() {
    let (reg, c, r) = open_registry_with_repo("multi/plat").await;
    let (a, b) = (image(40, &[100], false), image(41, &[200], false));
    let (_, idx_digest, _) = push_index(
        &c,
        &r,
        "v1",
        &[(&a, "linux/amd64"), (&b, "linux/arm64")],
        false,
    )
    .await;
    let run = copy_json(&[
        "--platform",
        "linux/arm64",
        &format!("{}/multi/plat:v1", reg.host()),
        &format!("{}/arm/only", reg.host()),
    ])
    .await;
    run.assert_code(0);
    let img = &run.json()["images"][0];
    assert_eq!(img["source_digest"], idx_digest.to_string());
    assert_ne!(img["target_digest"], idx_digest.to_string());
    assert!(img["digest_changed"]
        .as_str()
        .unwrap()
        .contains("linux/arm64"));
    let got = c
        .get_manifest(&Reference::parse(&format!("{}/arm/only:v1", reg.host())).unwrap())
        .await
        .unwrap();
    let children = got.content().unwrap().manifests;
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].digest, b.digest);
    assert_eq!(
        c.head_blob(
            &repo(&reg.host(), "arm/only"),
            &Digest::sha256_of(&a.layers[0])
        )
        .await
        .unwrap(),
        None
    );

    let none = mirror(
        &[
            "copy",
            "--platform",
            "windows/amd64",
            &format!("{}/multi/plat:v1", reg.host()),
            &format!("{}/win/none", reg.host()),
        ],
        &[],
    )
    .await;
    assert_eq!(none.code, 1);
    assert!(none.stdout.contains("windows/amd64"), "{}", none.stdout);
}

#[tokio::test]
async fn a_destination_digest_equal_to_the_source_is_accepted_and_a_different_one_refused() {
    let (reg, c, r) = open_registry_with_repo("pin/src").await;
    let (a, b) = (image(42, &[100], false), image(43, &[200], false));
    let (_, idx, _) = push_index(
        &c,
        &r,
        "v1",
        &[(&a, "linux/amd64"), (&b, "linux/arm64")],
        false,
    )
    .await;
    let host = reg.host();
    // By digest on both sides, as skopeo, crane and regctl take it.
    let run = copy_json(&[
        format!("{host}/pin/src@{idx}"),
        format!("{host}/pin/dst@{idx}"),
    ])
    .await;
    run.assert_code(0);
    assert_eq!(run.json()["images"][0]["target_digest"], idx.to_string());
    let got = c
        .get_manifest(&Reference::parse(&format!("{host}/pin/dst@{idx}")).unwrap())
        .await
        .unwrap();
    assert_eq!(got.digest, idx);
    // A tag source whose digest is the one named.
    copy_json(&[
        format!("{host}/pin/src:v1"),
        format!("{host}/pin/tagged@{idx}"),
    ])
    .await
    .assert_code(0);
    assert!(tag_digest(&host, "pin/tagged", "v1").await.is_none());

    // A digest that is not the source's is refused before anything moves.
    let other = Digest::sha256_of(b"another image");
    let run = mirror(
        &[
            "copy",
            &format!("{host}/pin/src@{idx}"),
            &format!("{host}/pin/wrong@{other}"),
        ],
        &[],
    )
    .await;
    run.assert_code(2);
    assert!(
        run.stderr.contains(&other.to_string()) && run.stderr.contains("not the source's"),
        "{}",
        run.stderr
    );
    // A platform filter writes a new index: the source's digest no longer
    // names it, so the copy fails and writes nothing.
    let run = mirror(
        &[
            "copy",
            "--platform",
            "linux/arm64",
            &format!("{host}/pin/src@{idx}"),
            &format!("{host}/pin/arm@{idx}"),
        ],
        &[],
    )
    .await;
    run.assert_code(1);
    assert!(
        run.stdout.contains("not the digest the destination names"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(!has_blob(&host, "pin/arm", &Digest::sha256_of(&b.layers[0])).await);
}

#[tokio::test]
async fn foreign_layers_are_skipped_unless_asked_for() {
    let reg = Registry::start(RegistryOptions {
        allow_foreign_layer_urls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&reg.host(), None);
    let r = repo(&reg.host(), "win/base");
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    push_blob(&c, &r, config.clone()).await;
    let foreign = blob(50, 1000);
    let foreign_digest = Digest::sha256_of(&foreign);
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": foreign_digest.to_string(), "size": 1000, "urls": ["https://example.invalid/layer"]}]}))
        .unwrap(),
    );
    c.put_manifest(
        &r,
        "v1",
        "application/vnd.docker.distribution.manifest.v2+json",
        manifest.clone(),
    )
    .await
    .unwrap();
    let run = mirror(
        &[
            "copy",
            &format!("{}/win/base:v1", reg.host()),
            &format!("{}/win/copy", reg.host()),
        ],
        &[],
    )
    .await;
    run.assert_code(0);
    assert_eq!(
        skopeo_raw(&format!("docker://{}/win/copy:v1", reg.host())),
        manifest.to_vec()
    );
    // With --include-foreign the layer is fetched, and here it does not exist.
    let run = mirror(
        &[
            "copy",
            "--include-foreign",
            &format!("{}/win/base:v1", reg.host()),
            &format!("{}/win/copy2", reg.host()),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(&foreign_digest.to_string()),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_a_usage_exit_code() {
    for (args, needle) in [
        (vec!["copy", "Reg.io/Bad", "reg.io/x"], "Reg.io/Bad"),
        (vec!["copy", "reg.io/only-a-source"], "no destination"),
        (
            vec!["copy", "oci:/nonexistent/layout:x", "oci:/tmp/whatever:y"],
            "/nonexistent/layout",
        ),
        (
            vec!["copy", "--platform", "linux", "a.io/x", "b.io/y"],
            "linux",
        ),
        (
            vec!["copy", "--from-file", "/nonexistent/list.txt"],
            "/nonexistent/list.txt",
        ),
    ] {
        let run = mirror(&args, &[]).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "# images\na.io/x b.io/x\n\nc.io/y\n").unwrap();
    let run = mirror(&["copy", "--from-file", list.to_str().unwrap()], &[]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&format!("{}:4", list.display())),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn an_auth_failure_exits_with_the_auth_code_and_shows_no_secret() {
    let reg = Registry::start_htpasswd(&[("alice", "right-pw")])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = base64_encode(b"alice:wrong-SECRET-pw");
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let run = mirror(
        &[
            "copy",
            &format!("{}/any/img:v1", reg.host()),
            &format!("oci:{}:x", dir.path().join("out").display()),
        ],
        &[
            ("DOCKER_CONFIG", dir.path().to_str().unwrap()),
            ("MIRROR_LOG", "trace"),
        ],
    )
    .await;
    run.assert_code(3);
    assert!(
        run.stdout.contains("authentication") && run.stdout.contains(&reg.host()),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("SECRET") && !run.stderr.contains("SECRET"));
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[tokio::test]
async fn the_quick_start_copies_the_fixtures_into_a_layout() {
    let root = mirror_tests::cli::workspace_root();
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("examples/quickstart.txt")).unwrap();
    let list = out.path().join("quickstart.txt");
    std::fs::write(
        &list,
        text.replace(
            "oci:mirror-demo:",
            &format!("oci:{}/demo:", out.path().display()),
        ),
    )
    .unwrap();
    let run = copy_json(&["--from-file", list.to_str().unwrap()]).await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["succeeded"], 6);
    let names = umoci_ls(&out.path().join("demo"));
    for repo in AZUREML_REPOSITORIES {
        assert!(
            names.contains(&format!("{repo}:stable")),
            "{repo} missing from {names}"
        );
    }
    for img in report["images"].as_array().unwrap() {
        assert_eq!(img["source_digest"], img["target_digest"]);
    }
    // The shared base layer is written once: later images find it present.
    let present: u64 = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["blobs_present"].as_u64().unwrap())
        .sum();
    assert!(present >= 5, "{report}");
}

#[tokio::test]
async fn a_copy_within_one_registry_mounts_every_blob() {
    let reg = Registry::start_open().await.unwrap();
    let c = client(&reg.host(), None);
    let img = image(60, &[20_000, 30_000], false);
    push_image(&c, &repo(&reg.host(), "team/a"), "v1", &img).await;
    let before = reg.count_requests("GET", "/blobs/sha256:");
    let run = copy_json(&[
        format!("{}/team/a:v1", reg.host()),
        format!("{}/team/b", reg.host()),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(
        report["images"][0]["blobs_mounted"], 3,
        "config and two layers: {report}"
    );
    assert_eq!(report["bytes_copied"], 0);
    assert_eq!(
        reg.count_requests("GET", "/blobs/sha256:"),
        before,
        "no blob bytes read"
    );
    assert_eq!(
        skopeo_raw(&format!("docker://{}/team/b:v1", reg.host())),
        img.manifest.to_vec()
    );
}

#[tokio::test]
async fn an_unnamed_layout_image_needs_a_destination_tag() {
    let reg = Registry::start_open().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("single");
    copy_ok(&[
        "oci:fixtures/azureml:cap/lifecycler/installed:eastus-stable",
        &format!("oci:{}:only", layout.display()),
    ])
    .await;
    let run = mirror(
        &[
            "copy",
            &format!("oci:{}", layout.display()),
            &format!("{}/no/tag", reg.host()),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("needs a tag"), "{}", run.stderr);
    copy_ok(&[
        &format!("oci:{}", layout.display()),
        &format!("{}/with/tag:v1", reg.host()),
    ])
    .await;
}

#[tokio::test]
async fn a_source_connection_dropped_mid_blob_continues_where_it_broke() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let img = image(70, &[4_000_000], false);
    push_image(&c, &repo(&src.host(), "flaky/src"), "v1", &img).await;
    let layer = Digest::sha256_of(&img.layers[0]);
    proxy.add_rule(
        Rule::new(Fault::CutResponseBodyAfter(1_500_000))
            .path_contains(&format!("/blobs/{layer}"))
            .nth(1),
    );
    copy_ok(&[
        &format!("{}/flaky/src:v1", proxy.host()),
        &format!("{}/flaky/dst:v1", dst.host()),
    ])
    .await;
    let served: u64 = proxy
        .requests()
        .iter()
        .filter(|q| q.path.contains(&format!("/blobs/{layer}")))
        .map(|q| q.response_body_bytes)
        .sum();
    assert!(
        served <= 4_400_000,
        "the source served {served} bytes for a 4 MB layer"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|q| q.headers.get("range").is_some()),
        "resumed with Range"
    );
    assert_eq!(
        skopeo_raw(&format!("docker://{}/flaky/dst:v1", dst.host())),
        img.manifest.to_vec()
    );
}

#[tokio::test]
async fn large_blobs_are_uploaded_in_chunks_above_the_threshold() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let img = image(80, &[3_000_000, 100_000], false);
    push_image(&c, &repo(&src.host(), "chunky/img"), "v1", &img).await;
    copy_ok(&[
        "--chunk-threshold",
        "1M",
        "--chunk-size",
        "512K",
        &format!("{}/chunky/img:v1", src.host()),
        &format!("{}/chunky/img", dst.host()),
    ])
    .await;
    // 3 000 000 bytes in 512 KiB chunks: six PATCHes; the small blobs go in one PUT.
    assert_eq!(
        dst.count_requests("PATCH", "/v2/chunky/img/blobs/uploads/"),
        6
    );
    assert_eq!(
        skopeo_raw(&format!("docker://{}/chunky/img:v1", dst.host())),
        img.manifest.to_vec()
    );
    let bad = mirror(&["copy", "--chunk-size", "0", "a.io/x", "b.io/y"], &[]).await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("\"0\""), "{}", bad.stderr);
}

#[tokio::test]
async fn a_broken_upload_starts_that_blob_again_and_gives_up_clearly() {
    let src = Registry::start_open().await.unwrap();
    let (dst, proxy) = open_registry_behind_proxy().await;
    let c = client(&src.host(), None);
    let img = image(90, &[1_000_000], false);
    push_image(&c, &repo(&src.host(), "upload/img"), "v1", &img).await;
    let layer = Digest::sha256_of(&img.layers[0]);
    let layer_put = format!("digest={}", layer.to_string().replace(':', "%3A"));

    // The first upload of the layer loses its connection half way.
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(400_000))
            .method(http::Method::PUT)
            .path_contains(&layer_put)
            .nth(1),
    );
    copy_ok(&[
        &format!("{}/upload/img:v1", src.host()),
        &format!("{}/upload/img", proxy.host()),
    ])
    .await;
    assert_eq!(
        proxy.count(&http::Method::PUT, &layer_put),
        2,
        "the layer was sent again, once"
    );
    assert_eq!(
        skopeo_raw(&format!("docker://{}/upload/img:v1", dst.host())),
        img.manifest.to_vec()
    );

    // Every upload of it breaks: the image fails after three tries, untagged.
    proxy.clear_rules();
    proxy.clear_requests();
    proxy.add_rule(
        Rule::new(Fault::CutRequestBodyAfter(400_000))
            .method(http::Method::PUT)
            .path_contains(&layer_put),
    );
    let run = copy_json(&[
        format!("{}/upload/img:v1", src.host()),
        format!("{}/other/img", proxy.host()),
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let err = run.json()["images"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("attempt 3 of 3") && err.contains(&layer.to_string()),
        "{err}"
    );
    // The transport's cause, not a bare "error sending request".
    let cause = err
        .rsplit("error sending request")
        .next()
        .unwrap_or_default();
    assert!(
        ["closed", "reset", "Broken pipe"]
            .iter()
            .any(|c| cause.contains(c)),
        "{err}"
    );
    assert_eq!(proxy.count(&http::Method::PUT, &layer_put), 3);
    assert!(tag_digest(&dst.host(), "other/img", "v1").await.is_none());
}

#[tokio::test]
async fn ctrl_c_stops_cleanly_with_130_and_leaves_nothing_partial() {
    let (src, proxy) = open_registry_behind_proxy().await;
    let c = client(&src.host(), None);
    let img = image(95, &[2_000_000], false);
    push_image(&c, &repo(&src.host(), "slow/img"), "v1", &img).await;
    let layer = Digest::sha256_of(&img.layers[0]);
    // The layer request hangs, so the copy is mid-image when interrupted.
    proxy.add_rule(
        Rule::new(Fault::Delay(std::time::Duration::from_secs(30)))
            .path_contains(&format!("/blobs/{layer}")),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = tokio::process::Command::new(mirror_tests::cli::mirror_bin())
        .args([
            "copy",
            "--progress",
            "none",
            &format!("{}/slow/img:v1", proxy.host()),
            &format!("oci:{}:slow", out.display()),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the layer is being fetched, then interrupt.
    let started = std::time::Instant::now();
    while proxy.count(&http::Method::GET, &format!("/blobs/{layer}")) == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the copy never reached the layer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .expect("mirror stopped")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let index = std::fs::read_to_string(out.join("index.json")).unwrap_or_default();
    assert!(
        !index.contains("slow"),
        "no name for the unfinished image: {index}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.join("blobs/sha256"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|n| !n.contains("partial")),
        "{leftovers:?}"
    );
    assert!(!leftovers.contains(&layer.hex().to_string()));
}
