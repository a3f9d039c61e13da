//! Media types of manifests, and the Accept list every manifest request sends
//! (distribution answers 404 for an OCI manifest unless it is named).

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
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

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

/// Whether a layer of this media type may be copied between registries.
/// The OCI and Docker non-distributable (foreign) layer types say no; the
/// spec deprecates them, but Windows base images still carry them.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.contains("nondistributable") || media_type.contains(".foreign.")
}
