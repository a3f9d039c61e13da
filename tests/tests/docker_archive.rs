//! `mirror export --format docker`: one tar that is an OCI archive and what
//! `docker load` takes. Debian's podman loads it and shows the source
//! images (ID, tags, layers, platform); the same tar still verifies,
//! imports byte for byte and reads in skopeo; what docker's format cannot
//! hold is refused naming the image and why.

use std::path::Path;

use mirror_tests::cli::{mirror, quiet, Run};
use mirror_tests::fixtures::{
    generate, generate_index, push, push_index, GeneratedImage, ImageSpec, IndexSpec, LayerSpec,
};
use mirror_tests::images::{client, push_blob, repo, tag_digest};
use mirror_tests::peers::skopeo_raw;
use mirror_tests::podman::{with_foreign_layer, Inspected, Podman};
use mirror_tests::{Registry, RegistryOptions};
use registry_client::media_type::OCI_MANIFEST;

async fn export(args: &[&str]) -> Run {
    quiet("export", args).await
}

fn layers(seeds: &[u64]) -> Vec<LayerSpec> {
    seeds
        .iter()
        .map(|&seed| LayerSpec {
            seed,
            size: 20_000 + seed as usize * 1000,
        })
        .collect()
}

/// What podman must show for `img` loaded under `tags`.
fn expected(
    img: &GeneratedImage,
    tags: &[&str],
) -> (String, Vec<String>, String, String, Vec<String>) {
    let mut tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    tags.sort();
    (
        img.config_digest.hex().to_string(),
        img.layer_info
            .iter()
            .map(|l| l.diff_id.to_string())
            .collect(),
        img.spec.platform.0.clone(),
        img.spec.platform.1.clone(),
        tags,
    )
}

