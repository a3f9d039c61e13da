//! Small deterministic images for tests: blobs, configs, manifests and
//! indexes built as bytes, and helpers that push them with registry-client.

use bytes::Bytes;
use futures::stream;
use registry_client::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};
use registry_client::{
    BlobRead, Client, ClientConfig, Credential, Descriptor, Digest, Hasher, Manifest, ManifestPut,
    Reference, Repository, StaticCredentials,
};
use serde_json::json;
use std::sync::Arc;

/// A client for loopback registries, with optional basic credentials.
pub fn client(registry_host: &str, credential: Option<Credential>) -> Client {
    let mut store = StaticCredentials::new();
    if let Some(c) = credential {
        store.insert(registry_host, c);
    }
    Client::new(ClientConfig::builder().credentials(Arc::new(store)).build()).expect("client")
}

pub fn repo(host: &str, name: &str) -> Repository {
    Repository::new(host, name).expect("repository")
}

/// `len` deterministic pseudo-random bytes (xorshift), different per seed:
/// the same bytes the engine's own tests build.
pub fn blob(seed: u64, len: usize) -> Bytes {
    mirror::testing::images::noise(seed, len)
}

/// Push a blob in one monolithic streamed PUT; returns its digest.
pub async fn push_blob(client: &Client, repo: &Repository, data: Bytes) -> Digest {
    let digest = Digest::sha256_of(&data);
    let len = data.len() as u64;
    let session = client.start_upload(repo).await.expect("start upload");
    session
        .put_whole(stream::iter([Ok::<_, std::io::Error>(data)]), len, &digest)
        .await
        .expect("put blob");
    digest
}

/// An image: its manifest bytes and the blobs it names.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub media_type: &'static str,
    pub manifest: Bytes,
    pub digest: Digest,
    pub config: Bytes,
    pub layers: Vec<Bytes>,
}

/// Push an artifact manifest naming `subject` (an empty config and one
/// payload layer), with `artifact_type` and an annotation carrying `n`.
pub async fn push_referrer(
    c: &Client,
    r: &Repository,
    subject: &Descriptor,
    artifact_type: &str,
    n: u64,
) -> (Manifest, ManifestPut) {
    let empty = Bytes::from_static(b"{}");
    push_blob(c, r, empty.clone()).await;
    let payload = Bytes::from(format!("payload {n} of {artifact_type}"));
    push_blob(c, r, payload.clone()).await;
    let bytes = Bytes::from(
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": Digest::sha256_of(&empty).to_string(), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": Digest::sha256_of(&payload).to_string(), "size": payload.len()}],
            "subject": subject,
            "annotations": {"org.example.n": n.to_string(), "org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
        }))
        .unwrap(),
    );
    let digest = Digest::sha256_of(&bytes);
    let put = c
        .put_manifest_with_subject(r, &digest.to_string(), OCI_MANIFEST, bytes.clone())
        .await
        .expect("pushing a referrer");
    assert_eq!(put.digest, digest);
    let m = Manifest {
        media_type: OCI_MANIFEST.into(),
        digest,
        bytes,
    };
    (m, put)
}

/// [`push_referrer`], then listed as the registry needs: by itself when it
/// answered `OCI-Subject` (the referrers API), else in the tag-schema index.
pub async fn push_listed_referrer(
    c: &Client,
    r: &Repository,
    subject: &Descriptor,
    artifact_type: &str,
    n: u64,
) -> Manifest {
    let (m, put) = push_referrer(c, r, subject, artifact_type, n).await;
    if put.oci_subject.is_none() {
        let entry = m.referrer_descriptor().expect("a referrer's descriptor");
        c.add_to_referrers_index(r, &subject.digest, &entry)
            .await
            .expect("indexing a referrer");
    }
    m
}

impl TestImage {
    /// The descriptor a referrer's `subject` (or an index) names it by.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type,
            self.digest.clone(),
            self.manifest.len() as u64,
        )
    }
}

/// A single-platform image with layers of the given sizes. `docker` picks
/// the Docker v2 schema 2 media types instead of OCI's.
pub fn image(seed: u64, layer_sizes: &[usize], docker: bool) -> TestImage {
    let layers: Vec<Bytes> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, n)| blob(seed * 1000 + i as u64, *n))
        .collect();
    image_from_layers(seed, layers, docker)
}

/// An image over the given layers (share a layer between images by passing
/// the same bytes); `seed` makes the config unique.
pub fn image_from_layers(seed: u64, layers: Vec<Bytes>, docker: bool) -> TestImage {
    let config = Bytes::from(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| Digest::sha256_of(l).to_string()).collect::<Vec<_>>()},
        }))
        .unwrap(),
    );
    let (media_type, config_type, layer_type) = if docker {
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": Digest::sha256_of(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": layer_type, "digest": Digest::sha256_of(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
    });
    // Pretty-printed on purpose: a client that re-serialises would change the digest.
    let manifest = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap());
    TestImage {
        media_type,
        digest: Digest::sha256_of(&manifest),
        manifest,
        config,
        layers,
    }
}

