//! `oci-archive:` end to end: registry → bundle → registry byte for byte,
//! shared blobs written once, skopeo reading ours and we reading skopeo's,
//! failed writes leaving no bundle, hostile bundles refused.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt};
use mirror::progress::NoProgress;
use mirror::store::layout::LayoutStore;
use mirror::store::{BlobStream, ImageRef, ImageSource, ImageTarget, Store, StoreError, StoreId};
use mirror::transfer::{CopyJob, CopyOptions, Engine};
use mirror_tests::cli::{copy_ok, quiet};
use mirror_tests::files::{listing, tar_entries};
use mirror_tests::images::{blob, client, image, image_from_layers, push_image, push_index, repo};
use mirror_tests::peers::{
    run_peer, skopeo_copy_from_registry, skopeo_copy_to_registry, skopeo_exists, skopeo_raw,
    umoci_ls,
};
use mirror_tests::setup::open_registry_behind_proxy;
use mirror_tests::Registry;
use registry_client::{Descriptor, Digest, Manifest};

/// `index.json` of a bundle, parsed.
fn index_json(path: &Path) -> serde_json::Value {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            return serde_json::from_str(&s).unwrap();
        }
    }
    panic!("no index.json in {}", path.display());
}

#[tokio::test]
async fn registry_to_bundle_to_registry_keeps_every_byte_and_writes_shared_blobs_once() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let base = blob(77, 200_000);
    let names = [
        "boot/vm-bootstrapper/binimage/linux",
        "cap/lifecycler/installed",
    ];
    for (i, name) in names.iter().enumerate() {
        let img = image_from_layers(
            10 + i as u64,
            vec![base.clone(), blob(90 + i as u64, 30_000)],
            false,
        );
        push_image(&c, &repo(&src.host(), name), "eastus-stable", &img).await;
    }
    // A multi-platform index whose children share the base layer too.
    let r = repo(&src.host(), "multi/app");
    let a = image_from_layers(20, vec![base.clone()], false);
    let b = image(21, &[4000], true);
    push_index(
        &c,
        &r,
        "v1",
        &[(&a, "linux/amd64"), (&b, "linux/arm64")],
        false,
    )
    .await;

    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle.tar");
    let target = format!("oci-archive:{}", bundle.display());
    let sources: Vec<String> = names
        .iter()
        .map(|n| format!("{}/{n}:eastus-stable", src.host()))
        .chain([format!("{}/multi/app:v1", src.host())])
        .collect();
    let mut args: Vec<&str> = Vec::new();
    for s in &sources {
        args.extend([s.as_str(), target.as_str()]);
    }
    copy_ok(&args).await;
    assert_eq!(listing(tmp.path()), vec!["bundle.tar".to_string()]);

    // Each blob once: the base layer is in three images.
    let listed = tar_entries(&bundle);
    let base_entry = format!("blobs/sha256/{}", Digest::sha256_of(&base).hex());
    assert_eq!(listed.iter().filter(|e| **e == base_entry).count(), 1);
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "an entry repeats: {listed:?}");
    // 2 images × (config, own layer, manifest) + base + index + 2 children
    // × (config, manifest) + b's layer + oci-layout + index.json.
    assert_eq!(listed.len(), 6 + 1 + 1 + 4 + 1 + 2, "{listed:?}");

    // Named as oci: names them; the full source reference recorded.
    let index = index_json(&bundle);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 3);
    // In name order; each with the source's full reference.
    let mut by_name = sources.clone();
    by_name.sort_by_key(|s| s.split_once('/').unwrap().1.to_string());
    for (m, source) in manifests.iter().zip(&by_name) {
        let a = &m["annotations"];
        assert_eq!(a["io.containerd.image.name"], source.as_str());
        let repo_tag = source.split_once('/').unwrap().1;
        assert_eq!(a["org.opencontainers.image.ref.name"], repo_tag);
    }

    // And back into another registry: the same bytes.
    for s in &sources {
        let repo_tag = s.split_once('/').unwrap().1;
        copy_ok(&[
            &format!("oci-archive:{}:{repo_tag}", bundle.display()),
            &format!("{}/{repo_tag}", dst.host()),
        ])
        .await;
        assert_eq!(
            skopeo_raw(&format!("docker://{s}")),
            skopeo_raw(&format!("docker://{}/{repo_tag}", dst.host())),
            "{repo_tag}"
        );
    }
    // Every child of the index arrived (skopeo inspect reads each by digest).
    for child in [&a, &b] {
        assert!(skopeo_exists(&format!(
            "docker://{}/multi/app@{}",
            dst.host(),
            child.digest
        )));
    }
}

