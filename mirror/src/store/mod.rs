//! Image stores: the places images live. A registry repository, an OCI image
//! layout directory and an OCI archive implement one trait, so copy,
//! sync, export and import are one engine with different ends.

pub mod archive;
pub mod feed;
pub mod layout;
pub(crate) mod oci_index;
pub mod registry;
pub mod sessions;

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use registry_client::{Descriptor, Digest, ErrorKind, Hasher, Manifest, Repository};

pub use feed::{BlobFeed, DirectFeed};

/// A blob's bytes as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Which manifest of a store to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A tag (a registry tag; a layout's `org.opencontainers.image.ref.name`).
    Tag(String),
    /// A manifest by digest.
    Digest(Digest),
    /// The store's only image (a layout holding exactly one).
    Only,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Tag(t) => write!(f, ":{t}"),
            ImageRef::Digest(d) => write!(f, "@{d}"),
            ImageRef::Only => f.write_str(""),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// From the registry client: HTTP, auth, integrity of what it read.
    /// Boxed: the client's error is large and errors travel far.
    #[error(transparent)]
    Client(Box<registry_client::Error>),

    #[error("{0} not found")]
    NotFound(String),

    /// Stored content that does not match its digest or size (a corrupted
    /// or hostile layout), naming where it was found.
    #[error("{context}: {source}")]
    Integrity {
        context: String,
        #[source]
        source: Box<registry_client::Error>,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// Content or metadata that is malformed or refused (a bad `index.json`,
    /// an ambiguous name).
    #[error("{context}: {reason}")]
    Invalid { context: String, reason: String },
}

impl From<registry_client::Error> for StoreError {
    fn from(e: registry_client::Error) -> Self {
        StoreError::Client(Box::new(e))
    }
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Client(e) => e.kind(),
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Integrity { .. } => ErrorKind::Integrity,
            StoreError::Io { .. } => ErrorKind::Local,
            StoreError::Invalid { .. } => ErrorKind::Protocol,
        }
    }

    /// Whether a registry answered with this error code (`MANIFEST_BLOB_UNKNOWN`, …).
    pub fn has_registry_code(&self, code: &registry_client::ErrorCode) -> bool {
        match self {
            StoreError::Client(e) => e.has_code(code),
            _ => false,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    /// `path` made absolute; a path that does not exist is `NotFound`,
    /// named as `what` (`OCI layout directory x`).
    pub(crate) fn canonical(
        path: &std::path::Path,
        what: &str,
    ) -> Result<std::path::PathBuf, Self> {
        std::fs::canonicalize(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                StoreError::NotFound(format!("{what} {}", path.display()))
            }
            _ => StoreError::io(format!("opening {}", path.display()), e),
        })
    }

    pub fn invalid(context: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            context: context.into(),
            reason: reason.into(),
        }
    }
}

/// What a store is: the one identity the factory, the ledger and messages
/// use, instead of a display string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreId {
    /// One repository of one registry.
    Registry(Repository),
    /// An OCI layout directory: as named, and its canonical root.
    Layout { path: PathBuf, root: PathBuf },
    /// An OCI archive: as named, and its canonical path.
    Archive { path: PathBuf, canonical: PathBuf },
    /// A store of this process only (tests).
    Memory(String),
}

impl StoreId {
    /// Stores with the same blob domain share blobs: a registry host (blobs
    /// can be mounted between its repositories), a layout directory.
    pub fn blob_domain(&self) -> String {
        match self {
            StoreId::Registry(r) => format!("registry:{}", r.registry()),
            StoreId::Layout { root, .. } => format!("layout:{}", root.display()),
            StoreId::Archive { canonical, .. } => format!("archive:{}", canonical.display()),
            StoreId::Memory(name) => format!("memory:{name}"),
        }
    }
}

impl fmt::Display for StoreId {
    /// How messages name it: `127.0.0.1:5000/app`, `oci:/tmp/x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreId::Registry(r) => write!(f, "{r}"),
            StoreId::Layout { path, .. } => write!(f, "oci:{}", path.display()),
            StoreId::Archive { path, .. } => write!(f, "oci-archive:{}", path.display()),
            StoreId::Memory(name) => write!(f, "memory:{name}"),
        }
    }
}

/// What every store has: its identity. The rest derives from it.
pub trait Store: Send + Sync + fmt::Debug {
    fn id(&self) -> &StoreId;

    /// Human-readable name for messages (`127.0.0.1:5000/app`, `oci:/tmp/x`).
    fn describe(&self) -> String {
        self.id().to_string()
    }

    /// See [`StoreId::blob_domain`].
    fn blob_domain(&self) -> String {
        self.id().blob_domain()
    }

