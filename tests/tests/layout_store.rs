//! The OCI layout store against peer tools: what it writes, skopeo and umoci
//! read byte for byte; what skopeo writes, it reads and verifies; several
//! processes naming images in one layout lose no name.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use futures::{stream, StreamExt};
use mirror::store::layout::LayoutStore;
use mirror::store::{ImageRef, ImageSource, ImageTarget};
use mirror_tests::images::{image, index, TestImage};
use mirror_tests::peers::run_peer;
use registry_client::{Descriptor, Digest, Manifest};

fn descriptor(media_type: &str, data: &Bytes) -> Descriptor {
    Descriptor::new(media_type, Digest::sha256_of(data), data.len() as u64)
}

/// Write an image's blobs (in small chunks) and manifest, untagged.
async fn put_image(store: &LayoutStore, img: &TestImage) -> Manifest {
    let config_type = "application/vnd.oci.image.config.v1+json";
    let layer_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let blobs = std::iter::once((config_type, &img.config))
        .chain(img.layers.iter().map(|l| (layer_type, l)));
    for (mt, data) in blobs {
        let parts: Vec<_> = data
            .chunks(4096)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        store
            .write_blob(&descriptor(mt, data), stream::iter(parts).boxed())
            .await
            .unwrap();
    }
    let m = Manifest {
        media_type: img.media_type.into(),
        digest: img.digest.clone(),
        bytes: img.manifest.clone(),
    };
    store.put_manifest(&m).await.unwrap();
    m
}

fn oci(dir: &Path, name: &str) -> String {
    format!("oci:{}:{name}", dir.display())
}

async fn read_blob(store: &LayoutStore, desc: &Descriptor) -> Vec<u8> {
    let mut s = store.read_blob(desc).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn skopeo_and_umoci_read_what_the_store_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let store = LayoutStore::create(&dir).unwrap();

    let img = image(1, &[1000, 300_000], false);
    let m = put_image(&store, &img).await;
    store.set_tag("v1", &m).await.unwrap();

    let raw = run_peer("skopeo", &["inspect", "--raw", &oci(&dir, "v1")]);
    assert_eq!(
        raw, img.manifest,
        "skopeo must see the exact manifest bytes"
    );
    // The parsed view reads the config blob too.
    let inspect: serde_json::Value =
        serde_json::from_slice(&run_peer("skopeo", &["inspect", &oci(&dir, "v1")])).unwrap();
    assert_eq!(inspect["Digest"], img.digest.to_string());
    assert_eq!(inspect["Architecture"], "amd64");

    let amd = image(2, &[500], false);
    let arm = image(3, &[700, 900], false);
    put_image(&store, &amd).await;
    put_image(&store, &arm).await;
    let (bytes, digest, mt) = index(&[(&amd, "linux/amd64"), (&arm, "linux/arm64")], false);
    let idx = Manifest {
        media_type: mt.into(),
        digest,
        bytes: bytes.clone(),
    };
    store.put_manifest(&idx).await.unwrap();
    store.set_tag("multi", &idx).await.unwrap();

    let raw = run_peer("skopeo", &["inspect", "--raw", &oci(&dir, "multi")]);
    assert_eq!(raw, bytes, "skopeo must see the exact index bytes");

    let dir_arg = dir.to_str().unwrap();
    let listed = String::from_utf8(run_peer("umoci", &["ls", "--layout", dir_arg])).unwrap();
    let mut names: Vec<&str> = listed.lines().map(str::trim).collect();
    names.sort();
    assert_eq!(names, vec!["multi", "v1"], "umoci ls printed {listed:?}");
}

