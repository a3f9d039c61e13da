//! The image graph: which manifests and blobs an image is made of.
//!
//! One iterative walk, used by copy, sync planning, export, import, verify
//! and delta bundles. A manifest's successors are its edges: an index's
//! child manifests, a manifest's config and layers. Its referrers
//! (signatures, SBOMs, attestations: manifests whose `subject` it is) are
//! the one edge pointing the other way: listed by the store, not read from
//! the manifest, and walked after it, so a referrer is written once its
//! subject is there.
//!
//! The walk reads each manifest once, checks it against the size its
//! parent's descriptor gives, applies a [`Selection`] (platforms of the
//! root index, foreign layers) and stops at explicit [`Bounds`], so a
//! hostile store cannot make it recurse without end or hold without limit.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use registry_client::{Descriptor, Digest, Manifest};

use crate::platform::PlatformFilter;
use crate::store::StoreError;

/// What of an image to take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Keep only these platforms of a root index (empty: all). Dropping
    /// children writes a new index, so its digest changes.
    pub platforms: Vec<PlatformFilter>,
    /// Take non-distributable (foreign) layers too.
    pub include_foreign: bool,
    /// Take the referrers of every manifest taken, recursively (a signature
    /// of an SBOM): `None` none; `Some(types)` those of these artifact
    /// types, all when empty.
    pub referrers: Option<Vec<String>>,
    /// Take cosign's legacy tags of every manifest taken too: the
    /// signature, attestation and SBOM cosign tags `sha256-<hex>.sig`,
    /// `.att` and `.sbom` when the registry has no referrers API.
    pub cosign_tags: bool,
    /// A single-platform image the platform filter does not name: copied
    /// with a warning, or failed.
    pub no_match: crate::no_match::NoMatch,
}

/// How large an image may be before the walk refuses it (the limits
/// `index-depth`, `image-manifests` and `image-blobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Indexes within indexes (the root is depth 0).
    pub depth: usize,
    /// Manifests (and indexes) in one image.
    pub manifests: usize,
    /// Configs and layers in one image.
    pub blobs: usize,
    /// Bytes one config or layer may claim (a descriptor of `u64::MAX`
    /// bytes would stream until the disk is full).
    pub blob_bytes: u64,
}

impl Default for Bounds {
    /// Real images nest one index deep and hold tens of blobs; these leave
    /// ample room and still end a hostile graph quickly.
    fn default() -> Self {
        Bounds {
            depth: 8,
            manifests: 10_000,
            blobs: 100_000,
            // The largest layers seen in the wild are tens of GiB.
            blob_bytes: 1 << 40,
        }
    }
}

/// Why a manifest points at a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// A child manifest of an index.
    Child,
    /// A manifest's config blob.
    Config,
    /// A manifest's layer blob.
    Layer,
}

impl Edge {
    /// Whether the descriptor names a manifest (walked) or a blob (moved).
    pub fn is_manifest(self) -> bool {
        matches!(self, Edge::Child)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("reading manifest {digest}: {source}")]
    Read {
        digest: Digest,
        #[source]
        source: StoreError,
    },
    #[error("manifest {digest} has {actual} bytes, its descriptor says {expected}")]
    Size {
        digest: Digest,
        actual: u64,
        expected: u64,
    },
    #[error(
        "the image has more than {limit} {what}; refused (a hostile or broken graph; {})",
        registry_client::limits::reached(name, limit)
    )]
    Bound {
        what: &'static str,
        limit: usize,
        /// The bound's name in [`crate::limits`].
        name: &'static str,
    },
    #[error(
        "blob {digest} claims {size} bytes, more than {limit}; refused ({})",
        crate::limits::named("blob-bytes", limit)
    )]
    BlobTooLarge {
        digest: Digest,
        size: u64,
        limit: String,
    },
    #[error("a manifest for platform {wanted} not found")]
    NoPlatform { wanted: String },
    #[error("listing the referrers of {subject}: {source}")]
    Referrers {
        subject: Digest,
        #[source]
        source: StoreError,
    },
}

impl GraphError {
    pub fn kind(&self) -> registry_client::ErrorKind {
        use registry_client::ErrorKind;
        match self {
            GraphError::Read { source, .. } | GraphError::Referrers { source, .. } => source.kind(),
            GraphError::Size { .. } => ErrorKind::Integrity,
            GraphError::Bound { .. } | GraphError::BlobTooLarge { .. } => ErrorKind::Protocol,
            GraphError::NoPlatform { .. } => ErrorKind::NotFound,
        }
    }
}

/// Reads manifests by digest for the walk (a store, or the engine's
/// wrapper that takes a concurrency permit first).
#[async_trait::async_trait]
pub trait ManifestReader: Send + Sync {
    async fn read_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError>;

