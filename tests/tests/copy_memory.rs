//! The engine streams: copying an image with a 300 MiB layer registry to
//! registry and registry to layout keeps memory flat. In its own test binary
//! so no other test's allocations blur the measurement.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use mirror::progress::NoProgress;
use mirror::store::layout::LayoutStore;
use mirror::store::registry::RegistryStore;
use mirror::store::{ImageRef, ImageStore};
use mirror::transfer::{CopyJob, CopyOptions, Engine};
use mirror_tests::images::{blob, client, image_from_layers, repo};
use mirror_tests::Registry;
use registry_client::{Algorithm, Hasher};

const CHUNK: usize = 1024 * 1024;
const CHUNKS: usize = 300;
const MAX_GROWTH: u64 = 64 * 1024 * 1024;

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_layer_is_copied_through_flat_memory() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "big/layer");

    // Push the layer as a stream, so the test itself holds 1 MiB of it.
    let piece: Bytes = blob(7, CHUNK);
    let mut h = Hasher::new(Algorithm::Sha256);
    for _ in 0..CHUNKS {
        h.update(&piece);
    }
    let layer_digest = h.finish();
    let total = (CHUNK * CHUNKS) as u64;
    let p = piece.clone();
    let session = c.start_upload(&r).await.unwrap();
    session
        .put_whole(
            stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(p.clone()))),
            total,
            &layer_digest,
        )
        .await
        .unwrap();
    // A manifest naming it (the helper wants layer bytes only for digests).
    let mut img = image_from_layers(1, vec![Bytes::from_static(b"placeholder")], false);
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["layers"][0]["digest"] = serde_json::json!(layer_digest.to_string());
    m["layers"][0]["size"] = serde_json::json!(total);
    img.manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    mirror_tests::images::push_blob(&c, &r, img.config.clone()).await;
    c.put_manifest(&r, "v1", img.media_type, img.manifest.clone())
        .await
        .unwrap();

    let layout_dir = tempfile::tempdir().unwrap();
    let source: Arc<dyn ImageStore> = Arc::new(RegistryStore::new(c.clone(), r.clone()));
    let to_registry: Arc<dyn ImageStore> = Arc::new(RegistryStore::new(
        client(&dst.host(), None),
        repo(&dst.host(), "big/layer"),
    ));
    let to_layout: Arc<dyn ImageStore> =
        Arc::new(LayoutStore::open_or_create(layout_dir.path()).unwrap());
    let job = |target: Arc<dyn ImageStore>| CopyJob {
        source: source.clone(),
        source_ref: ImageRef::Tag("v1".into()),
        target,
        target_tag: Some("v1".into()),
        source_label: "src".into(),
        target_label: "dst".into(),
    };

    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = rss_kib();
    let engine = Engine::new(CopyOptions::default(), Arc::new(NoProgress));
    let report = engine.run(vec![job(to_registry), job(to_layout)]).await;
    let peak = peak_kib();
    for i in &report.images {
        assert!(i.error.is_none(), "{:?}", i.error);
    }
    assert_eq!(report.bytes_copied, 2 * total + 2 * img.config.len() as u64);
    let growth = (peak.saturating_sub(base)) * 1024;
    eprintln!(
        "baseline {} MiB, peak {} MiB while copying 2 × 300 MiB",
        base >> 10,
        peak >> 10
    );
    assert!(
        growth < MAX_GROWTH,
        "copying grew memory by {} MiB",
        growth >> 20
    );
    let written = std::fs::metadata(
        layout_dir
            .path()
            .join("blobs/sha256")
            .join(layer_digest.hex()),
    )
    .unwrap();
    assert_eq!(written.len(), total);
}
