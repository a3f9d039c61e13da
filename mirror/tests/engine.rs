//! The transfer engine between stores held in memory: digests kept, each
//! blob read once, order of writes, failures kept to their image, retries,
//! selections, bounds and the concurrency budget.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{engine, for_platforms, job, options};
use mirror::graph::successors;
use mirror::progress::{Event, Progress};
use mirror::store::{ImageRef, ImageStore};
use mirror::testing::faulty::{refused, retryable};
use mirror::testing::images::{foreign_layer, image, index, index_of, layer};
use mirror::testing::{Fault, Faulty, Image, MemoryStore, Op, Request, When, Written};
use mirror::transfer::{request_budget, CopyOptions, Engine};
use registry_client::ErrorKind;

/// A source holding `images` under their tags, and an empty target.
fn stores(images: &[(&Image, &str)]) -> (Arc<MemoryStore>, Arc<MemoryStore>) {
    let source = Arc::new(MemoryStore::new("source").with_chunk_size(1000));
    for (img, tag) in images {
        source.seed(img, Some(tag));
    }
    (source, Arc::new(MemoryStore::new("target")))
}

/// `img` as `v1` in a source whose blob reads meet `fault` when `when`:
/// the source's memory, the faulty source, and an empty target.
fn with_read_fault(
    img: &Image,
    when: When,
    fault: Fault,
) -> (Arc<MemoryStore>, Arc<Faulty>, Arc<MemoryStore>) {
    let (memory, target) = stores(&[(img, "v1")]);
    let source = Arc::new(Faulty::new(memory.clone()));
    source.inject(Op::ReadBlob, when, fault);
    (memory, source, target)
}

/// Copy `source:v1` to `target:v1` in one run.
async fn copy_v1<S: ImageStore + 'static, T: ImageStore + 'static>(
    source: &Arc<S>,
    target: &Arc<T>,
    options: CopyOptions,
) -> mirror::report::RunReport {
    engine(options)
        .run(vec![job(&dyn_store(source), &dyn_store(target), "v1")])
        .await
}

fn dyn_store<S: ImageStore + 'static>(s: &Arc<S>) -> Arc<dyn ImageStore> {
    s.clone()
}

/// Every manifest and blob of `img` is at the target byte for byte.
fn assert_copied(img: &Image, target: &MemoryStore) {
    for m in &img.manifests {
        assert_eq!(
            target.manifest_bytes(&m.digest).as_ref(),
            Some(&m.bytes),
            "{}",
            m.digest
        );
    }
    for b in &img.blobs {
        assert_eq!(
            target.blob_bytes(b.digest()).as_ref(),
            Some(&b.bytes),
            "{}",
            b.digest()
        );
    }
}

#[tokio::test]
async fn an_image_is_copied_byte_for_byte() {
    let img = image(1, [layer(1, 10_500), layer(2, 1), layer(3, 0)]);
    let (source, target) = stores(&[(&img, "v1")]);
    let report = copy_v1(&source, &target, options(4)).await;
    let r = &report.images[0];
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(r.source_digest.as_ref(), Some(img.digest()));
    assert_eq!(r.target_digest.as_ref(), Some(img.digest()));
    assert_eq!(r.digest_changed, None);
    assert_eq!(r.blobs_copied, 4);
    assert_eq!(
        r.bytes_copied,
        img.blobs.iter().map(|b| b.desc.size).sum::<u64>()
    );
    assert_eq!(target.tag("v1").as_ref(), Some(img.digest()));
    assert_copied(&img, &target);
}

#[tokio::test]
async fn a_multi_platform_index_is_copied_byte_for_byte() {
    let amd = image(1, [layer(1, 3000)]);
    let arm = image(2, [layer(2, 3000)]);
    let idx = index(&[(&amd, Some("linux/amd64")), (&arm, Some("linux/arm64"))]);
    let (source, target) = stores(&[(&idx, "multi")]);
    let report = engine(options(4))
        .run(vec![job(&dyn_store(&source), &dyn_store(&target), "multi")])
        .await;
    let r = &report.images[0];
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(r.target_digest.as_ref(), Some(idx.digest()));
    assert_eq!(target.tag("multi").as_ref(), Some(idx.digest()));
    assert_copied(&idx, &target);
}

