//! A real runtime pulls what mirror copied: Debian's podman (vfs store of
//! its own) pulls from the loopback registry mirror wrote into — a single
//! image, a multi-platform index and an image with a foreign layer — and
//! gets the digests mirror reported, which are the source's.

use mirror_tests::cli::{copy_json, Run};
use mirror_tests::fixtures::{
    generate, generate_index, push, push_index, GeneratedImage, ImageSpec, IndexSpec, LayerSpec,
};
use mirror_tests::images::{client, has_blob, push_blob, repo};
use mirror_tests::podman::{with_foreign_layer, Inspected, Podman};
use mirror_tests::{Registry, RegistryOptions, StorageHost};
use registry_client::media_type::OCI_MANIFEST;

fn layers(seeds: &[u64]) -> Vec<LayerSpec> {
    seeds
        .iter()
        .map(|&seed| LayerSpec {
            seed,
            size: 15_000 + seed as usize * 1000,
        })
        .collect()
}

/// `mirror copy --output json ARGS…`, which must succeed: the one image's
/// `(source_digest, target_digest)` from the report.
async fn copy(args: &[&str]) -> (String, String) {
    let run: Run = copy_json(args).await;
    run.assert_code(0);
    let img = &run.json()["images"][0];
    let d = |k: &str| img[k].as_str().unwrap_or_default().to_string();
    (d("source_digest"), d("target_digest"))
}

/// The config, layers and platform of what podman holds under `name`
/// match `img`.
fn assert_is(podman: &Podman, name: &str, img: &GeneratedImage) -> Inspected {
    let got = Inspected::of(&podman.inspect(name));
    assert_eq!(got.id, img.config_digest.hex(), "{name}: {got:?}");
    let diff_ids: Vec<String> = img
        .layer_info
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    assert_eq!(got.layers, diff_ids, "{name}");
    assert_eq!(
        (got.os.as_str(), got.architecture.as_str()),
        (img.spec.platform.0.as_str(), img.spec.platform.1.as_str()),
        "{name}"
    );
    got
}

#[tokio::test]
async fn podman_pulls_a_copied_image_and_index_with_the_digests_mirror_reported() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let app = generate(&ImageSpec::new("team/app", "v1", layers(&[1, 2])));
    push(&c, &src.host(), std::slice::from_ref(&app))
        .await
        .unwrap();
    let amd = ImageSpec::new("team/multi", "amd", layers(&[3]));
    let mut arm = ImageSpec::new("team/multi", "arm", layers(&[4, 1]));
    arm.platform = ("linux".into(), "arm64".into());
    let multi = generate_index(&IndexSpec {
        repository: "team/multi".into(),
        tag: "v1".into(),
        images: vec![amd, arm],
    });
    push_index(&c, &src.host(), &multi).await.unwrap();

    let (s, t) = copy(&[
        &format!("{}/team/app:v1", src.host()),
        &format!("{}/team/app:v1", dst.host()),
    ])
    .await;
    let digest = app.manifest_digest.to_string();
    assert_eq!((&s, &t), (&digest, &digest));
    let (s, t) = copy(&[
        &format!("{}/team/multi:v1", src.host()),
        &format!("{}/team/multi:v1", dst.host()),
    ])
    .await;
    let index = multi.manifest_digest.to_string();
    assert_eq!((&s, &t), (&index, &index));

    let podman = Podman::new();
    let name = format!("{}/team/app:v1", dst.host());
    podman.pull(&name, None).unwrap();
    let got = assert_is(&podman, &name, &app);
    assert_eq!(got.digest, app.manifest_digest.to_string());
    assert_eq!(
        got.repo_digests,
        vec![format!("{}/team/app@{}", dst.host(), app.manifest_digest)]
    );
    assert_eq!(got.repo_tags, vec![name]);

    // The index: podman takes the amd64 child, and records both digests.
    for (platform, child) in [
        ("linux/amd64", &multi.images[0]),
        ("linux/arm64", &multi.images[1]),
    ] {
        let podman = Podman::new();
        let name = format!("{}/team/multi:v1", dst.host());
        podman.pull(&name, Some(platform)).unwrap();
        let got = assert_is(&podman, &name, child);
        let mut both = vec![
            format!("{}/team/multi@{}", dst.host(), multi.manifest_digest),
            format!("{}/team/multi@{}", dst.host(), child.manifest_digest),
        ];
        both.sort();
        assert_eq!(got.repo_digests, both, "{platform}");
        // Its Digest is the one it pulled by: the index's.
        assert_eq!(got.digest, index, "{platform}");
    }
}

fn foreign_ok() -> RegistryOptions<'static> {
    RegistryOptions {
        allow_foreign_layer_urls: true,
        ..Default::default()
    }
}

// Podman runs blocking on the test's thread while the storage host answers
// it: the host needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_a_copied_image_with_a_foreign_layer_from_its_url_or_offline_from_the_registry(
) {
    let src = Registry::start(foreign_ok()).await.unwrap();
    let dst = Registry::start(foreign_ok()).await.unwrap();
    let storage = StorageHost::start().await.unwrap();
    let img = generate(&ImageSpec::new("win/base", "v1", layers(&[5, 6])));
    let foreign = img.layer_info[1].digest.clone();
    let at = format!("/layers/{}", foreign.hex());
    let (manifest, digest) = with_foreign_layer(&img, 1, &storage.url(&at));
    // The source holds the foreign layer too, so --include-foreign can carry it.
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "win/base");
    for (_, data) in img.blobs() {
        push_blob(&c, &r, data).await;
    }
    c.put_manifest(&r, "v1", OCI_MANIFEST, manifest)
        .await
        .unwrap();
    let source = format!("{}/win/base:v1", src.host());
    let digest = digest.to_string();

    // By default mirror leaves the foreign layer where its URL says.
    let (s, t) = copy(&[&source, &format!("{}/win/base:v1", dst.host())]).await;
    assert_eq!((&s, &t), (&digest, &digest));
    assert!(!has_blob(&dst.host(), "win/base", &foreign).await);
    // Connected, podman fetches it from there.
    storage.put(&at, img.layers[1].clone());
    let podman = Podman::new();
    let name = format!("{}/win/base:v1", dst.host());
    podman.pull(&name, None).unwrap();
    let got = assert_is(&podman, &name, &img);
    assert_eq!(got.digest, digest);
    assert!(
        storage
            .requests()
            .iter()
            .any(|q| q.path == at && q.status == 200),
        "{:?}",
        storage.requests()
    );

    // Across an air gap the URL answers nothing: that copy cannot be pulled…
    drop(storage);
    let err = Podman::new().pull(&name, None).unwrap_err();
    assert!(err.contains(foreign.hex()), "{err}");
    // …but one made with --include-foreign can: podman, its URL down,
    // takes the layer from the registry mirror wrote it into.
    let full = format!("{}/win/full:v1", dst.host());
    let (s, t) = copy(&["--include-foreign", &source, &full]).await;
    assert_eq!((&s, &t), (&digest, &digest));
    assert!(has_blob(&dst.host(), "win/full", &foreign).await);
    let podman = Podman::new();
    podman.pull(&full, None).unwrap();
    let got = assert_is(&podman, &full, &img);
    assert_eq!(got.digest, digest);
    assert_eq!(
        got.repo_digests,
        vec![format!("{}/win/full@{digest}", dst.host())]
    );
}