fn shown(i: &Inspected) -> (String, Vec<String>, String, String, Vec<String>) {
    (
        i.id.clone(),
        i.layers.clone(),
        i.os.clone(),
        i.architecture.clone(),
        i.repo_tags.clone(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A single-platform image `team/app:v1` and a two-platform index
/// `team/multi:v1` (linux/amd64, linux/arm64) of real gzip'd tar layers.
async fn source() -> (Registry, GeneratedImage, GeneratedImage, String) {
    let src = Registry::start_open().await.unwrap();
    let host = src.host();
    let c = client(&host, None);
    let app = generate(&ImageSpec::new("team/app", "v1", layers(&[1, 2])));
    push(&c, &host, std::slice::from_ref(&app)).await.unwrap();
    let amd = ImageSpec::new("team/multi", "amd", layers(&[3, 1]));
    let mut arm = ImageSpec::new("team/multi", "arm", layers(&[4]));
    arm.platform = ("linux".into(), "arm64".into());
    let multi = generate_index(&IndexSpec {
        repository: "team/multi".into(),
        tag: "v1".into(),
        images: vec![amd, arm],
    });
    push_index(&c, &host, &multi).await.unwrap();
    let amd = multi.images[0].clone();
    (src, app, amd, multi.manifest_digest.to_string())
}

#[tokio::test]
async fn podman_loads_an_export_for_docker_as_the_source_images_and_it_stays_an_oci_archive() {
    let (src, app, amd, multi_digest) = source().await;
    let host = src.host();
    let (app_ref, multi_ref) = (
        format!("{host}/team/app:v1"),
        format!("{host}/team/multi:v1"),
    );
    let tmp = tempfile::tempdir().unwrap();

    // docker load takes one platform per image: the index is refused,
    // naming its platforms and the way out; the other image is written.
    let first = tmp.path().join("first.tar");
    let run = export(&[
        "--format",
        "docker",
        &app_ref,
        &multi_ref,
        "--to",
        path(&first),
    ])
    .await;
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{all}");
    assert!(
        all.contains("team/multi:v1")
            && all.contains("linux/amd64, linux/arm64")
            && all.contains("--platform"),
        "{all}"
    );
    let podman = Podman::new();
    podman.load(&first);
    assert_eq!(
        podman.image_ids(),
        vec![app.config_digest.hex().to_string()]
    );
    let loaded = Inspected::of(&podman.inspect(&app_ref));
    assert_eq!(shown(&loaded), expected(&app, &[&app_ref]));

    // With --platform: both, the index as its amd64 image.
    let bundle = tmp.path().join("bundle.tar");
    let run = export(&[
        "--format",
        "docker",
        "--platform",
        "linux/amd64",
        &app_ref,
        &multi_ref,
        "--to",
        path(&bundle),
    ])
    .await;
    run.assert_code(0);
    let podman = Podman::new();
    let said = podman.load(&bundle);
    assert!(
        said.contains(&app_ref) && said.contains(&multi_ref),
        "{said}"
    );
    let mut ids = vec![
        app.config_digest.hex().to_string(),
        amd.config_digest.hex().to_string(),
    ];
    ids.sort();
    assert_eq!(podman.image_ids(), ids);
    for (name, img) in [(&app_ref, &app), (&multi_ref, &amd)] {
        let loaded = Inspected::of(&podman.inspect(name));
        assert_eq!(shown(&loaded), expected(img, &[name]), "{name}");
    }

    // The same tar is an OCI archive still: verified, read by skopeo,
    // imported with the single image's digest kept (the filtered index
    // is new, as --platform always makes it).
    mirror(&["verify", path(&bundle)], &[]).await.assert_code(0);
    let raw = skopeo_raw(&format!("oci-archive:{}:team/app:v1", bundle.display()));
    assert_eq!(raw, app.manifest.to_vec());
    let dst = Registry::start_open().await.unwrap();
    quiet("import", &[path(&bundle), "--to", &dst.host()])
        .await
        .assert_code(0);
    assert_eq!(
        tag_digest(&dst.host(), "team/app", "v1").await,
        Some(app.manifest_digest.clone())
    );
    let imported = tag_digest(&dst.host(), "team/multi", "v1").await.unwrap();
    assert_ne!(imported.to_string(), multi_digest);
}

#[tokio::test]
async fn what_a_docker_archive_cannot_hold_is_refused_naming_it() {
    let (src, app, _, _) = source().await;
    let app_ref = format!("{}/team/app:v1", src.host());
    let tmp = tempfile::tempdir().unwrap();
    // docker load reads a tar, and needs every layer in it.
    let layout = tmp.path().join("layout");
    let run = export(&[
        "--format",
        "docker",
        &app_ref,
        "--to",
        &format!("oci:{}", layout.display()),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("writes an archive"), "{}", run.stderr);
    assert!(!layout.exists());
    let list = tmp.path().join("old.blobs");
    std::fs::write(
        &list,
        format!("{} {}\n", app.config_digest, app.config.len()),
    )
    .unwrap();
    let delta = tmp.path().join("delta.tar");
    let run = export(&[
        "--format",
        "docker",
        "--since",
        path(&list),
        &app_ref,
        "--to",
        path(&delta),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
    assert!(!delta.exists());

    // Export leaves a foreign layer out, and docker load needs it: the
    // image is refused naming the layer, and no bundle is written.
    let reg = Registry::start(RegistryOptions {
        allow_foreign_layer_urls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (manifest, _) = with_foreign_layer(&app, 1, "https://example.invalid/layer");
    let c = client(&reg.host(), None);
    let r = repo(&reg.host(), "win/base");
    for (_, data) in app.blobs() {
        push_blob(&c, &r, data).await;
    }
    c.put_manifest(&r, "v1", OCI_MANIFEST, manifest)
        .await
        .unwrap();
    let win = tmp.path().join("win.tar");
    let run = export(&[
        "--format",
        "docker",
        &format!("{}/win/base:v1", reg.host()),
        "--to",
        path(&win),
    ])
    .await;
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{all}");
    let foreign = app.layer_info[1].digest.to_string();
    assert!(all.contains(&foreign) && all.contains("foreign"), "{all}");
    assert!(!win.exists());
    // Without --format docker the same image is exported, as every OCI export is.
    export(&[&format!("{}/win/base:v1", reg.host()), "--to", path(&win)])
        .await
        .assert_code(0);
}