#[tokio::test]
async fn a_blob_shared_by_images_and_by_jobs_with_different_platforms_is_read_once() {
    let shared = layer(9, 5000);
    let amd = image(1, [shared.clone(), layer(1, 100)]);
    let arm = image(2, [shared.clone(), layer(2, 100)]);
    let idx = index(&[(&amd, Some("linux/amd64")), (&arm, Some("linux/arm64"))]);
    let other = image(3, [shared.clone()]);
    let (source, target) = stores(&[(&idx, "multi"), (&other, "other")]);
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    let jobs = vec![
        job(&s, &t, "multi"),
        for_platforms(job(&s, &t, "multi"), &["linux/amd64"], "amd"),
        for_platforms(job(&s, &t, "multi"), &["linux/arm64"], "arm"),
        job(&s, &t, "other"),
    ];
    let report = engine(options(8)).run(jobs).await;
    for r in &report.images {
        assert!(r.succeeded(), "{}: {:?}", r.target, r.error);
    }
    for b in idx.blobs.iter().chain(&other.blobs) {
        assert_eq!(
            source.count_of(Request::ReadBlob, b.digest()),
            1,
            "{}",
            b.digest()
        );
        assert_eq!(
            target.count_of(Request::WriteBlob, b.digest()),
            1,
            "{}",
            b.digest()
        );
    }
    assert_eq!(source.count(Request::ReadBlob), 6);
    // A child manifest three jobs need is pushed once.
    assert_eq!(target.count_of(Request::PutManifest, amd.digest()), 1);
    let distinct: u64 = idx
        .blobs
        .iter()
        .chain(&other.blobs)
        .map(|b| (b.digest(), b.desc.size))
        .collect::<std::collections::HashMap<_, _>>()
        .values()
        .sum();
    assert_eq!(report.bytes_copied, distinct);
    // The filtered jobs got a new index each, with the one platform.
    for (r, tag, kept) in [
        (&report.images[1], "amd", &amd),
        (&report.images[2], "arm", &arm),
    ] {
        assert!(r.digest_changed.is_some());
        let root = target.tag(tag).unwrap();
        assert_eq!(r.target_digest.as_ref(), Some(&root));
        assert_ne!(&root, idx.digest());
        let written = target.manifest_bytes(&root).unwrap();
        let m = mirror::testing::images::manifest(registry_client::media_type::OCI_INDEX, written);
        let children: Vec<_> = successors(&m)
            .unwrap()
            .into_iter()
            .map(|(_, d)| d.digest)
            .collect();
        assert_eq!(children, vec![kept.digest().clone()]);
    }
}

#[tokio::test]
async fn a_blob_the_target_already_has_is_not_read() {
    let have = layer(1, 2000);
    let img = image(1, [have.clone(), layer(2, 2000)]);
    let (source, target) = stores(&[(&img, "v1")]);
    target.seed_blob(&have);
    let report = copy_v1(&source, &target, options(4)).await;
    let r = &report.images[0];
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!((r.blobs_present, r.blobs_copied), (1, 2));
    assert_eq!(source.count_of(Request::ReadBlob, have.digest()), 0);
    assert_eq!(target.count_of(Request::WriteBlob, have.digest()), 0);
    assert_copied(&img, &target);
}

#[tokio::test]
async fn a_second_run_reads_no_blob() {
    let img = image(1, [layer(1, 2000), layer(2, 2000)]);
    let (source, target) = stores(&[(&img, "v1")]);
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    engine(options(4)).run(vec![job(&s, &t, "v1")]).await;
    source.reset_counts();
    target.reset_counts();
    let report = engine(options(4)).run(vec![job(&s, &t, "v1")]).await;
    assert!(report.images[0].succeeded());
    assert_eq!(report.images[0].blobs_present, 3);
    assert_eq!(source.count(Request::ReadBlob), 0);
    assert_eq!(target.count(Request::WriteBlob), 0);
}

