//! Offline checks of a bundle (an archive or a layout directory): every
//! manifest and blob read back against its digest and size, every
//! reference resolved (children of indexes, configs, layers), and a
//! summary of what it holds. Blobs a delta bundle leaves out on purpose
//! are listed as left out, not as missing. The referrers a bundle keeps
//! (signatures, SBOMs, attestations) are walked with their image, checked
//! like it, and listed under it.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use registry_client::{Descriptor, Digest};
use serde::Serialize;

use crate::graph::{self, ImageGraph, Selection, StoreReader};
use crate::store::archive::IMAGE_NAME;
use crate::store::{ImageSource, StoreError};

/// What a bundle holds and what is wrong with it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleReport {
    pub bundle: String,
    pub images: Vec<ImageSummary>,
    /// Blobs (configs and layers) checked, and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Manifests (and indexes) checked.
    pub manifests: usize,
    /// Referrers among them (each once, however many images reach it).
    pub referrers: usize,
    /// Blobs a delta bundle leaves out: the target must already hold them.
    pub omitted: Vec<OmittedBlob>,
    /// Each problem names the entry and the image it belongs to.
    pub problems: Vec<String>,
}

impl BundleReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// `org.opencontainers.image.ref.name`.
    pub name: String,
    /// The original full reference, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    /// `os/arch[/variant]` of each child of an index; empty for one image.
    pub platforms: Vec<String>,
    /// Bytes of its manifests and blobs (each once), left-out blobs and
    /// its referrers included.
    pub size: u64,
    /// What refers to it (or to a manifest of it, or to a referrer of it),
    /// as the walk found them: each after its subject.
    pub referrers: Vec<ReferrerSummary>,
}

/// A referrer kept in the bundle: a manifest with a subject.
#[derive(Debug, Clone, Serialize)]
pub struct ReferrerSummary {
    pub digest: Digest,
    /// Its `artifactType`, else its config's media type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub media_type: String,
    /// The manifest it refers to: the image, one of its manifests, or
    /// another referrer (the signature of an SBOM).
    pub subject: Digest,
    /// Bytes of its manifest and what it names.
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OmittedBlob {
    pub digest: Digest,
    pub size: u64,
}

/// Read the image under `root` from `store` through the one graph walk:
/// every manifest checked against its descriptor's digest and size, the
/// blobs it references collected (foreign layers apart: they live
/// elsewhere by design, so copy, export and verify all leave them), and
/// every referrer the store keeps of it with theirs: import takes them
/// all, so the delta check and the `.blobs` list count them too.
pub async fn image_graph(store: &dyn ImageSource, root: &Descriptor) -> Result<ImageGraph, String> {
    let manifest = store
        .manifest(&root.digest)
        .await
        .map_err(|e| format!("manifest {}: {e}", root.digest))?;
    if manifest.bytes.len() as u64 != root.size {
        return Err(format!(
            "manifest {} has {} bytes, its descriptor says {}",
            root.digest,
            manifest.bytes.len(),
            root.size
        ));
    }
    let every_referrer = Selection {
        referrers: Some(Vec::new()),
        ..Selection::default()
    };
    graph::walk(
        &StoreReader(store),
        manifest,
        &every_referrer,
        &crate::limits::get().graph,
        1,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Check every named image of a bundle. `omitted`: the blobs the bundle
/// says it leaves out.
pub async fn verify(
    store: &dyn ImageSource,
    names: &[(String, Descriptor)],
    omitted: &BTreeSet<Digest>,
) -> BundleReport {
    let mut report = BundleReport {
        bundle: store.describe(),
        ..BundleReport::default()
    };
    if names.is_empty() {
        report
            .problems
            .push("index.json names no image: the bundle holds nothing to import".into());
    }
    // Each blob is read once however many images share it.
    let mut checked: HashMap<Digest, Result<(), String>> = HashMap::new();
    let mut manifests_seen = BTreeSet::new();
    let mut referrers_seen = BTreeSet::new();
    let mut omitted_seen: BTreeSet<(Digest, u64)> = BTreeSet::new();
    for (name, desc) in names {
        let graph = match image_graph(store, desc).await {
            Ok(g) => g,
            Err(e) => {
                report.problems.push(format!("image {name:?}: {e}"));
                continue;
            }
        };
        // Sizes a bundle claims: summed without wrapping.
        let mut size: u64 = graph
            .foreign
            .iter()
            .fold(0, |sum, f| sum.saturating_add(f.size));
        for m in &graph.manifests {
            size = size.saturating_add(m.bytes.len() as u64);
            manifests_seen.insert(m.digest.clone());
        }
        for b in &graph.blobs {
            size = size.saturating_add(b.size);
            if omitted.contains(&b.digest) {
                omitted_seen.insert((b.digest.clone(), b.size));
                continue;
            }
            let result = match checked.get(&b.digest) {
                Some(r) => r.clone(),
                None => {
                    let r = check_blob(store, b).await;
                    if r.is_ok() {
                        report.blobs += 1;
                        report.blob_bytes = report.blob_bytes.saturating_add(b.size);
                    }
                    checked.insert(b.digest.clone(), r.clone());
                    r
                }
            };
            if let Err(e) = result {
                report.problems.push(format!("image {name:?}: {e}"));
            }
        }
        let referrers = referrers_in(&graph);
        referrers_seen.extend(referrers.iter().map(|r| r.digest.clone()));
        report.images.push(ImageSummary {
            name: name.clone(),
            reference: desc.annotations.get(IMAGE_NAME).cloned(),
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            platforms: graph.platforms,
            size,
            referrers,
        });
    }
    report.manifests = manifests_seen.len();
    report.referrers = referrers_seen.len();
    report.omitted = omitted_seen
        .into_iter()
        .map(|(digest, size)| OmittedBlob { digest, size })
        .collect();
    report
}

/// The referrers of a walked image: its manifests with a subject, in the
/// walk's order (each after its subject).
fn referrers_in(graph: &ImageGraph) -> Vec<ReferrerSummary> {
    graph
        .manifests
        .iter()
        .filter_map(|m| {
            let content = m.content().ok()?;
            let subject = content.subject?.digest;
            let named: u64 = if m.is_index() {
                0
            } else {
                content
                    .config
                    .iter()
                    .chain(&content.layers)
                    .fold(0, |n: u64, d| n.saturating_add(d.size))
            };
            Some(ReferrerSummary {
                digest: m.digest.clone(),
                artifact_type: m.referrer_descriptor().ok()?.artifact_type,
                media_type: m.media_type.clone(),
                subject,
                size: (m.bytes.len() as u64).saturating_add(named),
            })
        })
        .collect()
}

/// Read a blob whole; the store's stream checks size and digest.
async fn check_blob(store: &dyn ImageSource, desc: &Descriptor) -> Result<(), String> {
    let what = || format!("blob {} ({} bytes)", desc.digest, desc.size);
    let mut stream = store.read_blob(desc).await.map_err(|e| match e {
        StoreError::NotFound(_) => format!("{} is missing from the bundle", what()),
        e => format!("{}: {e}", what()),
    })?;
    while let Some(chunk) = stream.next().await {
        chunk.map_err(|e| format!("{}: {e}", what()))?;
    }
    Ok(())
}
