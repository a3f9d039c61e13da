//! What the one planner and the one graph walk changed, end to end: copy
//! is incremental (two HEADs per unchanged image), a sync whose entries keep
//! different platforms is one engine run (a blob two of them need is read
//! once), and a foreign layer is treated alike by export and verify.

use mirror_tests::cli::{mirror, quiet, sync_json};
use mirror_tests::images::{blob, client, image, image_from_layers, push_index, push_to, repo};
use mirror_tests::{AccessLogEntry, Registry};
use registry_client::Digest;
use serde_json::json;

/// The access-log entries since `from`.
fn since(r: &Registry, from: usize) -> Vec<AccessLogEntry> {
    r.access_log().into_iter().skip(from).collect()
}

fn manifest_heads(log: &[AccessLogEntry]) -> usize {
    log.iter()
        .filter(|e| e.method == "HEAD" && e.uri.contains("/manifests/"))
        .count()
}

/// A blob request, or a manifest read whole.
fn reads_content(e: &AccessLogEntry) -> bool {
    e.uri.contains("/blobs/") || (e.method == "GET" && e.uri.contains("/manifests/"))
}

#[tokio::test]
async fn an_unchanged_copy_rerun_makes_two_heads_per_image_and_force_walks_again() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let (s, d) = (src.host(), dst.host());
    let mut args: Vec<String> = vec!["--output".into(), "json".into()];
    for n in 0..3u64 {
        push_to(
            &s,
            &format!("app/{n}"),
            "v1",
            &image(40 + n, &[2048, 4096], false),
        )
        .await;
        args.push(format!("{s}/app/{n}:v1"));
        args.push(format!("{d}/mirror/app/{n}:v1"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = quiet("copy", &args).await;
    first.assert_code(0);
    assert_eq!(first.json()["succeeded"], 3, "{}", first.stdout);

    let (s0, d0) = (src.access_log().len(), dst.access_log().len());
    let again = quiet("copy", &args).await;
    again.assert_code(0);
    let report = again.json();
    assert_eq!(report["bytes_copied"], 0, "{report}");
    for img in report["images"].as_array().unwrap() {
        assert_eq!(img["current"], true, "{img}");
        assert!(img["target_digest"].is_string(), "{img}");
    }
    let (src_log, dst_log) = (since(&src, s0), since(&dst, d0));
    assert_eq!(manifest_heads(&src_log), 3, "{src_log:#?}");
    assert_eq!(manifest_heads(&dst_log), 3, "{dst_log:#?}");
    assert!(
        src_log.iter().chain(&dst_log).all(|e| !reads_content(e)),
        "an unchanged image reads no manifest and no blob: {src_log:#?} {dst_log:#?}"
    );
    // At most a version check per registry besides the HEADs.
    let total = src_log.len() + dst_log.len();
    assert!(
        total <= 6 + 2,
        "{total} requests: {src_log:#?} {dst_log:#?}"
    );

    // --force walks every image again and checks each blob at the target.
    let d1 = dst.access_log().len();
    let mut forced = vec!["--force"];
    forced.extend(&args);
    let run = quiet("copy", &forced).await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["bytes_copied"], 0, "{report}");
    assert_eq!(report["images"][0]["blobs_present"], 3, "{report}");
    let dst_log = since(&dst, d1);
    assert_eq!(
        dst_log
            .iter()
            .filter(|e| e.method == "HEAD" && e.uri.contains("/blobs/"))
            .count(),
        9,
        "{dst_log:#?}"
    );

    // A source tag that moved is copied again.
    push_to(&s, "app/1", "v1", &image(99, &[1024], false)).await;
    let run = quiet("copy", &args).await;
    run.assert_code(0);
    let report = run.json();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images[1]["current"].as_bool(), None, "{report}");
    assert_eq!(images[1]["blobs_copied"], 2, "{report}");
    assert_eq!(images[0]["current"], true, "{report}");
}

#[tokio::test]
async fn a_sync_whose_entries_keep_different_platforms_reads_a_shared_blob_once() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let (s, d) = (src.host(), dst.host());
    let shared = blob(7001, 64 * 1024);
    let amd = image_from_layers(71, vec![shared.clone(), blob(7002, 1000)], false);
    let arm = image_from_layers(72, vec![shared.clone(), blob(7003, 1000)], false);
    push_index(
        &client(&s, None),
        &repo(&s, "multi"),
        "v1",
        &[(&amd, "linux/amd64"), (&arm, "linux/arm64")],
        false,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mixed.yaml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  - source: {s}/multi\n    target: {d}/amd\n    tags: [v1]\n    platforms: [linux/amd64]\n  - source: {s}/multi\n    target: {d}/arm\n    tags: [v1]\n    platforms: [linux/arm64]\n"
        ),
    )
    .unwrap();
    let before = src.access_log().len();
    let run = sync_json(&config).await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["copied"], 2, "{report}");
    let shared_digest = Digest::sha256_of(&shared);
    let log = since(&src, before);
    let reads = log
        .iter()
        .filter(|e| e.method == "GET" && e.uri.contains(&format!("/blobs/{shared_digest}")))
        .count();
    assert_eq!(reads, 1, "the shared layer is read once: {log:#?}");
    // Each target holds only its platform, and the shared layer.
    let mounted: u64 = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["blobs_mounted"].as_u64().unwrap())
        .sum();
    assert_eq!(mounted, 1, "{report}");
}

/// A one-image OCI layout whose second layer is non-distributable by its
/// media type alone (no `urls`), and absent, as such a layer is.
fn layout_with_foreign_layer(dir: &std::path::Path) -> Digest {
    let write = |bytes: &[u8]| {
        let d = Digest::sha256_of(bytes);
        let p = dir.join("blobs/sha256").join(d.hex());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        d
    };
    let layer = blob(8001, 3000);
    let config = br#"{"architecture":"amd64","os":"windows"}"#.to_vec();
    let foreign = Digest::sha256_of(b"lives elsewhere");
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": write(&config).to_string(), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": write(&layer).to_string(), "size": layer.len()},
            {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": foreign.to_string(), "size": 15},
        ],
    }))
    .unwrap();
    let m = write(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.to_string(), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "win/app:v1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    foreign
}

#[tokio::test]
async fn a_foreign_layer_without_urls_is_left_out_by_export_and_by_verify_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let foreign = layout_with_foreign_layer(&layout);
    let bundle = tmp.path().join("win.tar");
    let run = quiet(
        "export",
        &[
            &format!("oci:{}:win/app:v1", layout.display()),
            "--to",
            bundle.to_str().unwrap(),
        ],
    )
    .await;
    run.assert_code(0);
    let run = mirror(
        &["verify", "--output", "json", bundle.to_str().unwrap()],
        &[],
    )
    .await;
    run.assert_code(0);
    let report = run.json();
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(
        report["blobs"], 2,
        "config and the one distributable layer: {report}"
    );
    assert!(
        !run.stdout.contains(&foreign.to_string()) && !run.stderr.contains("missing"),
        "{report}"
    );
}