/// Each write comes after the writes of what it references, and each
/// image's tag after everything of that image.
fn assert_order(writes: &[Written], images: &[(&Image, &str)]) {
    let at = |w: &Written| writes.iter().position(|x| x == w);
    for (img, tag) in images {
        let tag_at = at(&Written::Tag(tag.to_string(), img.digest().clone())).expect("tagged");
        for m in &img.manifests {
            let m_at = at(&Written::Manifest(m.digest.clone())).expect("pushed");
            assert!(m_at < tag_at, "{} after the tag {tag}", m.digest);
            for (edge, d) in successors(m).unwrap() {
                let child = if edge.is_manifest() {
                    Written::Manifest(d.digest.clone())
                } else {
                    Written::Blob(d.digest.clone())
                };
                let child_at = at(&child).expect("written");
                assert!(
                    child_at < m_at,
                    "{} before its child {}",
                    m.digest,
                    d.digest
                );
            }
        }
    }
}

#[tokio::test]
async fn children_are_written_before_parents_and_tags_last() {
    let m1 = image(1, [layer(1, 1500), layer(2, 10)]);
    let m2 = image(2, [layer(3, 1500)]);
    let m3 = image(3, [layer(4, 1500)]);
    let inner = index(&[(&m1, Some("linux/amd64")), (&m2, Some("linux/arm64"))]);
    let root = index(&[(&inner, None), (&m3, Some("linux/amd64"))]);
    let single = image(4, [layer(5, 1500)]);
    let (source, target) = stores(&[(&root, "nested"), (&single, "single")]);
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    let report = engine(options(4))
        .run(vec![job(&s, &t, "nested"), job(&s, &t, "single")])
        .await;
    for r in &report.images {
        assert!(r.succeeded(), "{:?}", r.error);
    }
    assert_order(&target.writes(), &[(&root, "nested"), (&single, "single")]);
}

#[tokio::test]
async fn a_child_the_root_lists_after_a_nested_index_holding_it_is_pushed_before_that_index() {
    let m1 = image(1, [layer(1, 100)]);
    let m2 = image(2, [layer(2, 100)]);
    let inner = index(&[(&m1, None), (&m2, None)]);
    let root = index(&[(&inner, None), (&m1, None)]);
    let (source, target) = stores(&[(&root, "v1")]);
    let report = copy_v1(&source, &target, options(4)).await;
    assert!(report.images[0].succeeded(), "{:?}", report.images[0].error);
    assert_order(&target.writes(), &[(&root, "v1")]);
}

#[tokio::test]
async fn a_failing_blob_fails_its_image_and_no_other() {
    let bad = layer(66, 3000);
    let a = image(1, [layer(1, 3000)]);
    let b = image(2, [bad.clone(), layer(2, 3000)]);
    let c = image(3, [layer(3, 3000)]);
    let (memory, target) = stores(&[(&a, "a"), (&b, "b"), (&c, "c")]);
    let source = Arc::new(Faulty::new(memory.clone()));
    source.inject(
        Op::ReadBlob,
        When::Digest(bad.digest().clone()),
        Fault::fail(refused),
    );
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    let report = engine(options(4))
        .run(vec![job(&s, &t, "a"), job(&s, &t, "b"), job(&s, &t, "c")])
        .await;
    assert_eq!((report.succeeded, report.failed), (2, 1));
    let failed = &report.images[1];
    let error = failed.error.as_deref().unwrap();
    assert!(error.contains(&bad.digest().to_string()), "{error}");
    assert_eq!(failed.error_kind, Some(ErrorKind::Protocol));
    assert_eq!(failed.target_digest, None);
    assert_eq!(target.tag("b"), None);
    assert_eq!(target.manifest_bytes(b.digest()), None);
    assert!(!target.has_blob(bad.digest()));
    assert_eq!(target.tag("a").as_ref(), Some(a.digest()));
    assert_eq!(target.tag("c").as_ref(), Some(c.digest()));
    // A non-retryable error is not tried again.
    assert_eq!(source.fired(), 1);
}

