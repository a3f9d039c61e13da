//! Which jobs need copying: compare source and target digests with HEAD
//! requests only, so an unchanged image costs two requests and moves
//! nothing. A dry run also counts the blob bytes missing at the target.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::stream::{self, StreamExt};
use registry_client::{Digest, ErrorKind};

use super::{Job, State};
use crate::graph::{self, StoreReader};
use crate::store::{ImageRef, StoreError};
use crate::transfer::request_budget;

/// Compare every pending job's source and target digests, the request
/// budget of `jobs` at a time: two HEAD requests each (a GET for the source when a platform
/// filter decides what the target holds). With `estimate`, also count the
/// blob bytes missing at the target for what would be copied.
pub async fn compare(items: &mut [Job], jobs: usize, estimate: bool) {
    // First one image per registry not seen before, then the rest: on a
    // token registry the first request meets the 401 challenge; once it is
    // known the others ask for their tokens up front (or find one cached)
    // instead of each meeting the challenge too.
    let mut seen = HashSet::new();
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..items.len())
        .filter(|i| matches!(items[*i].state, State::Pending))
        .partition(|i| {
            let it = &items[*i];
            let source = it.source.as_ref().map(|s| s.blob_domain());
            let target = it.target.as_ref().map(|t| t.blob_domain());
            // Both inserts run: `|` does not short-circuit.
            seen.insert((0, source)) | seen.insert((1, target))
        });
    for batch in [first, rest] {
        let shared: &[Job] = items;
        let results: Vec<(usize, State)> = stream::iter(batch)
            .map(|i| async move { (i, compare_one(&shared[i]).await) })
            .buffer_unordered(request_budget(jobs))
            .collect()
            .await;
        for (i, s) in results {
            items[i].state = s;
        }
    }
    if estimate {
        let counted: Mutex<HashSet<(String, Digest)>> = Mutex::default();
        let results: Vec<(usize, Result<u64, StoreError>)> = stream::iter(items.iter().enumerate())
            .filter(|(_, it)| futures::future::ready(matches!(it.state, State::Copy { .. })))
            .map(|(i, it)| {
                let counted = &counted;
                async move { (i, missing_bytes(it, counted, jobs).await) }
            })
            .buffer_unordered(request_budget(jobs))
            .collect()
            .await;
        for (i, r) in results {
            match r {
                Ok(n) => {
                    if let State::Copy { bytes_missing, .. } = &mut items[i].state {
                        *bytes_missing = Some(n);
                    }
                }
                Err(e) => {
                    items[i].state = State::Failed {
                        error: format!("reading {} to count its blobs: {e}", items[i].source_label),
                        kind: e.kind(),
                    }
                }
            }
        }
    }
}

async fn compare_one(it: &Job) -> State {
    let Some(source) = &it.source else {
        unreachable!("only planned jobs are compared")
    };
    let fail = |what: String, e: StoreError| State::Failed {
        error: format!("{what}: {e}"),
        kind: e.kind(),
    };
    // A target tag does not depend on the source's answer: both HEADs go
    // at once, one round trip instead of two. A target by digest waits
    // for the digest.
    let source_side = async {
        if it.selection.platforms.is_empty() {
            match source.resolve_digest(&it.source_ref).await {
                Ok(Some(d)) => Ok((d.clone(), d)),
                Ok(None) => Err(State::Failed {
                    error: format!("{} not found at the source", it.source_label),
                    kind: ErrorKind::NotFound,
                }),
                Err(e) => Err(fail(format!("reading {}", it.source_label), e)),
            }
        } else {
            // The digest the engine gives the root under this selection; a
            // filter that keeps nothing fails when the image is copied.
            match source.resolve(&it.source_ref).await {
                Ok(m) => {
                    let expected = graph::select_root(&m, &it.selection)
                        .map(|(root, _, _)| root.digest)
                        .unwrap_or_else(|_| m.digest.clone());
                    Ok((m.digest, expected))
                }
                Err(e) => Err(fail(format!("reading {}", it.source_label), e)),
            }
        }
    };
    let target_tag = async {
        match (&it.target, &it.target_tag) {
            (Some(t), Some(tag)) => Some(t.current(&ImageRef::Tag(tag.clone())).await),
            _ => None,
        }
    };
    let (source_side, target_tag) = tokio::join!(source_side, target_tag);
    let (source_digest, expected) = match source_side {
        Ok(digests) => digests,
        Err(failed) => return failed,
    };
    let target_before = match (target_tag, &it.target) {
        (Some(answer), _) => answer,
        (None, Some(t)) => t.current(&ImageRef::Digest(expected.clone())).await,
        (None, None) => Ok(None),
    };
    let target_before = match target_before {
        Ok(d) => d,
        Err(e) => return fail(format!("reading {}", it.target_label), e),
    };
    if target_before.as_ref() == Some(&expected) {
        match new_referrers(it, &source_digest, &expected).await {
            Ok(false) => State::Current { digest: expected },
            // The image is there, a referrer of it is not: copy again (its
            // blobs are found present; the referrer moves).
            Ok(true) => State::Copy {
                source_digest,
                target_before,
                bytes_missing: None,
            },
            Err(e) => fail(format!("listing the referrers of {}", it.source_label), e),
        }
    } else {
        State::Copy {
            source_digest,
            target_before,
            bytes_missing: None,
        }
    }
}

/// With referrers asked for, whether the source's image has a referrer its
/// target lacks: one listing at each side, of the image itself (a new
/// signature of an unchanged image). A filtered root is a new index that
/// nothing refers to; a target that cannot tell is taken at its digest.
async fn new_referrers(
    it: &Job,
    source_digest: &Digest,
    expected: &Digest,
) -> Result<bool, StoreError> {
    let (Some(types), Some(source), Some(target)) =
        (&it.selection.referrers, &it.source, &it.target)
    else {
        return Ok(false);
    };
    if source_digest != expected {
        return Ok(false);
    }
    let Some(held) = target.held_referrers(expected, types).await? else {
        return Ok(false);
    };
    let held: HashSet<Digest> = held.into_iter().map(|d| d.digest).collect();
    let at_source = source.referrers(source_digest, types).await?;
    Ok(at_source.iter().any(|d| !held.contains(&d.digest)))
}

/// Blob bytes of an image the target lacks, each blob counted once per
/// target blob domain in the whole plan.
pub async fn missing_bytes(
    it: &Job,
    counted: &Mutex<HashSet<(String, Digest)>>,
    jobs: usize,
) -> Result<u64, StoreError> {
    let (State::Copy { source_digest, .. }, Some(source)) = (&it.state, &it.source) else {
        return Ok(0);
    };
    let root = source.manifest(source_digest).await?;
    let reader = StoreReader(source.as_ref());
    let walked = graph::walk(
        &reader,
        root,
        &it.selection,
        &crate::limits::get().graph,
        jobs,
    )
    .await
    .map_err(|e| StoreError::invalid(it.source_label.clone(), e.to_string()))?;
    let domain = it
        .target
        .as_ref()
        .map(|t| t.blob_domain())
        .unwrap_or_default();
    let mut missing: u64 = 0;
    for b in walked.blobs {
        let present = match &it.target {
            Some(t) => t.blob_size(&b.digest).await?.is_some(),
            None => false,
        };
        if !present
            && counted
                .lock()
                // A set of digests stays whole if a holder panicked.
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((domain.clone(), b.digest.clone()))
        {
            missing = missing.saturating_add(b.size);
        }
    }
    Ok(missing)
}
