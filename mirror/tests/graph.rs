//! The image graph walk over a store in memory: order, reads, checks and
//! bounds.

use bytes::Bytes;
use mirror::graph::{walk, Bounds, GraphError, Selection, StoreReader};
use mirror::testing::images::{image, index, index_of, layer};
use mirror::testing::{Image, MemoryStore, Request};
use registry_client::Digest;

fn store_of(images: &[&Image]) -> MemoryStore {
    let store = MemoryStore::new("src");
    for i in images {
        store.seed(i, None);
    }
    store
}

async fn walk_all(
    store: &MemoryStore,
    root: &Image,
) -> Result<mirror::graph::ImageGraph, GraphError> {
    walk(
        &StoreReader(store),
        root.root.clone(),
        &Selection::default(),
        &Bounds::default(),
        4,
    )
    .await
}

/// Every manifest comes after all the child manifests it lists.
fn assert_children_first(manifests: &[registry_client::Manifest]) {
    let position = |d: &Digest| manifests.iter().position(|m| &m.digest == d);
    for (i, m) in manifests.iter().enumerate() {
        for (edge, child) in mirror::graph::successors(m).unwrap() {
            if edge.is_manifest() {
                let at = position(&child.digest).expect("every child is walked");
                assert!(
                    at < i,
                    "{} comes before its child {}",
                    m.digest,
                    child.digest
                );
            }
        }
    }
}

#[tokio::test]
async fn children_come_before_parents_when_an_index_also_lists_a_nested_child_first() {
    // root lists m1, then an index holding m1 and m2.
    let m1 = image(1, [layer(1, 100)]);
    let m2 = image(2, [layer(2, 100)]);
    let inner = index(&[(&m1, None), (&m2, None)]);
    let root = index(&[(&m1, None), (&inner, None)]);
    let store = store_of(&[&root]);
    let graph = walk_all(&store, &root).await.unwrap();
    assert_eq!(graph.manifests.len(), 4);
    assert_eq!(graph.manifests.last().unwrap().digest, *root.digest());
    assert_children_first(&graph.manifests);
}

#[tokio::test]
async fn children_come_before_parents_when_the_nested_index_comes_first() {
    // root lists an index holding m1 and m2, then m1 itself.
    let m1 = image(1, [layer(1, 100)]);
    let m2 = image(2, [layer(2, 100)]);
    let inner = index(&[(&m1, None), (&m2, None)]);
    let root = index(&[(&inner, None), (&m1, None)]);
    let store = store_of(&[&root]);
    let graph = walk_all(&store, &root).await.unwrap();
    assert_eq!(graph.manifests.len(), 4);
    assert_children_first(&graph.manifests);
}

#[tokio::test]
async fn shared_children_and_blobs_are_read_and_listed_once() {
    let shared = layer(7, 1000);
    let m1 = image(1, [shared.clone(), layer(1, 10)]);
    let m2 = image(2, [shared.clone()]);
    let inner = index(&[(&m1, Some("linux/amd64")), (&m2, Some("linux/arm64"))]);
    let root = index(&[(&inner, None), (&m1, None), (&m2, None)]);
    let store = store_of(&[&root]);
    let graph = walk_all(&store, &root).await.unwrap();
    for m in [&m1, &m2, &inner] {
        assert_eq!(
            store.count_of(Request::Manifest, m.digest()),
            1,
            "{}",
            m.digest()
        );
    }
    // The root was given, not read.
    assert_eq!(store.count(Request::Manifest), 3);
    assert_eq!(store.count(Request::ReadBlob), 0);
    let shared_listed = graph
        .blobs
        .iter()
        .filter(|b| b.digest == *shared.digest())
        .count();
    assert_eq!(shared_listed, 1);
    // Two configs, the shared layer, m1's own layer.
    assert_eq!(graph.blobs.len(), 4);
    assert_eq!(
        graph.blob_bytes(),
        root.blobs.iter().map(|b| b.desc.size).sum::<u64>()
    );
}