#[tokio::test]
async fn a_retryable_failure_is_retried_within_blob_attempts() {
    let flaky = layer(5, 3000);
    let img = image(1, [flaky.clone()]);
    let (memory, source, target) = with_read_fault(
        &img,
        When::FirstOf(flaky.digest().clone(), 2),
        Fault::fail(retryable),
    );
    let report = copy_v1(
        &source,
        &target,
        CopyOptions {
            blob_attempts: 3,
            ..options(4)
        },
    )
    .await;
    assert!(report.images[0].succeeded(), "{:?}", report.images[0].error);
    assert_eq!(source.fired(), 2);
    assert_eq!(memory.count_of(Request::ReadBlob, flaky.digest()), 1);
    assert_copied(&img, &target);
}

#[tokio::test]
async fn a_retryable_failure_past_blob_attempts_fails_the_image_saying_how_often() {
    let flaky = layer(5, 3000);
    let img = image(1, [flaky.clone()]);
    let (memory, target) = stores(&[(&img, "v1")]);
    let source = Arc::new(Faulty::new(memory));
    source.inject(
        Op::ReadBlob,
        When::Digest(flaky.digest().clone()),
        Fault::fail(retryable),
    );
    let report = copy_v1(
        &source,
        &target,
        CopyOptions {
            blob_attempts: 2,
            ..options(4)
        },
    )
    .await;
    let r = &report.images[0];
    let error = r.error.as_deref().expect("failed");
    assert!(error.contains("attempt 2 of 2"), "{error}");
    assert_eq!(r.error_kind, Some(ErrorKind::Retryable));
    assert_eq!(source.fired(), 2);
    assert_eq!(target.tag("v1"), None);
}

#[tokio::test]
async fn the_run_retry_budget_stops_retries() {
    let flaky = layer(5, 3000);
    let img = image(1, [flaky.clone()]);
    let (memory, target) = stores(&[(&img, "v1")]);
    let source = Arc::new(Faulty::new(memory));
    source.inject(
        Op::ReadBlob,
        When::FirstOf(flaky.digest().clone(), 1),
        Fault::fail(retryable),
    );
    let report = copy_v1(
        &source,
        &target,
        CopyOptions {
            blob_attempts: 3,
            run_retries: 0,
            ..options(4)
        },
    )
    .await;
    assert_eq!(report.images[0].error_kind, Some(ErrorKind::Retryable));
    assert_eq!(source.fired(), 1);
}

#[tokio::test]
async fn a_stream_cut_mid_blob_is_started_again_and_committed_whole() {
    let big = layer(5, 20_000);
    let img = image(1, [big.clone()]);
    let (memory, source, target) = with_read_fault(
        &img,
        When::FirstOf(big.digest().clone(), 1),
        Fault::cut(7_500, retryable),
    );
    let report = copy_v1(&source, &target, options(4)).await;
    assert!(report.images[0].succeeded(), "{:?}", report.images[0].error);
    assert_eq!(memory.count_of(Request::ReadBlob, big.digest()), 2);
    assert_eq!(target.count_of(Request::WriteBlob, big.digest()), 2);
    let committed = target
        .writes()
        .into_iter()
        .filter(|w| *w == Written::Blob(big.digest().clone()))
        .count();
    assert_eq!(committed, 1);
    assert_copied(&img, &target);
}

#[tokio::test]
async fn a_corrupt_stream_is_not_committed_nor_retried() {
    let victim = layer(5, 5000);
    let img = image(1, [victim.clone()]);
    // A source that breaks its contract: a changed byte, a clean end.
    let (memory, source, target) = with_read_fault(
        &img,
        When::Digest(victim.digest().clone()),
        Fault::Flip { at: 4321 },
    );
    let report = copy_v1(&source, &target, options(4)).await;
    let r = &report.images[0];
    assert_eq!(r.error_kind, Some(ErrorKind::Integrity), "{:?}", r.error);
    assert!(!target.has_blob(victim.digest()));
    assert_eq!(target.tag("v1"), None);
    assert_eq!(target.manifest_count(), 0);
    assert_eq!(memory.count_of(Request::ReadBlob, victim.digest()), 1);
}

