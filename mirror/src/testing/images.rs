//! Small deterministic test images built as bytes: layers, configs,
//! manifests and indexes with real digests, so a store or the engine can
//! verify them as it would a registry's.

use bytes::Bytes;
use registry_client::media_type::{OCI_INDEX, OCI_MANIFEST};
use registry_client::{Descriptor, Digest, Manifest};
use serde_json::json;

const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A non-distributable (foreign) layer, as Windows base images carry.
const FOREIGN_LAYER: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// A blob and the descriptor that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub desc: Descriptor,
    pub bytes: Bytes,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Bytes) -> Self {
        let desc = Descriptor::new(media_type, Digest::sha256_of(&bytes), bytes.len() as u64);
        Blob { desc, bytes }
    }

    pub fn digest(&self) -> &Digest {
        &self.desc.digest
    }
}

/// A layer of `len` deterministic pseudo-random bytes, different per seed.
pub fn layer(seed: u64, len: usize) -> Blob {
    Blob::new(LAYER, noise(seed, len))
}

/// A foreign layer: the walk leaves it where it is unless asked to take it.
pub fn foreign_layer(seed: u64, len: usize) -> Blob {
    Blob::new(FOREIGN_LAYER, noise(seed, len))
}

/// `len` deterministic pseudo-random bytes (xorshift).
pub fn noise(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// An image or index with everything under it: `root` last in
/// `manifests` (children before parents), each blob once.
#[derive(Debug, Clone)]
pub struct Image {
    pub root: Manifest,
    pub manifests: Vec<Manifest>,
    pub blobs: Vec<Blob>,
}

impl Image {
    pub fn digest(&self) -> &Digest {
        &self.root.digest
    }

    /// The descriptor a parent index lists this image by.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.root.media_type.clone(),
            self.root.digest.clone(),
            self.root.bytes.len() as u64,
        )
    }

    /// The `i`th blob: an image's config is 0, its distinct layers follow.
    pub fn blob(&self, i: usize) -> &Blob {
        &self.blobs[i]
    }
}

/// A manifest of these bytes, with its real digest.
pub fn manifest(media_type: &str, bytes: Bytes) -> Manifest {
    Manifest {
        media_type: media_type.to_string(),
        digest: Digest::sha256_of(&bytes),
        bytes,
    }
}

/// A single-platform image over `layers`; `seed` makes its config unique.
pub fn image(seed: u64, layers: impl IntoIterator<Item = Blob>) -> Image {
    let layers: Vec<Blob> = layers.into_iter().collect();
    let config = Blob::new(
        CONFIG,
        json_bytes(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest().to_string()).collect::<Vec<_>>()},
        })),
    );
    let root = manifest(
        OCI_MANIFEST,
        json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.desc,
            "layers": layers.iter().map(|l| &l.desc).collect::<Vec<_>>(),
        })),
    );
    let mut blobs = vec![config];
    for l in layers {
        if !blobs.contains(&l) {
            blobs.push(l);
        }
    }
    Image {
        manifests: vec![root.clone()],
        root,
        blobs,
    }
}

/// An artifact referring to `subject` (a signature, an SBOM): an OCI
/// manifest with `artifactType`, the empty config and one small layer.
pub fn referrer(seed: u64, artifact_type: &str, subject: &Descriptor) -> Image {
    let empty = Blob::new(
        registry_client::media_type::OCI_EMPTY,
        Bytes::from_static(b"{}"),
    );
    let payload = Blob::new("application/octet-stream", noise(seed, 64));
    let root = manifest(
        OCI_MANIFEST,
        json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.desc,
            "layers": [payload.desc],
            "subject": subject,
        })),
    );
    Image {
        manifests: vec![root.clone()],
        root,
        blobs: vec![empty, payload],
    }
}

/// An index over `children`, each listed with a platform (`os/arch`) or
/// none; a child may itself be an index.
pub fn index(children: &[(&Image, Option<&str>)]) -> Image {
    let descs: Vec<Descriptor> = children
        .iter()
        .map(|(child, platform)| {
            let mut d = child.descriptor();
            d.platform = platform.map(|p| {
                let (os, arch) = p.split_once('/').expect("os/arch");
                registry_client::Platform {
                    os: os.into(),
                    architecture: arch.into(),
                    variant: None,
                    os_version: None,
                }
            });
            d
        })
        .collect();
    index_of(&descs, children.iter().map(|(c, _)| *c))
}

/// An index listing `descs` (which may lie about the children), holding
/// the content of `children`.
pub fn index_of<'a>(descs: &[Descriptor], children: impl IntoIterator<Item = &'a Image>) -> Image {
    let root = manifest(
        OCI_INDEX,
        json_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs})),
    );
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut blobs: Vec<Blob> = Vec::new();
    for child in children {
        for m in &child.manifests {
            if !manifests.contains(m) {
                manifests.push(m.clone());
            }
        }
        for b in &child.blobs {
            if !blobs.contains(b) {
                blobs.push(b.clone());
            }
        }
    }
    manifests.push(root.clone());
    Image {
        root,
        manifests,
        blobs,
    }
}

/// Pretty-printed on purpose: a copier that re-serialises changes the digest.
fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).expect("json"))
}
