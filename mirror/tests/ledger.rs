//! The ledger: one single-flight cell per blob and blob domain, one per
//! manifest and target, one write lock per target.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mirror::ledger::{BlobHome, Ledger, Placed};
use mirror::report::BlobOutcome;
use registry_client::Digest;

fn placed(mover: u64) -> Placed {
    Placed {
        home: BlobHome { repository: None },
        mover,
        outcome: BlobOutcome::Copied,
    }
}

#[test]
fn a_blob_has_one_cell_per_domain_and_digest() {
    let ledger = Ledger::default();
    let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
    assert!(Arc::ptr_eq(
        &ledger.cell("reg", &a),
        &ledger.cell("reg", &a)
    ));
    assert!(!Arc::ptr_eq(
        &ledger.cell("reg", &a),
        &ledger.cell("reg", &b)
    ));
    assert!(!Arc::ptr_eq(
        &ledger.cell("reg", &a),
        &ledger.cell("other", &a)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_needing_one_blob_move_it_once() {
    let ledger = Arc::new(Ledger::default());
    let digest = Digest::sha256_of(b"blob");
    let moves = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (1..=16u64)
        .map(|me| {
            let (ledger, digest, moves) = (ledger.clone(), digest.clone(), moves.clone());
            tokio::spawn(async move {
                let cell = ledger.cell("reg", &digest);
                let got = cell
                    .get_or_init(|| async {
                        moves.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        placed(me)
                    })
                    .await;
                got.mover
            })
        })
        .collect();
    let mut movers = Vec::new();
    for t in tasks {
        movers.push(t.await.unwrap());
    }
    assert_eq!(moves.load(Ordering::SeqCst), 1);
    movers.dedup();
    assert_eq!(movers.len(), 1, "every task saw the one mover");
}

#[tokio::test]
async fn a_failed_move_leaves_the_cell_empty_for_a_later_try() {
    let ledger = Ledger::default();
    let digest = Digest::sha256_of(b"blob");
    let cell = ledger.cell("reg", &digest);
    let failed: Result<&Placed, &str> = cell.get_or_try_init(|| async { Err("broke") }).await;
    assert!(failed.is_err());
    let again = ledger.cell("reg", &digest);
    assert!(again.get().is_none());
    let ok = again
        .get_or_try_init(|| async { Ok::<_, &str>(placed(2)) })
        .await
        .unwrap();
    assert_eq!(ok.mover, 2);
    assert_eq!(ledger.cell("reg", &digest).get().unwrap().mover, 2);
}

#[test]
fn a_manifest_has_one_cell_per_target_and_digest() {
    let ledger = Ledger::default();
    let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
    let same = ledger.manifest_cell("reg/x", &a);
    assert!(Arc::ptr_eq(&same, &ledger.manifest_cell("reg/x", &a)));
    assert!(!Arc::ptr_eq(&same, &ledger.manifest_cell("reg/y", &a)));
    assert!(!Arc::ptr_eq(&same, &ledger.manifest_cell("reg/x", &b)));
    // Manifest cells do not share the blobs' map.
    same.set(()).unwrap();
    assert!(ledger.cell("reg/x", &a).get().is_none());
}

#[tokio::test]
async fn manifest_writes_to_one_target_take_turns() {
    let ledger = Ledger::default();
    let first = ledger.manifest_writes("reg/x");
    let held = first.lock().await;
    assert!(ledger.manifest_writes("reg/x").try_lock().is_err());
    assert!(ledger.manifest_writes("reg/y").try_lock().is_ok());
    drop(held);
    assert!(ledger.manifest_writes("reg/x").try_lock().is_ok());
}