#[tokio::test]
async fn a_corrupted_source_store_fails_the_read_and_nothing_is_committed() {
    let victim = layer(5, 5000);
    let img = image(1, [victim.clone()]);
    let (source, target) = stores(&[(&img, "v1")]);
    let mut bytes = victim.bytes.to_vec();
    bytes[0] ^= 1;
    source.seed_corrupt_blob(victim.digest(), bytes.into());
    let report = copy_v1(&source, &target, options(4)).await;
    let r = &report.images[0];
    assert_eq!(r.error_kind, Some(ErrorKind::Integrity), "{:?}", r.error);
    assert!(r
        .error
        .as_deref()
        .unwrap()
        .contains(&victim.digest().to_string()));
    assert!(!target.has_blob(victim.digest()));
    assert_eq!(target.tag("v1"), None);
}

#[tokio::test]
async fn a_write_cut_short_leaves_nothing_under_the_digest() {
    let victim = layer(5, 5000);
    let img = image(1, [victim.clone()]);
    let (source, memory) = stores(&[(&img, "v1")]);
    let target = Arc::new(Faulty::new(memory.clone()));
    target.inject(
        Op::WriteBlob,
        When::Digest(victim.digest().clone()),
        Fault::cut(2500, refused),
    );
    let report = copy_v1(&source, &target, options(4)).await;
    assert!(!report.images[0].succeeded());
    assert!(!memory.has_blob(victim.digest()));
    assert_eq!(memory.tag("v1"), None);
}

#[tokio::test]
async fn a_failed_manifest_push_or_tag_fails_the_image_and_moves_no_tag() {
    let img = image(1, [layer(1, 100)]);
    for op in [Op::PutManifest, Op::SetTag] {
        let (source, memory) = stores(&[(&img, "v1")]);
        memory.seed_tag("v1", &registry_client::Digest::sha256_of(b"before"));
        let target = Arc::new(Faulty::new(memory.clone()));
        target.inject(op, When::Always, Fault::fail(refused));
        let report = copy_v1(&source, &target, options(4)).await;
        let r = &report.images[0];
        let error = r.error.as_deref().expect("failed");
        let doing = if op == Op::PutManifest {
            "pushing manifest"
        } else {
            "tagging"
        };
        assert!(error.contains(doing), "{error}");
        assert_eq!(
            memory.tag("v1"),
            Some(registry_client::Digest::sha256_of(b"before"))
        );
        assert_eq!(r.target_digest, None);
    }
}

#[tokio::test]
async fn a_platform_filter_that_matches_nothing_fails_the_image_naming_it() {
    let amd = image(1, [layer(1, 100)]);
    let idx = index(&[(&amd, Some("linux/amd64"))]);
    let (source, target) = stores(&[(&idx, "multi")]);
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    let report = engine(options(4))
        .run(vec![
            for_platforms(job(&s, &t, "multi"), &["linux/s390x"], "z"),
            job(&s, &t, "multi"),
        ])
        .await;
    let r = &report.images[0];
    let error = r.error.as_deref().expect("failed");
    assert!(error.contains("linux/s390x"), "{error}");
    assert_eq!(r.error_kind, Some(ErrorKind::NotFound));
    assert_eq!(target.tag("z"), None);
    assert!(report.images[1].succeeded());
}

#[tokio::test]
async fn a_foreign_layer_is_left_where_it_is_unless_included() {
    let foreign = foreign_layer(1, 4000);
    let img = image(1, [foreign.clone(), layer(2, 100)]);
    for include in [false, true] {
        let (source, target) = stores(&[(&img, "win")]);
        let mut j = job(&dyn_store(&source), &dyn_store(&target), "win");
        j.selection.include_foreign = include;
        let report = engine(options(4)).run(vec![j]).await;
        let r = &report.images[0];
        assert!(r.succeeded(), "{:?}", r.error);
        assert_eq!(r.target_digest.as_ref(), Some(img.digest()));
        assert_eq!(
            source.count_of(Request::ReadBlob, foreign.digest()),
            usize::from(include)
        );
        assert_eq!(target.has_blob(foreign.digest()), include);
        assert_eq!(
            target.manifest_bytes(img.digest()),
            Some(img.root.bytes.clone())
        );
    }
}