#[tokio::test]
async fn skopeo_reads_our_bundle() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let img = image(31, &[1000, 250_000], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar");
    copy_ok(&[
        &format!("{}/team/app:v1", src.host()),
        &format!("oci-archive:{}:app", bundle.display()),
    ])
    .await;
    let from = format!("oci-archive:{}:app", bundle.display());
    assert_eq!(skopeo_raw(&from), img.manifest);
    let to = format!("docker://{}/peer/app:v1", dst.host());
    skopeo_copy_to_registry(&from, &to);
    assert_eq!(skopeo_raw(&to), img.manifest);
    // Unpacked, it is an OCI layout umoci lists.
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_peer(
        "tar",
        &[
            "-xf",
            bundle.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
        ],
    );
    assert_eq!(umoci_ls(&unpacked).trim(), "app");
}

#[tokio::test]
async fn we_read_a_bundle_skopeo_writes() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let img = image(41, &[3000, 120_000], false);
    push_image(&c, &repo(&src.host(), "team/app"), "v1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("skopeo.tar");
    let theirs = format!("oci-archive:{}:app:v1", bundle.display());
    skopeo_copy_from_registry(&format!("docker://{}/team/app:v1", src.host()), &theirs);
    copy_ok(&[&theirs, &format!("{}/imported/app:v1", dst.host())]).await;
    // What skopeo put in the bundle (it may have recompressed) is exactly
    // what arrived.
    assert_eq!(
        skopeo_raw(&theirs),
        skopeo_raw(&format!("docker://{}/imported/app:v1", dst.host()))
    );
}

fn descriptor(data: &Bytes) -> Descriptor {
    Descriptor::new(
        "application/octet-stream",
        Digest::sha256_of(data),
        data.len() as u64,
    )
}

/// A layout holding `good` and `bad` (`bad`'s layer corrupted on disk).
async fn layout_with_a_corrupt_image(dir: &Path) {
    let store = LayoutStore::create(dir).unwrap();
    for (name, seed) in [("good", 51), ("bad", 52)] {
        let img = image(seed, &[5000], false);
        for b in std::iter::once(&img.config).chain(&img.layers) {
            let s = stream::iter([Ok(b.clone())]).boxed();
            store.write_blob(&descriptor(b), s).await.unwrap();
        }
        let m = Manifest {
            media_type: img.media_type.into(),
            digest: img.digest.clone(),
            bytes: img.manifest.clone(),
        };
        store.put_manifest(&m).await.unwrap();
        store.set_tag(name, &m).await.unwrap();
        if name == "bad" {
            let layer = Digest::sha256_of(&img.layers[0]);
            let file = dir.join("blobs/sha256").join(layer.hex());
            std::fs::write(file, vec![b'x'; 5000]).unwrap();
        }
    }
}

#[tokio::test]
async fn a_failed_write_leaves_no_bundle_and_a_partial_run_keeps_what_succeeded() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    layout_with_a_corrupt_image(&layout).await;
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let bundle = out.join("b.tar");
    let target = format!("oci-archive:{}", bundle.display());

    // The only image fails: no bundle, no temporary file left.
    let bad = format!("oci:{}:bad", layout.display());
    let run = quiet("copy", &[&bad, &target]).await;
    run.assert_code(1);
    assert!(run.stdout.contains("corrupt"), "{}", run.stdout);
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));

    // One of two fails: the bundle holds the other, and the run says it failed.
    let good = format!("oci:{}:good", layout.display());
    let run = quiet("copy", &[&good, &target, &bad, &target]).await;
    run.assert_code(1);
    assert_eq!(listing(&out), vec!["b.tar".to_string()]);
    let index = index_json(&bundle);
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, vec!["good"]);
    assert!(skopeo_exists(&format!(
        "oci-archive:{}:good",
        bundle.display()
    )));
}