    /// The manifests whose subject is `subject`, of these artifact types
    /// (all when empty).
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError>;

    /// The manifest a tag of the image's repository names, `None` when the
    /// tag is absent (cosign's legacy tags).
    async fn tagged(&self, tag: &str) -> Result<Option<Manifest>, StoreError>;
}

/// The tags cosign gives what it attaches to `digest` when a registry has
/// no referrers API: `sha256-<hex>.sig`, `.att`, `.sbom`.
pub fn cosign_tags(digest: &Digest) -> [String; 3] {
    let base = format!("{}-{}", digest.algorithm().name(), digest.hex());
    ["sig", "att", "sbom"].map(|suffix| format!("{base}.{suffix}"))
}

/// [`ManifestReader::tagged`] over a store: absent is `None`.
pub async fn tagged_in(
    source: &dyn crate::store::ImageSource,
    tag: &str,
) -> Result<Option<Manifest>, StoreError> {
    match source
        .resolve(&crate::store::ImageRef::Tag(tag.to_string()))
        .await
    {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == registry_client::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The descriptors a manifest points at, with why. Malformed JSON is an
/// error naming the manifest.
pub fn successors(manifest: &Manifest) -> Result<Vec<(Edge, Descriptor)>, StoreError> {
    let content = manifest
        .content()
        .map_err(|e| StoreError::invalid(format!("manifest {}", manifest.digest), e.to_string()))?;
    let mut out = Vec::new();
    if manifest.is_index() {
        out.extend(content.manifests.into_iter().map(|d| (Edge::Child, d)));
    } else {
        out.extend(content.config.into_iter().map(|d| (Edge::Config, d)));
        out.extend(content.layers.into_iter().map(|d| (Edge::Layer, d)));
    }
    Ok(out)
}

/// Everything under one image, as the walk found it.
#[derive(Debug, Clone)]
pub struct ImageGraph {
    /// The manifest the target gets in the root's place: the root itself,
    /// or a new index when the platform filter dropped children.
    pub root: Manifest,
    /// Every manifest to write, children before parents, `root` last.
    pub manifests: Vec<Manifest>,
    /// Configs and layers to move, each once, in the order found.
    pub blobs: Vec<Descriptor>,
    /// Foreign layers left where they are (not selected).
    pub foreign: Vec<Descriptor>,
    /// `os/arch[/variant]` of each child a root index keeps.
    pub platforms: Vec<String>,
    /// Why `root` differs from the source's root, if it does.
    pub digest_changed: Option<String>,
    /// How many of `manifests` are referrers (and their children).
    pub referrers: usize,
    /// cosign's legacy tags found (`sha256-<hex>.sig`, `.att`, `.sbom`)
    /// and what each names, to set at the target once all is written.
    pub cosign_tags: Vec<(String, Manifest)>,
}

impl ImageGraph {
    /// Bytes of the blobs to move.
    pub fn blob_bytes(&self) -> u64 {
        // Sizes come from outside: a descriptor may say u64::MAX.
        self.blobs.iter().fold(0, |n, b| n.saturating_add(b.size))
    }
}

/// What a root becomes under a selection: itself, or (an index whose
/// platform filter dropped children) a new index and the reason. Also the
/// children it keeps. Sync planning uses it to know the digest a target
/// will hold without walking the rest.
pub fn select_root(
    root: &Manifest,
    selection: &Selection,
) -> Result<(Manifest, Option<String>, Vec<Descriptor>), GraphError> {
    let children: Vec<Descriptor> = successors(root)
        .map_err(|source| GraphError::Read {
            digest: root.digest.clone(),
            source,
        })?
        .into_iter()
        .filter(|(e, _)| e.is_manifest())
        .map(|(_, d)| d)
        .collect();
    let filters = &selection.platforms;
    if !root.is_index() || filters.is_empty() {
        return Ok((root.clone(), None, children));
    }
    let all = children.len();
    let kept: Vec<Descriptor> = children
        .into_iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| filters.iter().any(|f| f.matches(p)))
        })
        .collect();
    let wanted = || {
        filters
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if kept.is_empty() {
        return Err(GraphError::NoPlatform { wanted: wanted() });
    }
    if kept.len() == all {
        return Ok((root.clone(), None, kept));
    }
    let filtered = filtered_index(root, &kept).map_err(|source| GraphError::Read {
        digest: root.digest.clone(),
        source,
    })?;
    let why = format!(
        "the platform filter ({}) kept {} of {all} manifests, so a new index was written",
        wanted(),
        kept.len()
    );
    Ok((filtered, Some(why), kept))
}