#[tokio::test]
async fn a_deeply_nested_index_chain_fails_with_a_bound_error() {
    let (source, target) = stores(&[]);
    let mut top = image(1, [layer(1, 10)]);
    source.seed(&top, None);
    for _ in 0..1000 {
        top = index_of(&[top.descriptor()], []);
        source.seed_manifest(&top.root);
    }
    source.seed_tag("deep", top.digest());
    let report = engine(options(4))
        .run(vec![job(&dyn_store(&source), &dyn_store(&target), "deep")])
        .await;
    let r = &report.images[0];
    let error = r.error.as_deref().expect("failed");
    assert!(error.contains("nested indexes"), "{error}");
    assert_eq!(r.error_kind, Some(ErrorKind::Protocol));
    assert!(target.writes().is_empty());
    assert!(source.count(Request::Manifest) <= 8);
}

/// `images` tagged `t0`, `t1`, … at the source, and an empty target.
fn tagged_stores(images: &[Image]) -> (Vec<String>, Arc<MemoryStore>, Arc<MemoryStore>) {
    let tags: Vec<String> = (0..images.len()).map(|i| format!("t{i}")).collect();
    let seeded: Vec<(&Image, &str)> = images
        .iter()
        .zip(&tags)
        .map(|(i, t)| (i, t.as_str()))
        .collect();
    let (source, target) = stores(&seeded);
    (tags, source, target)
}

