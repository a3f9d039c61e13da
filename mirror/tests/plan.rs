//! The planner over stores in memory: `compare` finds current images with
//! two lookups and reads nothing else; `execute` copies only the rest.

mod common;

use std::sync::Arc;

use common::{engine, options};
use mirror::graph::Selection;
use mirror::plan::{compare, execute, Job, State};
use mirror::store::{ImageRef, ImageStore};
use mirror::testing::images::{image, index, layer};
use mirror::testing::{Image, MemoryStore, Request};
use registry_client::ErrorKind;

fn plan_job(source: &Arc<MemoryStore>, target: &Arc<MemoryStore>, tag: &str) -> Job {
    Job {
        source: Some(source.clone() as Arc<dyn ImageStore>),
        source_ref: ImageRef::Tag(tag.to_string()),
        source_label: format!("source:{tag}"),
        target: Some(target.clone() as Arc<dyn ImageStore>),
        target_tag: Some(tag.to_string()),
        target_digest: None,
        target_label: format!("target:{tag}"),
        selection: Selection::default(),
        state: State::Pending,
    }
}

fn pair() -> (Arc<MemoryStore>, Arc<MemoryStore>) {
    (
        Arc::new(MemoryStore::new("source")),
        Arc::new(MemoryStore::new("target")),
    )
}

#[tokio::test]
async fn an_unchanged_image_is_current_after_one_lookup_at_each_side() {
    let img = image(1, [layer(1, 1000)]);
    let (source, target) = pair();
    source.seed(&img, Some("v1"));
    target.seed(&img, Some("v1"));
    let mut jobs = vec![plan_job(&source, &target, "v1")];
    compare(&mut jobs, 4, false).await;
    assert!(
        matches!(&jobs[0].state, State::Current { digest } if digest == img.digest()),
        "{:?}",
        jobs[0].state
    );
    for side in [&source, &target] {
        assert_eq!(side.count(Request::ResolveDigest), 1);
        assert_eq!(side.total(), 1, "nothing but the lookup");
    }
}

