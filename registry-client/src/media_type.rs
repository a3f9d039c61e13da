//! Media types of manifests, and the Accept list every manifest request sends
//! (distribution answers 404 for an OCI manifest unless it is named).

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (a multi-platform image, or a referrers list).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker manifest list (the multi-platform index of schema 2).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1, refused when read (deprecated, not content-addressable).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed; refused as [`DOCKER_SCHEMA1`] is.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The OCI empty descriptor's type (`{}`), an artifact's config.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Bytes of no particular type; blobs are uploaded as it.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Every manifest kind we can copy, in order of preference.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// The Accept header value for manifest requests. Schema 1 is left out on
/// purpose, so registries that can convert send schema 2 instead.
pub fn manifest_accept_header() -> String {
    MANIFEST_ACCEPT.join(", ")
}

/// Whether the type is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether the type is Docker schema 1, signed or not.
pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

/// Whether a layer of this media type may be copied between registries.
/// The OCI and Docker non-distributable (foreign) layer types say no; the
/// spec deprecates them, but Windows base images still carry them.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains(".foreign.")
}