/// Walk the image under `root`: read every manifest once (up to `jobs`
/// children of an index at a time), check each against its descriptor's
/// size, and collect what the selection takes, within `bounds`.
pub async fn walk(
    reader: &dyn ManifestReader,
    root: Manifest,
    selection: &Selection,
    bounds: &Bounds,
    jobs: usize,
) -> Result<ImageGraph, GraphError> {
    let (new_root, digest_changed, kept) = select_root(&root, selection)?;
    let platforms = if root.is_index() {
        kept.iter()
            .filter_map(|d| d.platform.as_ref())
            .map(crate::platform::describe)
            .collect()
    } else {
        Vec::new()
    };
    let mut graph = ImageGraph {
        root: new_root.clone(),
        manifests: Vec::new(),
        blobs: Vec::new(),
        foreign: Vec::new(),
        platforms,
        digest_changed,
        referrers: 0,
        cosign_tags: Vec::new(),
    };
    let mut seen_blobs: HashSet<Digest> = HashSet::new();
    // Manifests read but not yet entered, and those entered: a child is
    // read once, and entered (its own children emitted before it) once,
    // wherever in the graph it is listed first.
    let mut fetched: HashMap<Digest, Manifest> = HashMap::new();
    let mut entered: HashSet<Digest> = HashSet::from([root.digest.clone()]);
    let mut read = 0usize;

    // Depth-first, children before parents, without recursion: each frame
    // is a manifest and the children still to visit.
    let mut stack = vec![open(
        new_root,
        kept,
        0,
        selection,
        bounds,
        &mut graph,
        &mut seen_blobs,
    )?];
    while let Some(top) = stack.last_mut() {
        let depth = top.depth + 1;
        let among_referrers = top.manifest.is_none() || top.referrer;
        let Some(child) = top.pending.next() else {
            // Every child is written: the manifest itself comes next, then
            // what refers to it.
            let Some(done) = stack.pop() else { continue };
            let Some(manifest) = done.manifest else {
                continue;
            };
            let subject = manifest.digest.clone();
            graph.manifests.push(manifest);
            // A filtered root is a new index: nothing refers to it.
            if done.depth == 0 && graph.digest_changed.is_some() {
                continue;
            }
            let mut found: Vec<Descriptor> = Vec::new();
            if let Some(types) = &selection.referrers {
                found = reader.referrers(&subject, types).await.map_err(|source| {
                    GraphError::Referrers {
                        subject: subject.clone(),
                        source,
                    }
                })?;
            }
            if selection.cosign_tags {
                for tag in cosign_tags(&subject) {
                    let tagged =
                        reader
                            .tagged(&tag)
                            .await
                            .map_err(|source| GraphError::Referrers {
                                subject: subject.clone(),
                                source,
                            })?;
                    if let Some(m) = tagged {
                        found.push(Descriptor::new(
                            m.media_type.clone(),
                            m.digest.clone(),
                            m.bytes.len() as u64,
                        ));
                        graph.cosign_tags.push((tag, m.clone()));
                        fetched.entry(m.digest.clone()).or_insert(m);
                    }
                }
            }
            found.retain(|d| !entered.contains(&d.digest));
            if !found.is_empty() {
                if done.depth + 1 >= bounds.depth {
                    return Err(GraphError::Bound {
                        what: "levels of nested indexes and referrers",
                        limit: bounds.depth,
                        name: "index-depth",
                    });
                }
                stack.push(Frame {
                    manifest: None,
                    pending: found.into_iter(),
                    depth: done.depth,
                    referrer: true,
                });
            }
            continue;
        };
        if !entered.insert(child.digest.clone()) {
            continue;
        }
        if among_referrers {
            graph.referrers += 1;
        }
        if !fetched.contains_key(&child.digest) {
            // Read this child and its unread siblings at once.
            let mut batch = vec![child.clone()];
            batch.extend(
                top.pending
                    .as_slice()
                    .iter()
                    .filter(|d| !entered.contains(&d.digest) && !fetched.contains_key(&d.digest))
                    .cloned(),
            );
            batch.dedup_by(|a, b| a.digest == b.digest);
            read += batch.len();
            if read + 1 > bounds.manifests {
                return Err(GraphError::Bound {
                    what: "manifests",
                    limit: bounds.manifests,
                    name: "image-manifests",
                });
            }
            for m in read_all(reader, batch, jobs).await? {
                fetched.insert(m.digest.clone(), m);
            }
        }
        // Read above, under the digest asked for (`read_all` checks it).
        let manifest = fetched
            .remove(&child.digest)
            .ok_or_else(|| GraphError::Read {
                digest: child.digest.clone(),
                source: StoreError::NotFound(format!("manifest {}", child.digest)),
            })?;
        let children = if manifest.is_index() {
            if depth >= bounds.depth {
                return Err(GraphError::Bound {
                    what: "levels of nested indexes",
                    limit: bounds.depth,
                    name: "index-depth",
                });
            }
            successors(&manifest)
                .map_err(|source| GraphError::Read {
                    digest: manifest.digest.clone(),
                    source,
                })?
                .into_iter()
                .map(|(_, d)| d)
                .collect()
        } else {
            Vec::new()
        };
        let mut frame = open(
            manifest,
            children,
            depth,
            selection,
            bounds,
            &mut graph,
            &mut seen_blobs,
        )?;
        frame.referrer = among_referrers;
        stack.push(frame);
    }
    Ok(graph)
}