/// An index over images for the given platforms (`os/arch`).
pub fn index(children: &[(&TestImage, &str)], docker: bool) -> (Bytes, Digest, &'static str) {
    let media_type = if docker {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let manifests: Vec<_> = children
        .iter()
        .map(|(img, platform)| {
            let (os, arch) = platform.split_once('/').unwrap();
            json!({"mediaType": img.media_type, "digest": img.digest.to_string(), "size": img.manifest.len(), "platform": {"os": os, "architecture": arch}})
        })
        .collect();
    let bytes = Bytes::from(
        serde_json::to_vec_pretty(
            &json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}),
        )
        .unwrap(),
    );
    (bytes.clone(), Digest::sha256_of(&bytes), media_type)
}

/// Push an image's blobs and manifest under `reference` (tag or digest).
pub async fn push_image(
    client: &Client,
    repo: &Repository,
    reference: &str,
    img: &TestImage,
) -> Digest {
    push_blob(client, repo, img.config.clone()).await;
    for l in &img.layers {
        push_blob(client, repo, l.clone()).await;
    }
    client
        .put_manifest(repo, reference, img.media_type, img.manifest.clone())
        .await
        .expect("put manifest")
}

/// Push `img` as `host/name:tag` with a client of its own (anonymous), for
/// a test that only needs the image to be there.
pub async fn push_to(host: &str, name: &str, tag: &str, img: &TestImage) -> Digest {
    push_image(&client(host, None), &repo(host, name), tag, img).await
}

/// Push each child by digest, then the index over them (from [`index`])
/// under `tag`; returns what [`index`] does.
pub async fn push_index(
    client: &Client,
    repo: &Repository,
    tag: &str,
    children: &[(&TestImage, &str)],
    docker: bool,
) -> (Bytes, Digest, &'static str) {
    for (img, _) in children {
        push_image(client, repo, &img.digest.to_string(), img).await;
    }
    let (bytes, digest, media_type) = index(children, docker);
    client
        .put_manifest(repo, tag, media_type, bytes.clone())
        .await
        .expect("put index");
    (bytes, digest, media_type)
}

/// The digest `host/name:tag` names, if the tag exists (asked anonymously).
pub async fn tag_digest(host: &str, name: &str, tag: &str) -> Option<Digest> {
    digest_as(host, None, &format!("{host}/{name}:{tag}")).await
}

/// The digest `reference` (at `host`) names, if it exists, asked as
/// `credential` (anonymously when `None`).
pub async fn digest_as(
    host: &str,
    credential: Option<Credential>,
    reference: &str,
) -> Option<Digest> {
    let r = Reference::parse(reference).unwrap();
    client(host, credential)
        .head_manifest(&r)
        .await
        .unwrap()
        .map(|i| i.digest)
}

/// Whether `host/name` holds the blob (asked anonymously).
pub async fn has_blob(host: &str, name: &str, digest: &Digest) -> bool {
    client(host, None)
        .head_blob(&repo(host, name), digest)
        .await
        .unwrap()
        .is_some()
}

/// A read of a whole blob that must be `size` bytes long.
pub fn read_sized(size: u64) -> BlobRead {
    BlobRead {
        size: Some(size),
        resume: None,
    }
}

/// A read of a `size`-byte blob that already holds `held` (its first
/// bytes, hashed), so it continues at `held.len()` and verifies the whole.
pub fn read_resuming(digest: &Digest, size: u64, held: &[u8]) -> BlobRead {
    let mut hasher = Hasher::new(digest.algorithm());
    hasher.update(held);
    BlobRead {
        size: Some(size),
        resume: Some(hasher),
    }
}

/// Every byte of a blob stream, or its first error (a verification failure
/// arrives as the last item).
pub async fn read_all(
    mut stream: registry_client::BlobStream,
) -> Result<Vec<u8>, registry_client::Error> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Push `tag`: an image whose one layer is `chunks` repeats of a
/// `chunk`-byte piece, streamed so that the test holds one piece of it.
/// Returns the image (its `layers` hold a placeholder: the real layer is
/// too big to keep), the layer's digest and its size.
pub async fn push_big_layer_image(
    client: &Client,
    repo: &Repository,
    tag: &str,
    seed: u64,
    chunk: usize,
    chunks: usize,
) -> (TestImage, Digest, u64) {
    let piece = blob(seed, chunk);
    let mut h = registry_client::Hasher::new(registry_client::Algorithm::Sha256);
    for _ in 0..chunks {
        h.update(&piece);
    }
    let digest = h.finish();
    let total = (chunk * chunks) as u64;
    let session = client.start_upload(repo).await.expect("start upload");
    session
        .put_whole(
            stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(piece.clone()))),
            total,
            &digest,
        )
        .await
        .expect("put the layer");
    // A manifest naming it (the image helper wants layer bytes only for digests).
    let mut img = image_from_layers(1, vec![Bytes::from_static(b"placeholder")], false);
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["layers"][0]["digest"] = json!(digest.to_string());
    m["layers"][0]["size"] = json!(total);
    img.manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    img.digest = Digest::sha256_of(&img.manifest);
    push_blob(client, repo, img.config.clone()).await;
    client
        .put_manifest(repo, tag, img.media_type, img.manifest.clone())
        .await
        .expect("put manifest");
    (img, digest, total)
}