/// Six tagged images of four layers each, in a source and target that
/// answer after `latency`.
fn six_images(latency: Duration) -> (Vec<String>, Arc<MemoryStore>, Arc<MemoryStore>) {
    let images: Vec<Image> = (0..6)
        .map(|i| {
            image(
                i,
                (0..4).map(|l| layer(i * 10 + l, 2000)).collect::<Vec<_>>(),
            )
        })
        .collect();
    let (tags, source, target) = tagged_stores(&images);
    for s in [&source, &target] {
        s.set_latency(latency);
    }
    (tags, source, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_concurrency_budget_is_never_exceeded() {
    let (tags, source, target) = six_images(Duration::from_millis(3));
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    let report = engine(options(3))
        .run(tags.iter().map(|tag| job(&s, &t, tag)).collect())
        .await;
    assert_eq!(report.failed, 0);
    // Three blob streams, each four blobs this small (a quarter of a
    // stream apiece); small requests (manifests, HEADs, tags) have their
    // own budget of four times the streams.
    let streams = 3;
    let small_blobs = 4 * streams;
    let requests = request_budget(streams);
    for (name, store) in [("source", &source), ("target", &target)] {
        assert!(
            store.max_streams_in_flight() <= small_blobs,
            "{name}: {} streams",
            store.max_streams_in_flight()
        );
        assert!(
            store.max_in_flight() <= requests + small_blobs,
            "{name}: {} requests",
            store.max_in_flight()
        );
    }
    // Both budgets were used, not just kept: more small blobs at once
    // than whole streams.
    assert!(
        source.max_streams_in_flight() > streams,
        "source: {} streams",
        source.max_streams_in_flight()
    );
    assert!(
        target.max_in_flight() > 2 * streams,
        "target: small requests held to the streams' budget ({})",
        target.max_in_flight()
    );
    let distinct: HashSet<_> = report
        .images
        .iter()
        .map(|r| r.target_digest.clone())
        .collect();
    assert_eq!(distinct.len(), 6);
}

/// Images started and not yet finished: now, and the most at once.
#[derive(Default)]
struct ImagesInFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Progress for ImagesInFlight {
    fn event(&self, event: Event) {
        match event {
            Event::ImageStarted { .. } => {
                let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(now, Ordering::SeqCst);
            }
            Event::ImageFinished { .. } => {
                self.now.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_start_in_a_bounded_window_however_many_a_run_holds() {
    // Each image in flight holds its manifests and blob tasks: ten
    // thousand started at once held them all.
    let images: Vec<Image> = (0..200).map(|i| image(i, [layer(i, 100)])).collect();
    let (tags, source, target) = tagged_stores(&images);
    source.set_latency(Duration::from_millis(1));
    let (s, t) = (dyn_store(&source), dyn_store(&target));
    let progress = Arc::new(ImagesInFlight::default());
    let report = Engine::new(options(1), progress.clone())
        .run(tags.iter().map(|tag| job(&s, &t, tag)).collect())
        .await;
    assert_eq!((report.failed, report.images.len()), (0, 200));
    let most = progress.max.load(Ordering::SeqCst);
    // Twice the request budget of one stream.
    assert!(most <= 8, "{most} images in flight at once");
    assert!(most > 1, "one image at a time: the window was not used");
    for (img, tag) in images.iter().zip(&tags) {
        assert_eq!(target.tag(tag).as_ref(), Some(img.digest()), "{tag}");
    }
}

#[tokio::test]
async fn a_missing_source_image_is_named() {
    let (source, target) = stores(&[]);
    let mut j = job(&dyn_store(&source), &dyn_store(&target), "absent");
    j.source_ref = ImageRef::Tag("absent".into());
    let report = engine(options(4)).run(vec![j]).await;
    let r = &report.images[0];
    assert_eq!(r.error_kind, Some(ErrorKind::NotFound));
    assert!(
        r.error.as_deref().unwrap().contains("absent"),
        "{:?}",
        r.error
    );
}

#[tokio::test]
async fn referrers_are_copied_after_their_subject_and_one_that_fails_fails_its_image() {
    use mirror::testing::images::referrer;
    let img = image(900, [layer(900, 3000)]);
    let sig = referrer(
        901,
        "application/vnd.cncf.notary.signature",
        &img.descriptor(),
    );
    let (memory, target) = stores(&[(&img, "v1")]);
    memory.seed(&sig, None);

    // Without --referrers the signature stays behind.
    let report = copy_v1(&memory, &target, options(4)).await;
    assert_eq!(report.failed, 0);
    assert!(target.manifest_bytes(sig.digest()).is_none());

    let target = Arc::new(MemoryStore::new("target2"));
    let mut j = job(&dyn_store(&memory), &dyn_store(&target), "v1");
    j.selection.referrers = Some(Vec::new());
    let report = engine(options(4)).run(vec![j.clone()]).await;
    assert_eq!(report.failed, 0, "{:?}", report.images[0].error);
    assert_eq!(report.images[0].referrers, 1);
    assert_copied(&sig, &target);
    let writes = target.writes();
    let at = |w: Written| writes.iter().position(|x| *x == w).unwrap();
    assert!(
        at(Written::Manifest(img.digest().clone())) < at(Written::Manifest(sig.digest().clone()))
    );
    assert!(
        at(Written::Manifest(sig.digest().clone()))
            < at(Written::Tag("v1".into(), img.digest().clone()))
    );

    // A referrer that cannot be read fails its image: no tag moves.
    let faulty = Arc::new(Faulty::new(memory.clone()));
    faulty.inject(
        Op::Manifest,
        When::Digest(sig.digest().clone()),
        Fault::fail(refused),
    );
    let target = Arc::new(MemoryStore::new("target3"));
    let mut j = job(&dyn_store(&faulty), &dyn_store(&target), "v1");
    j.selection.referrers = Some(Vec::new());
    let report = engine(options(4)).run(vec![j]).await;
    assert_eq!(report.failed, 1);
    assert!(report.images[0]
        .error
        .as_deref()
        .unwrap()
        .contains(&sig.digest().to_string()));
    assert_eq!(target.tag("v1"), None);
}