    /// The registry repository, for stores that are one (a mount source).
    fn repository(&self) -> Option<&Repository> {
        match self.id() {
            StoreId::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// A place images are read from: a registry repository, a layout, an
/// archive.
///
/// Contracts every implementation keeps:
/// - Manifests are bytes: `manifest` and `resolve` return exactly what was
///   stored, verified against the digest asked for.
/// - `read_blob` yields the blob's bytes; its stream ends in an error, never
///   a clean end, when the bytes do not match the descriptor's size and
///   digest. A blob the store lacks is `NotFound`.
#[async_trait::async_trait]
pub trait ImageSource: Store {
    /// The manifest a reference names (verified against a digest reference).
    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError>;

    /// The digest a reference names now, cheaply (`None` when absent). For
    /// incremental copies: compare before moving anything.
    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError>;

    /// A manifest by digest, verified.
    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError>;

    /// The tags of a registry repository; the names of a layout or archive
    /// (`REPO:TAG`).
    async fn list_tags(&self) -> Result<Vec<String>, StoreError>;

    /// The blob's bytes, verified against `desc` as they stream.
    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError>;

    /// The manifests whose `subject` is `subject` (signatures, SBOMs,
    /// attestations), of these artifact types (all when empty). Default:
    /// none (a store that keeps no referrers).
    async fn referrers(
        &self,
        _subject: &Digest,
        _artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        Ok(Vec::new())
    }

    /// The blob's bytes from `held.len()` on, verified as a whole: `held`
    /// is the hash state of the bytes before. Stores that cannot start
    /// mid-blob read from the start and skip (the default).
    async fn read_blob_from(
        &self,
        desc: &Descriptor,
        held: Hasher,
    ) -> Result<BlobStream, StoreError> {
        feed::read_from_start(self, desc, held).await
    }
}

/// A place images are written to: a registry repository, a layout, an
/// archive being written.
///
/// Contracts every implementation keeps:
/// - What `put_manifest` receives is stored byte for byte.
/// - `write_blob` never makes content visible under a digest unless its size
///   and digest match the descriptor (a registry verifies on commit; a layout
///   hashes while writing). If the stream yields an error or does not match,
///   the store discards what it received and returns an error; nothing
///   partial stays under a final name.
/// - `put_manifest` is called only after everything the manifest references
///   is present; `set_tag` is called last and moves the name atomically.
#[async_trait::async_trait]
pub trait ImageTarget: Store {
    /// The digest a tag (or digest) names here now, `None` when absent: what
    /// an incremental copy compares with the source's.
    async fn current(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError>;

    /// The blob's size, or `None` when absent.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// The referrers of `subject` held here already (of these artifact
    /// types, all when empty), so an incremental sync notices one new at
    /// the source. `None`: this target cannot tell (then only digests are
    /// compared).
    async fn held_referrers(
        &self,
        _subject: &Digest,
        _artifact_types: &[String],
    ) -> Result<Option<Vec<Descriptor>>, StoreError> {
        Ok(None)
    }

    /// Store a manifest under its digest, untagged.
    async fn put_manifest(&self, manifest: &Manifest) -> Result<(), StoreError>;

    /// Point `tag` at a manifest already stored.
    async fn set_tag(&self, tag: &str, manifest: &Manifest) -> Result<(), StoreError>;

    /// Whether `set_tag` stores the manifest itself (a registry's PUT by
    /// tag), so a manifest about to be tagged need not be pushed first.
    fn tag_stores_manifest(&self) -> bool {
        false
    }

    /// Store a blob from a stream (see the contract above).
    async fn write_blob(&self, desc: &Descriptor, data: BlobStream) -> Result<(), StoreError>;

    /// Store a blob whose bytes `feed` gives from any offset, so that a
    /// store able to continue an interrupted upload (a registry session
    /// recorded in the state directory) asks only for the rest. Same
    /// contract as `write_blob`.
    async fn write_blob_from(
        &self,
        desc: &Descriptor,
        feed: &dyn BlobFeed,
    ) -> Result<(), StoreError> {
        let data = feed.open(0).await?;
        self.write_blob(desc, data).await
    }

    /// Make a blob that `from` (same blob domain) holds available here
    /// without moving its bytes. `Ok(false)` when that could not be done.
    async fn mount_blob(&self, _desc: &Descriptor, _from: &Repository) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Called once after every image bound for this store is done (those
    /// that failed too): a store that assembles its output at the end (an
    /// archive) writes it here and makes it visible. Nothing before this
    /// call may make such a store's output look complete. Default: nothing.
    async fn finish(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store that is both ends (a registry repository, a layout): what a
/// test or a tool that reads back what it wrote holds.
pub trait ImageStore: ImageSource + ImageTarget {}

impl<T: ImageSource + ImageTarget + ?Sized> ImageStore for T {}