#[tokio::test]
async fn a_child_whose_size_differs_from_its_descriptor_is_an_error() {
    let m1 = image(1, [layer(1, 100)]);
    let mut desc = m1.descriptor();
    desc.size += 1;
    let root = index_of(&[desc], [&m1]);
    let store = store_of(&[&root]);
    match walk_all(&store, &root).await {
        Err(GraphError::Size {
            digest,
            actual,
            expected,
        }) => {
            assert_eq!(digest, *m1.digest());
            assert_eq!(actual + 1, expected);
        }
        other => panic!("expected a size error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_child_is_a_read_error_naming_it() {
    let m1 = image(1, [layer(1, 100)]);
    let root = index(&[(&m1, None)]);
    let store = MemoryStore::new("src");
    store.seed_manifest(&root.root);
    let err = walk_all(&store, &root).await.unwrap_err();
    assert!(
        matches!(&err, GraphError::Read { digest, .. } if digest == m1.digest()),
        "{err}"
    );
    assert_eq!(err.kind(), registry_client::ErrorKind::NotFound);
}

#[tokio::test]
async fn a_manifest_that_is_not_json_is_an_error() {
    let bad = mirror::testing::images::manifest(
        registry_client::media_type::OCI_MANIFEST,
        Bytes::from_static(b"not json"),
    );
    let root = index_of(
        &[registry_client::Descriptor::new(
            &bad.media_type,
            bad.digest.clone(),
            bad.bytes.len() as u64,
        )],
        [],
    );
    let store = MemoryStore::new("src");
    store.seed_manifest(&bad);
    store.seed_manifest(&root.root);
    let err = walk_all(&store, &root).await.unwrap_err().to_string();
    assert!(err.contains(&bad.digest.to_string()), "{err}");
}

/// `levels` indexes, each holding the one below; one image at the bottom.
fn chain(levels: usize) -> (MemoryStore, Image) {
    let store = MemoryStore::new("src");
    let mut top = image(1, [layer(1, 10)]);
    store.seed(&top, None);
    for _ in 0..levels {
        let next = index_of(&[top.descriptor()], []);
        store.seed_manifest(&next.root);
        top = next;
    }
    (store, top)
}

#[tokio::test]
async fn a_deep_index_chain_stops_at_the_depth_bound() {
    let (store, top) = chain(1000);
    let err = walk_all(&store, &top).await.unwrap_err();
    assert!(matches!(err, GraphError::Bound { limit: 8, .. }), "{err}");
    assert!(
        err.to_string().contains("--limit index-depth=N"),
        "the error says how to raise the bound: {err}"
    );
    // It stopped at the bound, not at the bottom.
    assert!(store.count(Request::Manifest) <= 8);
}

#[tokio::test]
async fn a_deep_chain_within_generous_bounds_is_walked_without_recursion() {
    let (store, top) = chain(5000);
    let bounds = Bounds {
        depth: 10_000,
        ..Bounds::default()
    };
    let graph = walk(
        &StoreReader(&store),
        top.root.clone(),
        &Selection::default(),
        &bounds,
        4,
    )
    .await
    .unwrap();
    assert_eq!(graph.manifests.len(), 5001);
    assert_children_first(&graph.manifests);
}

#[tokio::test]
async fn the_manifest_and_blob_bounds_are_kept() {
    let images: Vec<Image> = (0..5).map(|i| image(i, [layer(i, 10)])).collect();
    let children: Vec<(&Image, Option<&str>)> = images.iter().map(|i| (i, None)).collect();
    let root = index(&children);
    let store = store_of(&[&root]);
    let bounds = |manifests, blobs| Bounds {
        manifests,
        blobs,
        ..Bounds::default()
    };
    let run = |b: Bounds| {
        let (store, root) = (&store, root.root.clone());
        async move { walk(&StoreReader(store), root, &Selection::default(), &b, 4).await }
    };
    let err = run(bounds(3, 100)).await.unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Bound {
                what: "manifests",
                ..
            }
        ),
        "{err}"
    );
    let err = run(bounds(100, 3)).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Bound { what: "blobs", .. }),
        "{err}"
    );
    assert_eq!(run(bounds(6, 10)).await.unwrap().blobs.len(), 10);
}

#[tokio::test]
async fn a_blob_claiming_more_than_the_byte_bound_is_refused_before_any_read() {
    let img = image(1, [layer(1, 10)]);
    let store = store_of(&[&img]);
    let bounds = Bounds {
        blob_bytes: 5,
        ..Bounds::default()
    };
    let err = walk(
        &StoreReader(&store),
        img.root.clone(),
        &Selection::default(),
        &bounds,
        4,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, GraphError::BlobTooLarge { .. })
            && err.to_string().contains("--limit blob-bytes=N"),
        "{err}"
    );
}

const SIGNATURE: &str = "application/vnd.cncf.notary.signature";
const SBOM: &str = "application/spdx+json";

fn with_referrers(types: &[&str]) -> Selection {
    Selection {
        referrers: Some(types.iter().map(|t| t.to_string()).collect()),
        ..Selection::default()
    }
}

