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