#[tokio::test]
async fn a_changed_or_missing_image_is_to_copy() {
    let old = image(1, [layer(1, 1000)]);
    let new = image(2, [layer(2, 1000)]);
    let (source, target) = pair();
    source.seed(&new, Some("changed"));
    source.seed(&new, Some("missing"));
    target.seed(&old, Some("changed"));
    let mut jobs = vec![
        plan_job(&source, &target, "changed"),
        plan_job(&source, &target, "missing"),
    ];
    compare(&mut jobs, 4, false).await;
    match &jobs[0].state {
        State::Copy {
            source_digest,
            target_before,
            bytes_missing,
        } => {
            assert_eq!(source_digest, new.digest());
            assert_eq!(target_before.as_ref(), Some(old.digest()));
            assert_eq!(*bytes_missing, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            &jobs[1].state,
            State::Copy {
                target_before: None,
                ..
            }
        ),
        "{:?}",
        jobs[1].state
    );
    assert_eq!(
        source.count(Request::ReadBlob) + target.count(Request::ReadBlob),
        0
    );
}

#[tokio::test]
async fn an_image_missing_at_the_source_fails_naming_it() {
    let (source, target) = pair();
    let mut jobs = vec![plan_job(&source, &target, "gone")];
    compare(&mut jobs, 4, false).await;
    match &jobs[0].state {
        State::Failed { error, kind } => {
            assert_eq!(*kind, ErrorKind::NotFound);
            assert!(error.contains("source:gone"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_filtered_index_is_current_when_the_target_holds_the_filtered_one() {
    let amd = image(1, [layer(1, 100)]);
    let arm = image(2, [layer(2, 100)]);
    let idx = index(&[(&amd, Some("linux/amd64")), (&arm, Some("linux/arm64"))]);
    let (source, target) = pair();
    source.seed(&idx, Some("multi"));
    let mut job = plan_job(&source, &target, "multi");
    job.selection.platforms = vec!["linux/amd64".parse().unwrap()];
    // Copy it once, then compare again.
    let mut jobs = vec![job];
    compare(&mut jobs, 4, false).await;
    assert!(matches!(jobs[0].state, State::Copy { .. }));
    let report = execute(&jobs, &engine(options(4))).await;
    assert!(report.images[0].succeeded(), "{:?}", report.images[0].error);
    jobs[0].state = State::Pending;
    compare(&mut jobs, 4, false).await;
    let held = target.tag("multi").unwrap();
    assert_ne!(&held, idx.digest());
    assert!(
        matches!(&jobs[0].state, State::Current { digest } if *digest == held),
        "{:?}",
        jobs[0].state
    );
}

#[tokio::test]
async fn an_estimate_counts_missing_blob_bytes_once() {
    let shared = layer(9, 5000);
    let a = image(1, [shared.clone(), layer(1, 100)]);
    let b = image(2, [shared.clone()]);
    let (source, target) = pair();
    source.seed(&a, Some("a"));
    source.seed(&b, Some("b"));
    target.seed_blob(&a.blobs[2]);
    let mut jobs = vec![
        plan_job(&source, &target, "a"),
        plan_job(&source, &target, "b"),
    ];
    compare(&mut jobs, 4, true).await;
    let missing: u64 = jobs
        .iter()
        .map(|j| match j.state {
            State::Copy { bytes_missing, .. } => bytes_missing.unwrap(),
            ref other => panic!("{other:?}"),
        })
        .sum();
    let configs = a.blobs[0].desc.size + b.blobs[0].desc.size;
    assert_eq!(missing, configs + 5000);
    assert_eq!(source.count(Request::ReadBlob), 0);
}

#[tokio::test]
async fn execute_copies_only_what_needs_it_and_reports_the_rest() {
    let same = image(1, [layer(1, 1000)]);
    let fresh = image(2, [layer(2, 1000)]);
    let (source, target) = pair();
    source.seed(&same, Some("same"));
    source.seed(&fresh, Some("fresh"));
    target.seed(&same, Some("same"));
    let mut jobs = vec![
        plan_job(&source, &target, "same"),
        Job::failed(
            "source:x".into(),
            "target:x".into(),
            "no such image".into(),
            ErrorKind::NotFound,
        ),
        plan_job(&source, &target, "fresh"),
    ];
    compare(&mut jobs, 4, false).await;
    source.reset_counts();
    let report = execute(&jobs, &engine(options(4))).await;
    assert_eq!(report.images.len(), 3);
    let current = &report.images[0];
    assert!(current.current && current.succeeded());
    assert_eq!(current.target_digest.as_ref(), Some(same.digest()));
    assert_eq!(current.source, "source:same");
    let failed = &report.images[1];
    assert_eq!(failed.error.as_deref(), Some("no such image"));
    assert_eq!(failed.error_kind, Some(ErrorKind::NotFound));
    let copied = &report.images[2];
    assert!(copied.succeeded() && !copied.current, "{:?}", copied.error);
    assert_eq!(copied.blobs_copied, 2);
    assert_eq!((report.succeeded, report.failed), (2, 1));
    // Nothing of the current image was read.
    for b in &same.blobs {
        assert_eq!(source.count_of(Request::ReadBlob, b.digest()), 0);
    }
    assert_eq!(source.count(Request::ReadBlob), 2);
    assert_eq!(target.tag("fresh").as_ref(), Some(fresh.digest()));
}

#[tokio::test]
async fn execute_copies_the_digest_compared_even_if_the_tag_moved_since() {
    let compared = image(1, [layer(1, 1000)]);
    let later = image(2, [layer(2, 1000)]);
    let (source, target) = pair();
    source.seed(&compared, Some("v1"));
    let mut jobs = vec![plan_job(&source, &target, "v1")];
    compare(&mut jobs, 4, false).await;
    source.seed(&later, Some("v1"));
    let report = execute(&jobs, &engine(options(4))).await;
    assert!(report.images[0].succeeded(), "{:?}", report.images[0].error);
    assert_eq!(target.tag("v1").as_ref(), Some(compared.digest()));
}

#[tokio::test]
async fn a_job_never_compared_is_copied_as_named() {
    let img: Image = image(1, [layer(1, 1000)]);
    let (source, target) = pair();
    source.seed(&img, Some("v1"));
    let jobs = vec![plan_job(&source, &target, "v1")];
    let report = execute(&jobs, &engine(options(4))).await;
    assert!(report.images[0].succeeded(), "{:?}", report.images[0].error);
    assert_eq!(target.tag("v1").as_ref(), Some(img.digest()));
}
