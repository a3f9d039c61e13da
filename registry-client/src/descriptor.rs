//! The OCI content descriptor, and just enough of manifests and indexes to
//! walk them. Parsed only to read; the original bytes are what gets pushed.

use std::collections::BTreeMap;

use crate::digest::Digest;

/// A content descriptor: what a manifest or index says about a blob or a
/// child manifest (OCI image spec, "Descriptors"). Serialises with the
/// spec's member names, leaving out empty optional ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the content (`mediaType`).
    pub media_type: String,
    /// The digest of the content.
    pub digest: Digest,
    /// The size of the content in bytes; reads check it.
    pub size: u64,
    /// Where else the content may be fetched from (foreign layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations, as the manifest has them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The artifact type (`artifactType`): of a referrer, or of an
    /// artifact's manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The platform of a child manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A plain descriptor: no urls, annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            artifact_type: None,
            platform: None,
        }
    }

    /// A non-distributable (foreign) layer: it names `urls` to fetch it
    /// from, or its media type says so. The one rule for which blobs copy,
    /// export and verify leave where they are.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty() || crate::media_type::is_non_distributable(&self.media_type)
    }
}

/// The platform an index entry is for (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Platform {
    /// The CPU architecture, in Go's terms (`amd64`, `arm64`).
    pub architecture: String,
    /// The operating system, in Go's terms (`linux`, `windows`).
    pub os: String,
    /// The CPU variant (`v8`, `v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The operating system version (`os.version`, Windows builds).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// A manifest or index, the parts needed to find what it references
/// ([`Manifest::content`](crate::Manifest::content)). Unknown members
/// are ignored; the manifest's bytes are what is pushed, never this.
///
/// ```
/// use registry_client::{media_type, Manifest};
///
/// let bytes = br#"{
///   "schemaVersion": 2,
///   "mediaType": "application/vnd.oci.image.index.v1+json",
///   "manifests": [{
///     "mediaType": "application/vnd.oci.image.manifest.v1+json",
///     "digest": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
///     "size": 7023,
///     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
///   }]
/// }"#;
/// let index = Manifest::from_bytes(media_type::OCI_INDEX, bytes.to_vec());
/// assert!(index.is_index());
/// let content = index.content()?;
/// let child = &content.manifests[0];
/// assert_eq!(child.size, 7023);
/// assert_eq!(child.platform.as_ref().unwrap().architecture, "arm64");
/// assert!(content.layers.is_empty() && content.config.is_none());
/// # Ok::<(), registry_client::Error>(())
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestContent {
    /// `schemaVersion`: 2 for every manifest this client reads.
    #[serde(default)]
    pub schema_version: Option<u32>,
    /// The manifest's own `mediaType`, when it says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The artifact type of an artifact manifest (a signature, an SBOM).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The config blob of an image manifest.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// The layers of an image manifest (or an artifact's blobs).
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The children of an index.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (a signature's image): it is
    /// listed among that manifest's referrers.
    #[serde(default)]
    pub subject: Option<Descriptor>,
}
