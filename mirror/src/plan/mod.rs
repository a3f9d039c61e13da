//! The one planner: what the user asked for (pairs of locations, a sync
//! config, a bundle, the AzureML preset) becomes [`Job`]s over stores
//! opened by the one factory ([`Stores`]). Each job carries its own
//! options (platforms, foreign layers, target tag); [`compare`] finds the
//! ones already current with two HEADs each; [`execute`] runs the rest
//! through one engine, with one ledger and one concurrency budget.

mod compare;
mod execute;
mod stores;

use std::sync::Arc;

use registry_client::{Digest, ErrorKind};

use crate::endpoint::Endpoint;
use crate::graph::Selection;
use crate::store::{ImageRef, ImageSource, ImageTarget, StoreError};

pub use compare::{compare, missing_bytes};
pub use execute::execute;
pub use stores::{FileSource, FileTarget, Stores, UploadOverride};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{pair}: {reason}")]
    Pair { pair: String, reason: String },
    #[error("{pair}: {source}")]
    Store {
        pair: String,
        #[source]
        source: StoreError,
    },
}

/// One image of a plan: where it comes from, where it goes, what of it to
/// take, and (once compared) whether it needs copying.
#[derive(Debug, Clone)]
pub struct Job {
    /// `None` only for an image that failed while planning.
    pub source: Option<Arc<dyn ImageSource>>,
    pub source_ref: ImageRef,
    pub source_label: String,
    /// `None`: a target that does not exist yet (a dry run creates nothing).
    pub target: Option<Arc<dyn ImageTarget>>,
    /// The tag (a layout's full name) to set last; `None` pushes by digest.
    pub target_tag: Option<String>,
    /// The digest the destination names (`HOST/REPO@DIGEST`): the copy
    /// writes nothing unless the image it would write has this digest.
    pub target_digest: Option<Digest>,
    pub target_label: String,
    pub selection: Selection,
    pub state: State,
}

#[derive(Debug, Clone)]
pub enum State {
    /// Not compared yet (or not to be: `--force`, a new bundle).
    Pending,
    /// The target already has what the source has.
    Current {
        digest: Digest,
    },
    /// The target lacks it or has something else.
    Copy {
        source_digest: Digest,
        /// What the target tag pointed at before, if anything.
        target_before: Option<Digest>,
        /// Blob bytes missing at the target (dry runs only).
        bytes_missing: Option<u64>,
    },
    Failed {
        error: String,
        kind: ErrorKind,
    },
}

impl Job {
    /// A failure found while planning (listing, naming), kept for the report.
    pub fn failed(
        source_label: String,
        target_label: String,
        error: String,
        kind: ErrorKind,
    ) -> Job {
        Job {
            source: None,
            source_ref: ImageRef::Only,
            source_label,
            target: None,
            target_tag: None,
            target_digest: None,
            target_label,
            selection: Selection::default(),
            state: State::Failed { error, kind },
        }
    }
}