#[tokio::test]
async fn reads_and_verifies_what_skopeo_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    let store = LayoutStore::create(&ours).unwrap();
    let img = image(4, &[2000, 150_000], false);
    let m = put_image(&store, &img).await;
    store.set_tag("v1", &m).await.unwrap();
    let amd = image(5, &[100], false);
    let arm = image(6, &[200], false);
    put_image(&store, &amd).await;
    put_image(&store, &arm).await;
    let (bytes, digest, mt) = index(&[(&amd, "linux/amd64"), (&arm, "linux/arm64")], false);
    let idx = Manifest {
        media_type: mt.into(),
        digest: digest.clone(),
        bytes: bytes.clone(),
    };
    store.put_manifest(&idx).await.unwrap();
    store.set_tag("multi", &idx).await.unwrap();

    // Our test layers are random bytes labelled tar+gzip. skopeo sniffs them
    // as uncompressed and, by default, gzips them for an oci: destination,
    // which rewrites the manifest; these flags make it copy as is.
    let as_is = [
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
    ];
    let copy_args = |extra: &[&str], from: String, to: String| {
        let mut args = vec![
            "--insecure-policy".to_string(),
            "copy".into(),
            "--quiet".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([from, to]);
        run_peer(
            "skopeo",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    };
    copy_args(&as_is, oci(&ours, "v1"), oci(&theirs, "copied"));
    let mut all = as_is.to_vec();
    all.push("--all");
    copy_args(&all, oci(&ours, "multi"), oci(&theirs, "multi-copied"));
    // And one that skopeo rewrites (recompressed layers, new manifest). Its
    // own layout: skopeo would reuse the blobs already at a destination.
    let rewritten = tmp.path().join("rewritten");
    copy_args(&[], oci(&ours, "v1"), oci(&rewritten, "rewritten"));

    let copy = LayoutStore::open(&theirs).unwrap();
    let names = copy.names().await.unwrap();
    let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["copied", "multi-copied"]);

    let got = copy.resolve(&ImageRef::Tag("copied".into())).await.unwrap();
    assert_eq!(got.bytes, img.manifest, "oci to oci copies keep the bytes");
    assert_eq!(got.digest, img.digest);
    assert_eq!(got.media_type, img.media_type);
    let content = got.content().unwrap();
    let config = content.config.unwrap();
    assert_eq!(read_blob(&copy, &config).await, img.config);
    for (desc, want) in content.layers.iter().zip(&img.layers) {
        assert_eq!(&read_blob(&copy, desc).await, want);
    }

    let got = copy
        .resolve(&ImageRef::Tag("multi-copied".into()))
        .await
        .unwrap();
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.digest, digest);
    assert!(got.is_index());
    for child in [&amd, &arm] {
        let cm = copy.manifest(&child.digest).await.unwrap();
        assert_eq!(cm.bytes, child.manifest);
    }
    // By digest, and `Only` refuses a layout with two names.
    assert_eq!(
        copy.resolve_digest(&ImageRef::Digest(digest.clone()))
            .await
            .unwrap(),
        Some(digest)
    );
    let err = copy.resolve(&ImageRef::Only).await.unwrap_err().to_string();
    assert!(err.contains("copied, multi-copied"), "{err}");

    // What skopeo rewrote reads back as skopeo sees it, every blob verified.
    let copy = LayoutStore::open(&rewritten).unwrap();
    let got = copy
        .resolve(&ImageRef::Tag("rewritten".into()))
        .await
        .unwrap();
    let raw = run_peer(
        "skopeo",
        &["inspect", "--raw", &oci(&rewritten, "rewritten")],
    );
    assert_eq!(got.bytes, raw);
    assert_eq!(got.digest, Digest::sha256_of(&raw));
    assert_ne!(got.digest, img.digest, "skopeo was expected to recompress");
    let content = got.content().unwrap();
    assert_eq!(read_blob(&copy, &content.config.unwrap()).await, img.config);
    for desc in &content.layers {
        assert_eq!(read_blob(&copy, desc).await.len() as u64, desc.size);
    }
}

const CHILD_ENV: &str = "MIRROR_TEST_LAYOUT_CHILD";
const CHILDREN: usize = 4;
const NAMES_PER_CHILD: usize = 20;

/// Not a test on its own: the body each child process of
/// `tagging_from_several_processes_loses_no_name` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_tags_names_when_asked() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, child) = spec.rsplit_once('|').unwrap();
    let store = LayoutStore::open(dir).unwrap();
    let m = store.resolve(&ImageRef::Tag("base".into())).await.unwrap();
    let tasks: Vec<_> = (0..NAMES_PER_CHILD)
        .map(|i| {
            let (store, m) = (store.clone(), m.clone());
            let name = format!("p{child}-n{i}");
            tokio::spawn(async move { store.set_tag(&name, &m).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn tagging_from_several_processes_loses_no_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let store = LayoutStore::create(&dir).unwrap();
    let img = image(7, &[10], false);
    let m = put_image(&store, &img).await;
    store.set_tag("base", &m).await.unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|k| {
            Command::new(&exe)
                .args(["--exact", "child_tags_names_when_asked", "--test-threads=1"])
                .env(CHILD_ENV, format!("{}|{k}", dir.display()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut names: Vec<String> = store
        .names()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, d)| {
            assert_eq!(d.digest, img.digest);
            n
        })
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..CHILDREN)
        .flat_map(|k| (0..NAMES_PER_CHILD).map(move |i| format!("p{k}-n{i}")))
        .chain(["base".to_string()])
        .collect();
    want.sort();
    assert_eq!(names, want);
    // umoci agrees that the index is well formed.
    let listed = run_peer("umoci", &["ls", "--layout", dir.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8(listed).unwrap().lines().count(),
        want.len()
    );
}