#[tokio::test]
async fn referrers_are_walked_after_their_subject_recursively_and_only_when_asked() {
    use mirror::testing::images::referrer;
    let (a, b) = (image(1, [layer(1, 10)]), image(2, [layer(2, 10)]));
    let root = index(&[(&a, Some("linux/amd64")), (&b, Some("linux/arm64"))]);
    let sig = referrer(10, SIGNATURE, &root.descriptor());
    let sbom = referrer(11, SBOM, &a.descriptor());
    let sbom_sig = referrer(12, SIGNATURE, &sbom.descriptor());
    let store = store_of(&[&root, &sig, &sbom, &sbom_sig]);

    // Not asked: not listed, not walked.
    let plain = walk_all(&store, &root).await.unwrap();
    assert_eq!(plain.manifests.len(), 3);
    assert_eq!(plain.referrers, 0);
    assert_eq!(store.count(Request::Referrers), 0);

    let g = walk(
        &StoreReader(&store),
        root.root.clone(),
        &with_referrers(&[]),
        &Bounds::default(),
        4,
    )
    .await
    .unwrap();
    let at = |d: &Digest| g.manifests.iter().position(|m| &m.digest == d).unwrap();
    assert_eq!(g.manifests.len(), 6);
    assert_eq!(g.referrers, 3);
    assert!(at(a.digest()) < at(sbom.digest()), "a subject comes first");
    assert!(
        at(sbom.digest()) < at(sbom_sig.digest()),
        "a signature of an SBOM too"
    );
    assert!(at(root.digest()) < at(sig.digest()));
    // Their blobs move too, each once (the empty config is shared).
    for r in [&sig, &sbom, &sbom_sig] {
        assert!(g.blobs.iter().any(|d| &d.digest == r.blob(1).digest()));
    }
    assert_eq!(
        g.blobs
            .iter()
            .filter(|d| d.digest == *sig.blob(0).digest())
            .count(),
        1
    );
    // Every manifest walked was asked for its referrers, once.
    assert_eq!(store.count(Request::Referrers), 6);

    // Only signatures: the SBOM is left, so its signature is never reached.
    let g = walk(
        &StoreReader(&store),
        root.root.clone(),
        &with_referrers(&[SIGNATURE]),
        &Bounds::default(),
        4,
    )
    .await
    .unwrap();
    let digests: Vec<&Digest> = g.manifests.iter().map(|m| &m.digest).collect();
    assert!(digests.contains(&sig.digest()));
    assert!(!digests.contains(&sbom.digest()) && !digests.contains(&sbom_sig.digest()));
}

#[tokio::test]
async fn a_platform_filtered_root_takes_its_childrens_referrers_not_its_own() {
    use mirror::testing::images::referrer;
    let (a, b) = (image(3, [layer(3, 10)]), image(4, [layer(4, 10)]));
    let root = index(&[(&a, Some("linux/amd64")), (&b, Some("linux/arm64"))]);
    let root_sig = referrer(20, SIGNATURE, &root.descriptor());
    let a_sig = referrer(21, SIGNATURE, &a.descriptor());
    let store = store_of(&[&root, &root_sig, &a_sig]);
    let selection = Selection {
        platforms: vec!["linux/amd64".parse().unwrap()],
        ..with_referrers(&[])
    };
    let g = walk(
        &StoreReader(&store),
        root.root.clone(),
        &selection,
        &Bounds::default(),
        4,
    )
    .await
    .unwrap();
    let digests: Vec<&Digest> = g.manifests.iter().map(|m| &m.digest).collect();
    // The new index has another digest: the old one's signature names
    // nothing at the target.
    assert!(!digests.contains(&root_sig.digest()));
    assert!(digests.contains(&a_sig.digest()));
}

#[tokio::test]
async fn an_endless_chain_of_referrers_is_a_bound() {
    use mirror::testing::images::referrer;
    let img = image(5, [layer(5, 10)]);
    let mut images = vec![img.clone()];
    let mut subject = img.descriptor();
    for i in 0..20 {
        let r = referrer(100 + i, SIGNATURE, &subject);
        subject = r.descriptor();
        images.push(r);
    }
    let store = store_of(&images.iter().collect::<Vec<_>>());
    let err = walk(
        &StoreReader(&store),
        img.root.clone(),
        &with_referrers(&[]),
        &Bounds::default(),
        4,
    )
    .await
    .expect_err("a bound");
    assert!(err.to_string().contains("index-depth"), "{err}");
}
