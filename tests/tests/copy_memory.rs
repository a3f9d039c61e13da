//! The engine streams: copying an image with a 300 MiB layer registry to
//! registry and registry to layout keeps memory flat. In its own test binary
//! so no other test's allocations blur the measurement.

use std::sync::Arc;

use mirror::progress::NoProgress;
use mirror::store::layout::LayoutStore;
use mirror::store::registry::RegistryStore;
use mirror::store::{ImageRef, ImageSource, ImageTarget};
use mirror::transfer::{CopyJob, CopyOptions, Engine};
use mirror_tests::images::{client, push_big_layer_image, repo};
use mirror_tests::memory::{peak_kib, reset_peak, rss_kib};
use mirror_tests::Registry;

const CHUNK: usize = 1024 * 1024;
const CHUNKS: usize = 300;
const MAX_GROWTH: u64 = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_layer_is_copied_through_flat_memory() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "big/layer");

    // Pushed as a stream, so the test itself holds 1 MiB of it.
    let (img, layer_digest, total) = push_big_layer_image(&c, &r, "v1", 7, CHUNK, CHUNKS).await;

    let layout_dir = tempfile::tempdir().unwrap();
    let source: Arc<dyn ImageSource> = Arc::new(RegistryStore::new(c.clone(), r.clone()));
    let to_registry: Arc<dyn ImageTarget> = Arc::new(RegistryStore::new(
        client(&dst.host(), None),
        repo(&dst.host(), "big/layer"),
    ));
    let to_layout: Arc<dyn ImageTarget> =
        Arc::new(LayoutStore::open_or_create(layout_dir.path()).unwrap());
    let job = |target: Arc<dyn ImageTarget>| CopyJob {
        source: source.clone(),
        source_ref: ImageRef::Tag("v1".into()),
        target,
        target_tag: Some("v1".into()),
        target_digest: None,
        selection: Default::default(),
        source_label: "src".into(),
        target_label: "dst".into(),
    };

    reset_peak();
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