impl Stores {
    /// The job for one `source → target` pair of locations: which manifest
    /// to read, where to put it, and the tag (or layout name) it gets —
    /// the target's, else one derived from the source.
    pub fn job(
        &self,
        source: &Endpoint,
        target: &Endpoint,
        selection: Selection,
    ) -> Result<Job, PlanError> {
        let pair = format!("{source} → {target}");
        let store_err = |source| PlanError::Store {
            pair: pair.clone(),
            source,
        };
        let (source_store, source_ref) = self.source(source).map_err(store_err)?;
        let (target_store, target_tag, target_digest): (
            Arc<dyn ImageTarget>,
            Option<String>,
            Option<Digest>,
        ) = match target {
            Endpoint::Registry {
                repository,
                tag,
                digest,
            } => {
                let source_digest = match source {
                    Endpoint::Registry { digest, .. } => digest.as_ref(),
                    Endpoint::File { .. } => None,
                };
                if let (Some(want), Some(have)) = (digest, source_digest) {
                    // Only a platform filter can make a copy's digest
                    // differ from its source's; that is checked once the
                    // image is read.
                    if want != have && selection.platforms.is_empty() {
                        return Err(PlanError::Pair {
                            pair,
                            reason: format!(
                                "the destination digest {want} is not the source's ({have}); a copy keeps the digest, so name the source's or none"
                            ),
                        });
                    }
                }
                // A destination by digest gets no tag it did not name, as
                // skopeo and crane push it.
                let tag = match digest {
                    Some(_) => tag.clone(),
                    None => tag.clone().or_else(|| source.portable_tag()),
                };
                if tag.is_none() && source_digest.is_none() && digest.is_none() {
                    return Err(PlanError::Pair {
                        pair,
                        reason: "the destination needs a tag: the source names none (give one as HOST/REPO:TAG)".into(),
                    });
                }
                (self.registry(repository), tag, digest.clone())
            }
            Endpoint::File { kind, path, name } => {
                let kind = *kind;
                let name = name.clone().or_else(|| source.layout_name()).ok_or_else(|| PlanError::Pair {
                    pair: pair.clone(),
                    reason: format!(
                        "name the image in the {} ({}:PATH:NAME); the source has no tag to name it by",
                        kind.noun(),
                        kind.scheme()
                    ),
                })?;
                let opened = self
                    .file_target(kind, path)
                    .map_err(store_err)?
                    .ok_or_else(|| PlanError::Pair {
                        pair: pair.clone(),
                        reason: "the target does not exist".into(),
                    })?;
                if let Some(reference) = source.full_reference() {
                    opened.record_reference(&name, &reference);
                }
                (opened.store(), Some(name), None)
            }
        };
        Ok(Job {
            source: Some(source_store),
            source_ref,
            source_label: source.to_string(),
            target: Some(target_store),
            target_tag,
            target_digest,
            target_label: target.to_string(),
            selection,
            state: State::Pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use registry_client::Client;

    fn planner() -> Stores {
        Stores::new(Client::new(registry_client::ClientConfig::default()).unwrap())
    }

    #[test]
    fn pairs_into_one_archive_share_a_writer_and_reading_it_too_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("b.tar");
        let target = Endpoint::parse(&format!("oci-archive:{}", bundle.display())).unwrap();
        let p = planner();
        let a = p
            .job(
                &Endpoint::parse("reg.example/a/b:v1").unwrap(),
                &target,
                Selection::default(),
            )
            .unwrap();
        let b = p
            .job(
                &Endpoint::parse("reg.example/c:v2").unwrap(),
                &target,
                Selection::default(),
            )
            .unwrap();
        assert!(Arc::ptr_eq(
            a.target.as_ref().unwrap(),
            b.target.as_ref().unwrap()
        ));
        assert_eq!(a.target_tag.as_deref(), Some("a/b:v1"));
        assert_eq!(
            a.target.as_ref().unwrap().describe(),
            format!("oci-archive:{}", bundle.display())
        );
        // A source by digest has no tag to name it by.
        let d = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let err = p
            .job(
                &Endpoint::parse(&format!("reg.example/a@{d}")).unwrap(),
                &target,
                Selection::default(),
            )
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("oci-archive:PATH:NAME"), "{err}");
        // The archive being written cannot be a source in the same run.
        let src = Endpoint::parse(&format!("oci-archive:{}:a/b:v1", bundle.display())).unwrap();
        let err = p
            .job(
                &src,
                &Endpoint::parse("reg.example/x:v1").unwrap(),
                Selection::default(),
            )
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("read and written"), "{err}");
        // Nothing is under the final name while planning.
        assert!(!bundle.exists());
    }

    #[test]
    fn a_missing_archive_source_is_named() {
        let p = planner();
        let err = p
            .job(
                &Endpoint::parse("oci-archive:/nonexistent/b.tar").unwrap(),
                &Endpoint::parse("reg.example/x:v1").unwrap(),
                Selection::default(),
            )
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/b.tar"), "{err}");
    }
}