/// A raw tar entry (no checks on the name: that is the point).
fn raw(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    if kind == tar::EntryType::Symlink {
        h.set_link_name("/etc").unwrap();
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[tokio::test]
async fn hostile_bundles_are_refused_and_nothing_reaches_the_target() {
    let dst = Registry::start_open().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // A good bundle to start from, written by mirror from a layout.
    let layout = tmp.path().join("layout");
    layout_with_a_corrupt_image(&layout).await;
    let good = tmp.path().join("good.tar");
    copy_ok(&[
        &format!("oci:{}:good", layout.display()),
        &format!("oci-archive:{}:v1", good.display()),
    ])
    .await;
    let bytes = std::fs::read(&good).unwrap();
    let body = &bytes[..bytes.len() - 1024]; // without the end blocks

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "escape",
            raw("../../etc/evil", tar::EntryType::Regular, b"x"),
            "../../etc/evil",
        ),
        (
            "absolute",
            raw("/tmp/evil", tar::EntryType::Regular, b"x"),
            "/tmp/evil",
        ),
        (
            "symlink",
            raw("blobs/sha256/ln", tar::EntryType::Symlink, b""),
            "blobs/sha256/ln",
        ),
        (
            "device",
            raw("blobs/dev", tar::EntryType::Block, b""),
            "blobs/dev",
        ),
        (
            "duplicate",
            raw(
                "oci-layout",
                tar::EntryType::Regular,
                br#"{"imageLayoutVersion":"9"}"#,
            ),
            "oci-layout",
        ),
    ];
    for (what, extra, entry) in cases {
        let path = tmp.path().join(format!("{what}.tar"));
        let mut t = body.to_vec();
        t.extend_from_slice(&extra);
        t.extend_from_slice(&[0u8; 1024]);
        std::fs::write(&path, t).unwrap();
        let target = format!("{}/hostile/{what}:v1", dst.host());
        let run = quiet(
            "copy",
            &[&format!("oci-archive:{}:v1", path.display()), &target],
        )
        .await;
        run.assert_code_of(what, 2);
        assert!(
            run.stderr.contains(&format!("{entry:?}")),
            "{what}: the error must name {entry:?}: {}",
            run.stderr
        );
        assert!(!skopeo_exists(&format!("docker://{target}")), "{what}");
        assert!(!tmp.path().join("etc").exists() && !Path::new("/tmp/evil").exists());
    }

    // A blob whose content is not its name: refused as it streams, naming
    // the entry; the tag never moves.
    let layer_name = {
        let img = image(51, &[5000], false);
        format!("blobs/sha256/{}", Digest::sha256_of(&img.layers[0]).hex())
    };
    let mut forged = bytes.clone();
    let at = find(&forged, layer_name.as_bytes()) + 512;
    forged[at] ^= 0xff;
    let path = tmp.path().join("forged.tar");
    std::fs::write(&path, forged).unwrap();
    let target = format!("{}/hostile/forged:v1", dst.host());
    let run = quiet(
        "copy",
        &[&format!("oci-archive:{}:v1", path.display()), &target],
    )
    .await;
    run.assert_code(1);
    assert!(run.stdout.contains(&layer_name), "{}", run.stdout);
    assert!(!skopeo_exists(&format!("docker://{target}")));
}

/// Where `needle` first occurs in `hay` (an entry's header starts there).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("the entry is in the bundle")
}

