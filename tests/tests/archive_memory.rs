//! Bundles stream: a 300 MiB layer goes registry → `oci-archive:` →
//! registry with memory flat both ways. In its own test binary so no other
//! test's allocations blur the measurement.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream;
use mirror::progress::NoProgress;
use mirror::store::archive::{ArchiveReader, ArchiveWriter};
use mirror::store::registry::RegistryStore;
use mirror::store::{ImageRef, ImageStore};
use mirror::transfer::{CopyJob, CopyOptions, Engine};
use mirror_tests::images::{blob, client, image_from_layers, repo};
use mirror_tests::Registry;
use registry_client::{Algorithm, Hasher};

const CHUNK: usize = 1024 * 1024;
const CHUNKS: usize = 300;
const MAX_GROWTH: u64 = 64 * 1024 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Run one copy and return how far peak memory rose above the start.
async fn growth_of(job: CopyJob) -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status_kib("VmRSS:");
    let engine = Engine::new(CopyOptions::default(), Arc::new(NoProgress));
    let report = engine.run(vec![job]).await;
    let peak = status_kib("VmHWM:");
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
    let piece: Bytes = blob(9, CHUNK);
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
    let mut img = image_from_layers(1, vec![Bytes::from_static(b"placeholder")], false);
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["layers"][0]["digest"] = serde_json::json!(layer_digest.to_string());
    m["layers"][0]["size"] = serde_json::json!(total);
    img.manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    mirror_tests::images::push_blob(&c, &r, img.config.clone()).await;
    c.put_manifest(&r, "v1", img.media_type, img.manifest.clone())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("big.tar");
    let job = |source: Arc<dyn ImageStore>, target: Arc<dyn ImageStore>| CopyJob {
        source,
        source_ref: ImageRef::Tag("v1".into()),
        target,
        target_tag: Some("v1".into()),
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