/// A frame for `manifest`: an image's blobs are collected as it is entered;
/// an index's children are visited next.
fn open(
    manifest: Manifest,
    children: Vec<Descriptor>,
    depth: usize,
    selection: &Selection,
    bounds: &Bounds,
    graph: &mut ImageGraph,
    seen_blobs: &mut HashSet<Digest>,
) -> Result<Frame, GraphError> {
    if !manifest.is_index() {
        let edges = successors(&manifest).map_err(|source| GraphError::Read {
            digest: manifest.digest.clone(),
            source,
        })?;
        for (_, d) in edges {
            if d.is_foreign() && !selection.include_foreign {
                graph.foreign.push(d);
            } else if seen_blobs.insert(d.digest.clone()) {
                if d.size > bounds.blob_bytes {
                    return Err(GraphError::BlobTooLarge {
                        digest: d.digest,
                        size: d.size,
                        limit: crate::limits::size(bounds.blob_bytes),
                    });
                }
                if seen_blobs.len() > bounds.blobs {
                    return Err(GraphError::Bound {
                        what: "blobs",
                        limit: bounds.blobs,
                        name: "image-blobs",
                    });
                }
                graph.blobs.push(d);
            }
        }
    }
    Ok(Frame {
        manifest: Some(manifest),
        pending: children.into_iter(),
        depth,
        referrer: false,
    })
}

/// A manifest of the walk and the children still to visit; or (no
/// manifest) the referrers of one just written, still to visit.
struct Frame {
    manifest: Option<Manifest>,
    pending: std::vec::IntoIter<Descriptor>,
    depth: usize,
    /// Whether this is a referrer, or within one (its children).
    referrer: bool,
}

/// Read `descs` concurrently, each checked against its descriptor's size.
async fn read_all(
    reader: &dyn ManifestReader,
    descs: Vec<Descriptor>,
    jobs: usize,
) -> Result<Vec<Manifest>, GraphError> {
    stream::iter(descs)
        .map(|d: Descriptor| async move {
            let m = reader
                .read_manifest(&d.digest)
                .await
                .map_err(|source| GraphError::Read {
                    digest: d.digest.clone(),
                    source,
                })?;
            // A store must answer with what was asked for; the walk keys
            // what it read by that digest.
            if m.digest != d.digest {
                return Err(GraphError::Read {
                    digest: d.digest.clone(),
                    source: StoreError::invalid(
                        format!("manifest {}", d.digest),
                        format!("the store answered with {}", m.digest),
                    ),
                });
            }
            if m.bytes.len() as u64 != d.size {
                return Err(GraphError::Size {
                    digest: d.digest.clone(),
                    actual: m.bytes.len() as u64,
                    expected: d.size,
                });
            }
            Ok(m)
        })
        .buffered(jobs.max(1))
        .try_collect()
        .await
}

/// The same index with only `children` in `manifests`; every other field as
/// it was. Its bytes (and so its digest) necessarily differ.
pub fn filtered_index(index: &Manifest, children: &[Descriptor]) -> Result<Manifest, StoreError> {
    let mut value: serde_json::Value = serde_json::from_slice(&index.bytes)
        .map_err(|e| StoreError::invalid(format!("index {}", index.digest), e.to_string()))?;
    let keep: HashSet<&Digest> = children.iter().map(|c| &c.digest).collect();
    if let Some(list) = value.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|d| {
            d.get("digest")
                .and_then(|x| x.as_str())
                .and_then(|s| Digest::parse(s).ok())
                .is_some_and(|dg| keep.contains(&dg))
        });
    }
    let bytes = Bytes::from(
        serde_json::to_vec_pretty(&value)
            .map_err(|e| StoreError::invalid(format!("index {}", index.digest), e.to_string()))?,
    );
    Ok(Manifest {
        media_type: index.media_type.clone(),
        digest: Digest::sha256_of(&bytes),
        bytes,
    })
}

/// A store as the walk's manifest reader.
pub struct StoreReader<'a>(pub &'a dyn crate::store::ImageSource);

#[async_trait::async_trait]
impl ManifestReader for StoreReader<'_> {
    async fn read_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        self.0.manifest(digest).await
    }

    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        self.0.referrers(subject, artifact_types).await
    }

    async fn tagged(&self, tag: &str) -> Result<Option<Manifest>, StoreError> {
        tagged_in(self.0, tag).await
    }
}