/// Start `mirror copy SRC DST` and wait until the proxy has begun serving
/// `layer` (which then stalls mid-body) and the temporary bundle holds bytes.
async fn start_stalled_copy(
    proxy: &mirror_tests::FaultProxy,
    layer: &Digest,
    src: &str,
    out: &Path,
    dst: &str,
) -> tokio::process::Child {
    let state = out.parent().unwrap().join("state");
    let child = mirror_tests::cli::command(
        &[
            "copy",
            "--progress",
            "none",
            "--state-dir",
            state.to_str().unwrap(),
            src,
            dst,
        ],
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        let partial_bytes: u64 = std::fs::read_dir(out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        if proxy.count(&http::Method::GET, &format!("/blobs/{layer}")) > 0 && partial_bytes > 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the copy never reached the layer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child
}

#[tokio::test]
async fn an_interrupted_or_killed_write_leaves_nothing_under_the_final_name() {
    use mirror_tests::{Fault, Rule};
    let (src, proxy) = open_registry_behind_proxy().await;
    let c = client(&src.host(), None);
    let img = image(61, &[2_000_000], false);
    push_image(&c, &repo(&src.host(), "slow/img"), "v1", &img).await;
    let layer = Digest::sha256_of(&img.layers[0]);
    // The layer stalls after 1.5 MB (past the 1 MiB write buffer): its entry
    // is partly on disk when the run stops.
    proxy.add_rule(
        Rule::new(Fault::StallResponseBodyAfter(1_500_000))
            .path_contains(&format!("/blobs/{layer}")),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let bundle = out.join("b.tar");
    let (from, to) = (
        format!("{}/slow/img:v1", proxy.host()),
        format!("oci-archive:{}", bundle.display()),
    );

    // Ctrl-C: exit 130; at most the temporary file is left, holding the
    // whole entries a rerun continues from.
    let mut child = start_stalled_copy(&proxy, &layer, &from, &out, &to).await;
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("mirror stopped")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!bundle.exists());
    let left = listing(&out);
    assert!(left.iter().all(|n| n == "b.tar.partial"), "{left:?}");

    // SIGKILL: no clean-up at all, yet nothing under the final name.
    proxy.clear_requests();
    let mut child = start_stalled_copy(&proxy, &layer, &from, &out, &to).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let left = listing(&out);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0], "b.tar.partial", "{left:?}");
    assert!(!bundle.exists());
}

/// A layout target whose `finish` fails, as an archive's would when its
/// rename is refused.
#[derive(Debug)]
struct FailsToFinish(LayoutStore);

impl Store for FailsToFinish {
    fn id(&self) -> &StoreId {
        self.0.id()
    }
}

/// Only a target: the narrower contract needs no reading side.
#[async_trait::async_trait]
impl ImageTarget for FailsToFinish {
    async fn current(&self, r: &ImageRef) -> Result<Option<Digest>, StoreError> {
        self.0.current(r).await
    }
    async fn put_manifest(&self, m: &Manifest) -> Result<(), StoreError> {
        self.0.put_manifest(m).await
    }
    async fn set_tag(&self, t: &str, m: &Manifest) -> Result<(), StoreError> {
        self.0.set_tag(t, m).await
    }
    async fn blob_size(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.0.blob_size(d).await
    }
    async fn write_blob(&self, d: &Descriptor, s: BlobStream) -> Result<(), StoreError> {
        self.0.write_blob(d, s).await
    }
    async fn finish(&self) -> Result<(), StoreError> {
        Err(StoreError::io(
            "renaming the bundle",
            std::io::Error::other("refused for the test"),
        ))
    }
}

#[tokio::test]
async fn a_target_that_cannot_finish_fails_the_images_bound_for_it_only() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    layout_with_a_corrupt_image(&layout).await;
    let source: Arc<dyn ImageSource> = Arc::new(LayoutStore::open(&layout).unwrap());
    let failing: Arc<dyn ImageTarget> = Arc::new(FailsToFinish(
        LayoutStore::create(tmp.path().join("a")).unwrap(),
    ));
    let fine: Arc<dyn ImageTarget> = Arc::new(LayoutStore::create(tmp.path().join("b")).unwrap());
    let job = |target: &Arc<dyn ImageTarget>, tag: &str| CopyJob {
        source: source.clone(),
        source_ref: ImageRef::Tag("good".into()),
        target: target.clone(),
        target_tag: Some(tag.into()),
        target_digest: None,
        selection: Default::default(),
        source_label: "good".into(),
        target_label: target.describe(),
    };
    let engine = Engine::new(CopyOptions::default(), Arc::new(NoProgress));
    let report = engine
        .run(vec![
            job(&failing, "one"),
            job(&fine, "x"),
            job(&failing, "two"),
        ])
        .await;
    assert_eq!((report.succeeded, report.failed), (1, 2));
    for i in [0, 2] {
        let err = report.images[i].error.as_deref().unwrap();
        assert!(
            err.contains("finishing oci:") && err.contains("refused for the test"),
            "{err}"
        );
        assert!(report.images[i].target_digest.is_none());
    }
    assert!(report.images[1].error.is_none());
}
