//! Bundles stream: a 300 MiB layer goes registry → `oci-archive:` →
//! registry with memory flat both ways. In its own test binary so no other
//! test's allocations blur the measurement.

use std::sync::Arc;

use mirror::progress::NoProgress;
use mirror::store::archive::{ArchiveReader, ArchiveWriter};
use mirror::store::registry::RegistryStore;
use mirror::store::{ImageRef, ImageSource, ImageTarget};
use mirror::transfer::{CopyJob, CopyOptions, Engine};
use mirror_tests::images::{client, push_big_layer_image, repo};
use mirror_tests::memory::{peak_kib, reset_peak, rss_kib};
use mirror_tests::Registry;

const CHUNK: usize = 1024 * 1024;
const CHUNKS: usize = 300;
const MAX_GROWTH: u64 = 64 * 1024 * 1024;

/// Run one copy and return how far peak memory rose above the start.
async fn growth_of(job: CopyJob) -> u64 {
    reset_peak();
    let base = rss_kib();
    let engine = Engine::new(CopyOptions::default(), Arc::new(NoProgress));
    let report = engine.run(vec![job]).await;
    let peak = peak_kib();
    for i in &report.images {
        assert!(i.error.is_none(), "{:?}", i.error);
    }
    eprintln!("baseline {} MiB, peak {} MiB", base >> 10, peak >> 10);
    peak.saturating_sub(base) * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_layer_goes_through_a_bundle_in_flat_memory() {
    let src = Registry::start_open().await.unwrap();
    let dst = Registry::start_open().await.unwrap();
    let c = client(&src.host(), None);
    let r = repo(&src.host(), "big/layer");
    let (_img, layer_digest, total) = push_big_layer_image(&c, &r, "v1", 9, CHUNK, CHUNKS).await;

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("big.tar");
    let job = |source: Arc<dyn ImageSource>, target: Arc<dyn ImageTarget>| CopyJob {
        source,
        source_ref: ImageRef::Tag("v1".into()),
        target,
        target_tag: Some("v1".into()),
        target_digest: None,
        selection: Default::default(),
        source_label: "src".into(),
        target_label: "dst".into(),
    };

    let export = growth_of(job(
        Arc::new(RegistryStore::new(c.clone(), r.clone())),
        Arc::new(ArchiveWriter::create(&bundle).unwrap()),
    ))
    .await;
    assert!(
        export < MAX_GROWTH,
        "exporting grew memory by {} MiB",
        export >> 20
    );
    assert!(std::fs::metadata(&bundle).unwrap().len() > total);

    let import = growth_of(job(
        Arc::new(ArchiveReader::open(&bundle).unwrap()),
        Arc::new(RegistryStore::new(
            client(&dst.host(), None),
            repo(&dst.host(), "big/layer"),
        )),
    ))
    .await;
    assert!(
        import < MAX_GROWTH,
        "importing grew memory by {} MiB",
        import >> 20
    );
    let landed = client(&dst.host(), None)
        .head_blob(&repo(&dst.host(), "big/layer"), &layer_digest)
        .await
        .unwrap();
    assert_eq!(landed, Some(total));
}
