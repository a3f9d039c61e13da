//! Deterministic, real container images for tests, the demo and benchmarks.
//!
//! Every layer is a gzip'd tar built from a [`LayerSpec`] (a seed and a target size): fixed
//! entry order, mtimes 0, uid/gid 0, fixed modes, a gzip header with mtime 0 and no file
//! name, one fixed compression level, and file contents from a seeded xorshift generator.
//! The same spec gives the same bytes on every machine and every run. Random contents do
//! not compress, so a layer of `size` bytes comes out within a fraction of a percent of
//! `size`.
//!
//! Configs are OCI image configs (`rootfs.diff_ids` are the digests of the uncompressed
//! tars) and manifests are OCI image manifests; [`generate_index`] adds multi-platform
//! indexes. JSON is written from structs, so its bytes do not depend on serde_json's
//! `preserve_order` feature.
//!
//! Two ways to use them:
//! - in memory: [`generate`] / [`generate_all`] / [`generate_index`], then [`write_layout`]
//!   or [`push`] / [`push_index`];
//! - with memory bounded by one I/O buffer, for benchmark sizes (a 1 GiB layer):
//!   [`write_layout_streaming`] streams each layer straight into an OCI layout, and
//!   [`push_layout`] streams a layout's files to a registry.
//!
//! Scenarios: [`azureml_images`] (the six AzureML system repositories, committed under
//! `fixtures/azureml` at [`Scale::Fixture`] by the `make-fixtures` binary), and the
//! benchmark sets [`azureml`], [`big_index`], [`many`] and [`update`].

use bytes::Bytes;
use flate2::{Compression, GzBuilder};
use registry_client::media_type::{OCI_INDEX, OCI_MANIFEST};
use registry_client::{Algorithm, Client, Digest, Hasher, Repository};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Media type of every generated layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of every generated image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The annotation that names an image in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The gzip level of every layer. Changing it changes every digest (and the committed
/// fixtures).
pub const GZIP_LEVEL: u32 = 1;

/// The six AzureML system repositories, as the preset's own table has them.
pub const AZUREML_REPOSITORIES: [&str; 6] = mirror::azureml::images::RUNTIME_REPOSITORIES;

/// The region of the committed fixture set.
pub const FIXTURE_REGION: &str = "eastus";
/// The two regions of the `azureml` benchmark scenario.
pub const BENCH_REGIONS: [&str; 2] = ["eastus", "westeurope"];

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const EPOCH: &str = "1970-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------

/// One layer: the same seed and size always give the same bytes. `size` is the target size
/// of the compressed blob; the result lands within about 0.5% of it (exactly: see
/// [`LayerInfo::size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerSpec {
    pub seed: u64,
    pub size: usize,
}

/// One single-platform image under `repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub repository: String,
    pub tag: String,
    pub layers: Vec<LayerSpec>,
    /// `(os, architecture)`, e.g. `("linux", "amd64")`.
    pub platform: (String, String),
}

impl ImageSpec {
    /// A `linux/amd64` image.
    pub fn new(repository: &str, tag: &str, layers: Vec<LayerSpec>) -> Self {
        ImageSpec {
            repository: repository.to_string(),
            tag: tag.to_string(),
            layers,
            platform: ("linux".to_string(), "amd64".to_string()),
        }
    }

    /// `repository:tag`, the name used in an OCI layout's `index.json`.
    pub fn ref_name(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// A multi-platform image index under `repository:tag`. The children's own `repository`
/// and `tag` are used only in their configs' labels: they are stored by digest in the
/// index's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub repository: String,
    pub tag: String,
    pub images: Vec<ImageSpec>,
}

impl IndexSpec {
    pub fn ref_name(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// Fixture sizes (small, committed to the repository) or benchmark sizes (issue 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Fixture,
    Bench,
}

// ---------------------------------------------------------------------------------------
// Generated content
// ---------------------------------------------------------------------------------------

/// What a layer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the gzip'd blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Size of the gzip'd blob.
    pub size: u64,
}

/// An image, all in memory.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub spec: ImageSpec,
    pub config: Bytes,
    pub config_digest: Digest,
    /// The gzip'd layer blobs, in manifest order.
    pub layers: Vec<Bytes>,
    /// Digest, diff_id and size of each layer, in manifest order.
    pub layer_info: Vec<LayerInfo>,
    /// OCI image manifest JSON (pretty-printed: a client that re-serialises it would change
    /// its digest).
    pub manifest: Bytes,
    pub manifest_digest: Digest,
    pub media_type: &'static str,
}

impl GeneratedImage {
    /// `repository:tag`.
    pub fn ref_name(&self) -> String {
        self.spec.ref_name()
    }

    /// Config and layers with their digests, config first.
    pub fn blobs(&self) -> Vec<(Digest, Bytes)> {
        let mut out = vec![(self.config_digest.clone(), self.config.clone())];
        out.extend(
            self.layer_info
                .iter()
                .zip(&self.layers)
                .map(|(i, b)| (i.digest.clone(), b.clone())),
        );
        out
    }

    /// Total size of config and layers.
    pub fn blob_bytes(&self) -> u64 {
        self.config.len() as u64 + self.layer_info.iter().map(|l| l.size).sum::<u64>()
    }
}

/// A multi-platform index and its children, all in memory.
#[derive(Debug, Clone)]
pub struct GeneratedIndex {
    pub spec: IndexSpec,
    pub images: Vec<GeneratedImage>,
    /// OCI image index JSON (pretty-printed).
    pub manifest: Bytes,
    pub manifest_digest: Digest,
    pub media_type: &'static str,
}

impl GeneratedIndex {
    pub fn ref_name(&self) -> String {
        self.spec.ref_name()
    }
}

// ---------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------

/// xorshift64 seeded through splitmix64: fast, tiny and the same everywhere.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Xorshift(if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z })
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// An endless byte stream from a [`Xorshift`], independent of how it is read: the bytes do
/// not depend on the sizes of the reads.
struct RandomBytes {
    rng: Xorshift,
    pending: [u8; 8],
    used: usize,
}

impl RandomBytes {
    fn new(seed: u64) -> Self {
        RandomBytes {
            rng: Xorshift::new(seed),
            pending: [0; 8],
            used: 8,
        }
    }
}

impl Read for RandomBytes {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len();
        let mut i = 0;
        while i < n && self.used < 8 {
            out[i] = self.pending[self.used];
            self.used += 1;
            i += 1;
        }
        let mut chunks = out[i..].chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.rng.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            self.pending = self.rng.next().to_le_bytes();
            rest.copy_from_slice(&self.pending[..rest.len()]);
            self.used = rest.len();
        }
        Ok(n)
    }
}

/// Passes writes through and hashes what went through.
struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
        }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum EntryKind {
    Dir,
    Text(String),
    Random(u64),
}

struct Entry {
    path: String,
    kind: EntryKind,
}

/// The entries of a layer, sorted by path (parents before children).
fn layer_entries(spec: &LayerSpec) -> Vec<Entry> {
    let id = format!("{:016x}", spec.seed);
    let mut rng = Xorshift::new(spec.seed ^ 0x006c_6179_6572);
    let files = 1 + rng.range(0, 2) as usize + (spec.size / (16 * MIB)).min(64);
    let text = format!(
        "fixture layer\nseed = {:#018x}\nsize = {}\nfiles = {}\n",
        spec.seed, spec.size, files
    );
    // Tar headers, padding, end blocks and deflate's framing of incompressible data come to
    // about this much (measured), so the blob lands within a few hundred bytes of `size`.
    let overhead = 380 + 60 * files + spec.size / 1064;
    let budget = spec.size.saturating_sub(overhead) as u64;
    let weights: Vec<u64> = (0..files).map(|_| rng.range(1, 4)).collect();
    let total: u64 = weights.iter().sum();
    let mut left = budget;
    let mut entries = vec![
        Entry {
            path: "etc".into(),
            kind: EntryKind::Dir,
        },
        Entry {
            path: "etc/fixture".into(),
            kind: EntryKind::Dir,
        },
        Entry {
            path: format!("etc/fixture/{id}.txt"),
            kind: EntryKind::Text(text),
        },
        Entry {
            path: "opt".into(),
            kind: EntryKind::Dir,
        },
        Entry {
            path: "opt/fixture".into(),
            kind: EntryKind::Dir,
        },
        Entry {
            path: format!("opt/fixture/{id}"),
            kind: EntryKind::Dir,
        },
    ];
    for (i, w) in weights.iter().enumerate() {
        let len = if i + 1 == files {
            left
        } else {
            (budget * w / total).min(left)
        };
        left -= len;
        entries.push(Entry {
            path: format!("opt/fixture/{id}/data-{i:03}.bin"),
            kind: EntryKind::Random(len),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_username("root")?;
    h.set_groupname("root")?;
    h.set_device_major(0)?;
    h.set_device_minor(0)?;
    Ok(h)
}

/// Write the gzip'd tar of `spec` to `out`, streaming (memory stays at a few buffers
/// whatever the size). The bytes depend on `spec` alone.
pub fn write_layer<W: Write>(spec: &LayerSpec, out: W) -> io::Result<LayerInfo> {
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(HashWriter::new(out), Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(HashWriter::new(gz));
    tar.mode(tar::HeaderMode::Deterministic);
    let mut contents = RandomBytes::new(spec.seed ^ (spec.size as u64).rotate_left(32));
    for entry in layer_entries(spec) {
        match entry.kind {
            EntryKind::Dir => {
                let mut h = header(tar::EntryType::Directory, 0, 0o755)?;
                tar.append_data(&mut h, &entry.path, io::empty())?;
            }
            EntryKind::Text(text) => {
                let mut h = header(tar::EntryType::Regular, text.len() as u64, 0o644)?;
                tar.append_data(&mut h, &entry.path, text.as_bytes())?;
            }
            EntryKind::Random(len) => {
                let mut h = header(tar::EntryType::Regular, len, 0o644)?;
                tar.append_data(&mut h, &entry.path, (&mut contents).take(len))?;
            }
        }
    }
    let tar_out = tar.into_inner()?;
    let diff_id = tar_out.hasher.finish();
    let mut compressed = tar_out.inner.finish()?;
    compressed.flush()?;
    let size = compressed.hasher.len();
    Ok(LayerInfo {
        digest: compressed.hasher.finish(),
        diff_id,
        size,
    })
}

/// The gzip'd tar of `spec`, in memory.
pub fn generate_layer(spec: &LayerSpec) -> (Bytes, LayerInfo) {
    let mut out = Vec::with_capacity(spec.size + 4 * KIB);
    let info = write_layer(spec, &mut out).expect("writing to memory");
    (Bytes::from(out), info)
}

// ---------------------------------------------------------------------------------------
// Configs, manifests, indexes
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'static str,
    architecture: &'a str,
    os: &'a str,
    config: RunConfig,
    rootfs: RootFs<'a>,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    env: Vec<String>,
    cmd: Vec<String>,
    working_dir: &'static str,
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a Digest>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    digest: &'a Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'static str, String>>,
}

#[derive(Serialize)]
struct PlatformJson<'a> {
    architecture: &'a str,
    os: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageIndex<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor<'a>>,
}

/// Config and manifest of an image whose layers are known.
struct Assembled {
    config: Bytes,
    config_digest: Digest,
    manifest: Bytes,
    manifest_digest: Digest,
}

fn assemble(spec: &ImageSpec, layers: &[LayerInfo]) -> Assembled {
    let (os, arch) = (&spec.platform.0, &spec.platform.1);
    let labels = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            spec.repository.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            spec.tag.clone(),
        ),
        (
            "org.opencontainers.image.vendor".to_string(),
            "mirror-tests fixtures".to_string(),
        ),
    ]);
    let config = ImageConfig {
        created: EPOCH,
        architecture: arch,
        os,
        config: RunConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["/bin/sh".into()],
            working_dir: "/",
            labels,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| &l.diff_id).collect(),
        },
        history: spec
            .layers
            .iter()
            .map(|l| History {
                created: EPOCH,
                created_by: format!(
                    "mirror-tests fixture layer seed={:#018x} size={}",
                    l.seed, l.size
                ),
            })
            .collect(),
    };
    let config = Bytes::from(serde_json::to_vec(&config).expect("config JSON"));
    let config_digest = Digest::sha256_of(&config);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE,
            digest: &config_digest,
            size: config.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: LAYER_MEDIA_TYPE,
                digest: &l.digest,
                size: l.size,
                platform: None,
                annotations: None,
            })
            .collect(),
    };
    let manifest = Bytes::from(serde_json::to_vec_pretty(&manifest).expect("manifest JSON"));
    Assembled {
        manifest_digest: Digest::sha256_of(&manifest),
        manifest,
        config_digest,
        config,
    }
}

/// The index JSON over children given as (platform, manifest digest, manifest size).
fn index_json(children: &[(&(String, String), &Digest, u64)]) -> Bytes {
    let index = ImageIndex {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: children
            .iter()
            .map(|(platform, digest, size)| Descriptor {
                media_type: OCI_MANIFEST,
                digest,
                size: *size,
                platform: Some(PlatformJson {
                    architecture: &platform.1,
                    os: &platform.0,
                }),
                annotations: None,
            })
            .collect(),
    };
    Bytes::from(serde_json::to_vec_pretty(&index).expect("index JSON"))
}

fn build_image(
    spec: &ImageSpec,
    cache: &mut HashMap<LayerSpec, (Bytes, LayerInfo)>,
) -> GeneratedImage {
    let (layers, layer_info): (Vec<Bytes>, Vec<LayerInfo>) = spec
        .layers
        .iter()
        .map(|l| cache.entry(*l).or_insert_with(|| generate_layer(l)).clone())
        .unzip();
    let a = assemble(spec, &layer_info);
    GeneratedImage {
        spec: spec.clone(),
        config: a.config,
        config_digest: a.config_digest,
        layers,
        layer_info,
        manifest: a.manifest,
        manifest_digest: a.manifest_digest,
        media_type: OCI_MANIFEST,
    }
}

/// One image, in memory.
pub fn generate(spec: &ImageSpec) -> GeneratedImage {
    build_image(spec, &mut HashMap::new())
}

/// Several images, in memory; a layer shared between them is generated once (and its
/// `Bytes` shared).
pub fn generate_all(specs: &[ImageSpec]) -> Vec<GeneratedImage> {
    let mut cache = HashMap::new();
    specs.iter().map(|s| build_image(s, &mut cache)).collect()
}

/// A multi-platform OCI image index over its children, in memory.
pub fn generate_index(spec: &IndexSpec) -> GeneratedIndex {
    let images = generate_all(&spec.images);
    let children: Vec<_> = images
        .iter()
        .map(|i| {
            (
                &i.spec.platform,
                &i.manifest_digest,
                i.manifest.len() as u64,
            )
        })
        .collect();
    let manifest = index_json(&children);
    GeneratedIndex {
        spec: spec.clone(),
        manifest_digest: Digest::sha256_of(&manifest),
        manifest,
        images,
        media_type: OCI_INDEX,
    }
}

// ---------------------------------------------------------------------------------------
// OCI image layout
// ---------------------------------------------------------------------------------------

/// One named entry of a layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutEntry {
    /// `repository:tag`.
    pub name: String,
    pub media_type: &'static str,
    pub digest: Digest,
    pub size: u64,
}

/// Writes blobs (each once) under `blobs/sha256`, each to a temporary name then renamed.
struct LayoutWriter {
    dir: PathBuf,
    blobs: PathBuf,
    written: HashSet<Digest>,
}

impl LayoutWriter {
    fn create(dir: &Path) -> io::Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs)?;
        write_atomic(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
            blobs,
            written: HashSet::new(),
        })
    }

    fn put(&mut self, digest: &Digest, data: &[u8]) -> io::Result<()> {
        if self.written.insert(digest.clone()) {
            write_atomic(&self.blobs, digest.hex(), data)?;
        }
        Ok(())
    }

    /// Stream a layer into the layout; returns what it turned out to be.
    fn put_layer(&mut self, spec: &LayerSpec) -> io::Result<LayerInfo> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-layer-")
            .tempfile_in(&self.blobs)?;
        let mut out = io::BufWriter::with_capacity(256 * KIB, tmp);
        let info = write_layer(spec, &mut out)?;
        let tmp = out.into_inner().map_err(|e| e.into_error())?;
        persist(tmp, &self.blobs.join(info.digest.hex()))?;
        self.written.insert(info.digest.clone());
        Ok(info)
    }

    fn finish(self, mut entries: Vec<LayoutEntry>) -> io::Result<Vec<LayoutEntry>> {
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.digest.cmp(&b.digest)));
        entries.dedup();
        if let Some(w) = entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "two images named {} ({} and {})",
                    w[0].name, w[0].digest, w[1].digest
                ),
            ));
        }
        let index = ImageIndex {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests: entries
                .iter()
                .map(|e| Descriptor {
                    media_type: e.media_type,
                    digest: &e.digest,
                    size: e.size,
                    platform: None,
                    annotations: Some(BTreeMap::from([(REF_NAME_ANNOTATION, e.name.clone())])),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&index).map_err(io::Error::other)?;
        write_atomic(&self.dir, "index.json", &json)?;
        Ok(entries)
    }
}

fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    persist(tmp, &dir.join(name))
}

fn image_entry(
    name: String,
    manifest: &Bytes,
    digest: &Digest,
    media_type: &'static str,
) -> LayoutEntry {
    LayoutEntry {
        name,
        media_type,
        digest: digest.clone(),
        size: manifest.len() as u64,
    }
}

/// Write `images` as an OCI image layout in `dir` (created if missing): `oci-layout`,
/// every blob once under `blobs/sha256/`, and an `index.json` naming each image
/// `repository:tag` in `org.opencontainers.image.ref.name`, sorted by name. An existing
/// `index.json` is replaced; blobs already there that these images do not use are left
/// alone. Two different images under one name are an error.
pub fn write_layout(dir: &Path, images: &[GeneratedImage]) -> io::Result<()> {
    write_layout_with_indexes(dir, images, &[]).map(|_| ())
}

/// [`write_layout`] with multi-platform indexes too (each named in `index.json`; their
/// children are stored but not named).
pub fn write_layout_with_indexes(
    dir: &Path,
    images: &[GeneratedImage],
    indexes: &[GeneratedIndex],
) -> io::Result<Vec<LayoutEntry>> {
    let mut w = LayoutWriter::create(dir)?;
    let mut entries = Vec::new();
    let put_image = |w: &mut LayoutWriter, img: &GeneratedImage| -> io::Result<()> {
        for (digest, data) in img.blobs() {
            w.put(&digest, &data)?;
        }
        w.put(&img.manifest_digest, &img.manifest)
    };
    for img in images {
        put_image(&mut w, img)?;
        entries.push(image_entry(
            img.ref_name(),
            &img.manifest,
            &img.manifest_digest,
            img.media_type,
        ));
    }
    for index in indexes {
        for img in &index.images {
            put_image(&mut w, img)?;
        }
        w.put(&index.manifest_digest, &index.manifest)?;
        entries.push(image_entry(
            index.ref_name(),
            &index.manifest,
            &index.manifest_digest,
            index.media_type,
        ));
    }
    w.finish(entries)
}

/// The same layout [`write_layout_with_indexes`] writes for these specs, byte for byte,
/// but streamed: each unique layer is generated straight into its file and never held in
/// memory, so a 1 GiB layer costs a few hundred KiB. Returns the named entries.
pub fn write_layout_streaming(
    dir: &Path,
    images: &[ImageSpec],
    indexes: &[IndexSpec],
) -> io::Result<Vec<LayoutEntry>> {
    let mut w = LayoutWriter::create(dir)?;
    let mut done: HashMap<LayerSpec, LayerInfo> = HashMap::new();
    let mut put_image = |w: &mut LayoutWriter, spec: &ImageSpec| -> io::Result<(Bytes, Digest)> {
        let mut infos = Vec::with_capacity(spec.layers.len());
        for l in &spec.layers {
            let info = match done.get(l) {
                Some(i) => i.clone(),
                None => {
                    let i = w.put_layer(l)?;
                    done.insert(*l, i.clone());
                    i
                }
            };
            infos.push(info);
        }
        let a = assemble(spec, &infos);
        w.put(&a.config_digest, &a.config)?;
        w.put(&a.manifest_digest, &a.manifest)?;
        Ok((a.manifest, a.manifest_digest))
    };
    let mut entries = Vec::new();
    for spec in images {
        let (manifest, digest) = put_image(&mut w, spec)?;
        entries.push(image_entry(
            spec.ref_name(),
            &manifest,
            &digest,
            OCI_MANIFEST,
        ));
    }
    for index in indexes {
        let mut children = Vec::new();
        for child in &index.images {
            let (manifest, digest) = put_image(&mut w, child)?;
            children.push((&child.platform, digest, manifest.len() as u64));
        }
        let refs: Vec<_> = children.iter().map(|(p, d, s)| (*p, d, *s)).collect();
        let manifest = index_json(&refs);
        let digest = Digest::sha256_of(&manifest);
        w.put(&digest, &manifest)?;
        entries.push(image_entry(index.ref_name(), &manifest, &digest, OCI_INDEX));
    }
    w.finish(entries)
}

/// Write the committed fixture set (the six AzureML look-alikes, region
/// [`FIXTURE_REGION`], [`Scale::Fixture`]) as an OCI layout in `dir`, replacing any
/// `oci-layout`, `index.json` and `blobs/` already there. This is what `make-fixtures`
/// runs and what `fixtures/azureml` holds.
pub fn write_azureml_fixtures(dir: &Path) -> io::Result<Vec<LayoutEntry>> {
    for name in ["oci-layout", "index.json"] {
        match fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match fs::remove_dir_all(dir.join("blobs")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_layout_streaming(dir, &azureml_images(FIXTURE_REGION, Scale::Fixture), &[])
}

// ---------------------------------------------------------------------------------------
// Pushing to a registry
// ---------------------------------------------------------------------------------------

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Blobs uploaded.
    pub blobs_pushed: usize,
    /// Blobs the registry already had (HEAD answered), or already pushed in this call.
    pub blobs_present: usize,
    /// Bytes uploaded.
    pub bytes_pushed: u64,
    /// Manifests and indexes put (children by digest, the top by tag).
    pub manifests: usize,
}

struct Pusher<'a> {
    client: &'a Client,
    host: &'a str,
    seen: HashSet<(String, Digest)>,
    stats: PushStats,
}

impl<'a> Pusher<'a> {
    fn new(client: &'a Client, host: &'a str) -> Self {
        Pusher {
            client,
            host,
            seen: HashSet::new(),
            stats: PushStats::default(),
        }
    }

    fn repo(&self, name: &str) -> Result<Repository, registry_client::Error> {
        Repository::new(self.host, name)
    }

    /// Whether the blob must still be sent (not pushed earlier in this call, and HEAD
    /// says the registry does not have it).
    async fn needs(
        &mut self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<bool, registry_client::Error> {
        if !self.seen.insert((repo.name().to_string(), digest.clone())) {
            self.stats.blobs_present += 1;
            return Ok(false);
        }
        if self.client.head_blob(repo, digest).await?.is_some() {
            self.stats.blobs_present += 1;
            return Ok(false);
        }
        Ok(true)
    }

    async fn blob(
        &mut self,
        repo: &Repository,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), registry_client::Error> {
        if self.needs(repo, digest).await? {
            let len = data.len() as u64;
            let session = self.client.start_upload(repo).await?;
            session
                .put_whole(
                    futures::stream::iter([Ok::<_, io::Error>(data)]),
                    len,
                    digest,
                )
                .await?;
            self.stats.blobs_pushed += 1;
            self.stats.bytes_pushed += len;
        }
        Ok(())
    }

    async fn manifest(
        &mut self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), registry_client::Error> {
        self.client
            .put_manifest(repo, reference, media_type, bytes)
            .await?;
        self.stats.manifests += 1;
        Ok(())
    }

    /// Blobs and manifest of `img` into `repo`, the manifest under `reference`.
    async fn image(
        &mut self,
        repo: &Repository,
        reference: &str,
        img: &GeneratedImage,
    ) -> Result<(), registry_client::Error> {
        for (digest, data) in img.blobs() {
            self.blob(repo, &digest, data).await?;
        }
        self.manifest(repo, reference, img.media_type, img.manifest.clone())
            .await
    }
}

/// Push each image to `registry_host` as `repository:tag`: blobs first (HEAD, skipping
/// those present), then the manifest under the tag.
pub async fn push(
    client: &Client,
    registry_host: &str,
    images: &[GeneratedImage],
) -> Result<PushStats, registry_client::Error> {
    let mut p = Pusher::new(client, registry_host);
    for img in images {
        let repo = p.repo(&img.spec.repository)?;
        p.image(&repo, &img.spec.tag, img).await?;
    }
    Ok(p.stats)
}

/// [`push`] to a test registry as `credential` (anonymous when `None`): a setup step, so a
/// failure panics.
pub async fn push_as(
    registry: &crate::Registry,
    credential: Option<registry_client::Credential>,
    images: &[GeneratedImage],
) {
    let host = registry.host();
    push(&crate::images::client(&host, credential), &host, images)
        .await
        .expect("pushing the fixture images");
}

/// Push an index: each child's blobs and manifest (by digest), then the index under its
/// tag.
pub async fn push_index(
    client: &Client,
    registry_host: &str,
    index: &GeneratedIndex,
) -> Result<PushStats, registry_client::Error> {
    let mut p = Pusher::new(client, registry_host);
    let repo = p.repo(&index.spec.repository)?;
    for img in &index.images {
        p.image(&repo, &img.manifest_digest.to_string(), img)
            .await?;
    }
    p.manifest(
        &repo,
        &index.spec.tag,
        index.media_type,
        index.manifest.clone(),
    )
    .await?;
    Ok(p.stats)
}

/// Push every named image and index of an OCI layout (names `repository:tag`, as this
/// module writes them) to `registry_host`, streaming blobs from their files so memory stays
/// bounded whatever their size. Children of an index are pushed by digest.
pub async fn push_layout(
    client: &Client,
    registry_host: &str,
    dir: &Path,
) -> anyhow::Result<PushStats> {
    use anyhow::Context;
    let index: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("index.json"))
            .with_context(|| format!("reading {}/index.json", dir.display()))?,
    )?;
    let blobs = dir.join("blobs");
    let mut p = Pusher::new(client, registry_host);
    for desc in index["manifests"]
        .as_array()
        .context("index.json has no manifests")?
    {
        let Some(name) = desc["annotations"][REF_NAME_ANNOTATION].as_str() else {
            continue;
        };
        let (repository, tag) = name
            .rsplit_once(':')
            .with_context(|| format!("layout name {name:?} is not repository:tag"))?;
        let repo = p.repo(repository)?;
        let digest: Digest = desc["digest"]
            .as_str()
            .context("descriptor without digest")?
            .parse()?;
        let media_type = desc["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
        push_layout_manifest(&mut p, &blobs, &repo, tag, &digest, media_type).await?;
    }
    Ok(p.stats)
}

fn blob_path(blobs: &Path, digest: &Digest) -> PathBuf {
    blobs.join(digest.algorithm().name()).join(digest.hex())
}

async fn push_layout_manifest(
    p: &mut Pusher<'_>,
    blobs: &Path,
    repo: &Repository,
    reference: &str,
    digest: &Digest,
    media_type: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = blob_path(blobs, digest);
    let bytes =
        Bytes::from(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    let json: serde_json::Value = serde_json::from_slice(&bytes)?;
    if registry_client::media_type::is_index(media_type) {
        for child in json["manifests"]
            .as_array()
            .context("index without manifests")?
        {
            let d: Digest = child["digest"]
                .as_str()
                .context("descriptor without digest")?
                .parse()?;
            let mt = child["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
            Box::pin(push_layout_manifest(p, blobs, repo, &d.to_string(), &d, mt)).await?;
        }
    } else {
        let descs =
            std::iter::once(&json["config"]).chain(json["layers"].as_array().into_iter().flatten());
        for desc in descs {
            let d: Digest = desc["digest"]
                .as_str()
                .context("descriptor without digest")?
                .parse()?;
            if p.needs(repo, &d).await? {
                let path = blob_path(blobs, &d);
                let file = tokio::fs::File::open(&path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                let len = file.metadata().await?.len();
                let session = p.client.start_upload(repo).await?;
                session.put_whole(file_stream(file), len, &d).await?;
                p.stats.blobs_pushed += 1;
                p.stats.bytes_pushed += len;
            }
        }
    }
    p.manifest(repo, reference, media_type, bytes).await?;
    Ok(())
}

/// A file as a stream of 1 MiB chunks.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; MIB];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// Seed of the base layer every AzureML look-alike shares.
pub const AZUREML_BASE_SEED: u64 = 0xA2_0000;

/// The six AzureML system repositories with tag `{region}-stable`: one shared base layer
/// (same seed) plus one to five own layers each. Layers do not depend on the region (two
/// regions share every layer; their configs and manifests differ by the tag label).
///
/// - [`Scale::Fixture`]: base 64 KiB, 1–3 own layers of 8–48 KiB (about 400 KiB in all);
/// - [`Scale::Bench`]: base 30 MiB, 3–5 own layers of 5–60 MiB (940 MiB unique).
pub fn azureml_images(region: &str, scale: Scale) -> Vec<ImageSpec> {
    let (base, own, unit): (usize, [&[usize]; 6], usize) = match scale {
        Scale::Fixture => (
            64,
            [
                &[48, 16],
                &[40, 24, 8],
                &[32],
                &[44, 12],
                &[36, 20, 8],
                &[28, 16],
            ],
            KIB,
        ),
        Scale::Bench => (
            30,
            [
                &[60, 45, 25, 12],
                &[55, 40, 30, 20, 8],
                &[60, 50, 35],
                &[58, 42, 28, 16, 6],
                &[60, 52, 30, 22],
                &[60, 48, 33, 10, 5],
            ],
            MIB,
        ),
    };
    AZUREML_REPOSITORIES
        .iter()
        .zip(own)
        .enumerate()
        .map(|(r, (repository, sizes))| {
            let mut layers = vec![LayerSpec {
                seed: AZUREML_BASE_SEED,
                size: base * unit,
            }];
            layers.extend(sizes.iter().enumerate().map(|(j, s)| LayerSpec {
                seed: AZUREML_BASE_SEED + 0x100 * (r as u64 + 1) + j as u64,
                size: s * unit,
            }));
            ImageSpec::new(repository, &format!("{region}-stable"), layers)
        })
        .collect()
}

/// Benchmark scenario `azureml`: the six repositories × [`BENCH_REGIONS`] at
/// [`Scale::Bench`] (12 tags, 940 MiB unique).
pub fn azureml() -> Vec<ImageSpec> {
    BENCH_REGIONS
        .iter()
        .flat_map(|r| azureml_images(r, Scale::Bench))
        .collect()
}

/// Benchmark scenario `update`: after [`azureml`] is mirrored, this replaces
/// `exe/execution-wrapper/installed:eastus-stable` with the same image plus one new 20 MiB
/// layer.
pub fn update() -> ImageSpec {
    let mut spec = azureml_images(BENCH_REGIONS[0], Scale::Bench)
        .into_iter()
        .nth(1)
        .expect("six repositories");
    spec.layers.push(LayerSpec {
        seed: AZUREML_BASE_SEED + 0xF000,
        size: 20 * MIB,
    });
    spec
}

/// Benchmark scenario `big`: `big/multiarch:latest`, an index over linux/amd64 and
/// linux/arm64, each one 1 GiB layer and four 64 MiB layers (2.5 GiB).
pub fn big_index() -> IndexSpec {
    let images = ["amd64", "arm64"]
        .iter()
        .enumerate()
        .map(|(p, arch)| {
            let seed = 0xB16_0000 + 0x100 * p as u64;
            let mut layers = vec![LayerSpec {
                seed,
                size: 1024 * MIB,
            }];
            layers.extend((1..=4).map(|j| LayerSpec {
                seed: seed + j,
                size: 64 * MIB,
            }));
            ImageSpec {
                repository: "big/multiarch".into(),
                tag: format!("latest-{arch}"),
                layers,
                platform: ("linux".into(), arch.to_string()),
            }
        })
        .collect();
    IndexSpec {
        repository: "big/multiarch".into(),
        tag: "latest".into(),
        images,
    }
}

/// Benchmark scenario `many`: `many/app-00` … `many/app-39`, tags `v1` `v2` `v3`, four
/// layers each of 64 KiB–2 MiB: a base layer (one of 7) and a runtime layer (one of 7)
/// shared across repositories, a layer shared by a repository's three tags and one of the
/// tag's own. 174 unique layers and 120 configs: 294 blobs, about 180 MiB.
pub fn many() -> Vec<ImageSpec> {
    let mut rng = Xorshift::new(0x3A4E);
    let mut size = move || (rng.range(64, 2048) as usize) * KIB;
    let bases: Vec<LayerSpec> = (0..7)
        .map(|i| LayerSpec {
            seed: 0x3A4E_0000 + i,
            size: size(),
        })
        .collect();
    let runtimes: Vec<LayerSpec> = (0..7)
        .map(|i| LayerSpec {
            seed: 0x3A4E_1000 + i,
            size: size(),
        })
        .collect();
    let mut out = Vec::with_capacity(120);
    for r in 0..40u64 {
        let app = LayerSpec {
            seed: 0x3A4E_2000 + r,
            size: size(),
        };
        for t in 1..=3u64 {
            let own = LayerSpec {
                seed: 0x3A4E_3000 + r * 4 + t,
                size: size(),
            };
            out.push(ImageSpec::new(
                &format!("many/app-{r:02}"),
                &format!("v{t}"),
                vec![
                    bases[r as usize % 7],
                    runtimes[(r as usize * 3 + r as usize / 7) % 7],
                    app,
                    own,
                ],
            ));
        }
    }
    out
}

/// Unique layers of some specs, in first-seen order.
pub fn unique_layers<'a>(specs: impl IntoIterator<Item = &'a ImageSpec>) -> Vec<LayerSpec> {
    let mut seen = HashSet::new();
    specs
        .into_iter()
        .flat_map(|s| s.layers.iter().copied())
        .filter(|l| seen.insert(*l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{run_peer, skopeo_raw, umoci_ls};

    fn decode(blob: &[u8]) -> (Vec<(String, tar::EntryType, u64, u32)>, Digest) {
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut tar_bytes)
            .expect("valid gzip");
        let mut entries = Vec::new();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        for e in archive.entries().expect("tar") {
            let mut e = e.expect("tar entry");
            let h = e.header();
            let item = (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.size().unwrap(),
                h.mode().unwrap(),
            );
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            assert_eq!(content.len() as u64, item.2);
            entries.push(item);
        }
        (entries, Digest::sha256_of(&tar_bytes))
    }

    #[test]
    fn random_bytes_do_not_depend_on_read_sizes() {
        let mut whole = vec![0u8; 1000];
        RandomBytes::new(7).read_exact(&mut whole).unwrap();
        let mut pieces = Vec::new();
        let mut r = RandomBytes::new(7);
        for n in [1, 3, 8, 13, 5, 64, 7, 899] {
            let mut b = vec![0u8; n];
            r.read_exact(&mut b).unwrap();
            pieces.extend(b);
        }
        assert_eq!(&pieces[..1000], &whole[..]);
    }

    #[test]
    fn generation_is_deterministic() {
        let specs = azureml_images("eastus", Scale::Fixture);
        let a = generate_all(&specs);
        let b = generate_all(&specs);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.config, y.config);
            assert_eq!(x.layers, y.layers);
            assert_eq!(x.manifest, y.manifest);
            assert_eq!(x.manifest_digest, y.manifest_digest);
        }
        // One by one, without the shared-layer cache, too.
        assert_eq!(generate(&specs[3]).manifest, a[3].manifest);
        // Streaming to a writer gives the same bytes as in memory.
        let l = specs[0].layers[0];
        let mut streamed = Vec::new();
        let info = write_layer(&l, &mut streamed).unwrap();
        assert_eq!(Bytes::from(streamed), a[0].layers[0]);
        assert_eq!(info, a[0].layer_info[0]);
    }

    #[test]
    fn gzip_header_is_fixed() {
        let (blob, _) = generate_layer(&LayerSpec {
            seed: 1,
            size: 4096,
        });
        // magic, deflate, no flags (no file name), mtime 0, xfl, OS unknown
        assert_eq!(&blob[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
        assert_eq!(blob[9], 255);
    }

    #[test]
    fn layers_are_gzipped_tars_with_matching_diff_ids_and_sizes() {
        for size in [0, 1, 1000, 4 * KIB, 8 * KIB, 64 * KIB, 300 * KIB, MIB + 3] {
            let spec = LayerSpec { seed: 42, size };
            let (blob, info) = generate_layer(&spec);
            assert_eq!(info.size, blob.len() as u64);
            assert_eq!(info.digest, Digest::sha256_of(&blob));
            let (entries, diff_id) = decode(&blob);
            assert_eq!(diff_id, info.diff_id);
            let files = entries
                .iter()
                .filter(|e| e.1 == tar::EntryType::Regular)
                .count();
            assert!(files >= 2, "{entries:?}");
            let mut sorted = entries.clone();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(sorted, entries, "entries are sorted");
            for e in &entries {
                let want = if e.1 == tar::EntryType::Directory {
                    0o755
                } else {
                    0o644
                };
                assert_eq!(e.3, want, "{e:?}");
            }
            if size >= 4 * KIB {
                let diff = (blob.len() as i64 - size as i64).unsigned_abs() as usize;
                assert!(
                    diff <= 256 + size / 1000,
                    "{size} bytes asked, {} made",
                    blob.len()
                );
            }
        }
    }

    #[test]
    fn big_layers_are_split_into_files_that_fill_the_budget() {
        for size in [20 * MIB, 1024 * MIB] {
            let entries = layer_entries(&LayerSpec { seed: 5, size });
            let lens: Vec<u64> = entries
                .iter()
                .filter_map(|e| match e.kind {
                    EntryKind::Random(n) => Some(n),
                    _ => None,
                })
                .collect();
            assert!(lens.len() > size / (16 * MIB), "{}", lens.len());
            let total: u64 = lens.iter().sum();
            assert!(total <= size as u64 && total + size as u64 / 500 >= size as u64);
            assert!(lens.iter().all(|n| *n <= 64 * MIB as u64));
        }
    }

    #[test]
    fn different_specs_give_different_layers() {
        let a = generate_layer(&LayerSpec {
            seed: 1,
            size: 10_000,
        })
        .1;
        let b = generate_layer(&LayerSpec {
            seed: 2,
            size: 10_000,
        })
        .1;
        let c = generate_layer(&LayerSpec {
            seed: 1,
            size: 10_001,
        })
        .1;
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        assert_ne!(a.diff_id, b.diff_id);
    }

    #[test]
    fn configs_are_oci_image_configs() {
        for img in generate_all(&azureml_images("eastus", Scale::Fixture)) {
            let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
            assert_eq!(config["architecture"], "amd64");
            assert_eq!(config["os"], "linux");
            assert_eq!(config["rootfs"]["type"], "layers");
            let diff_ids: Vec<_> = config["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string())
                .collect();
            let want: Vec<_> = img.layers.iter().map(|l| decode(l).1.to_string()).collect();
            assert_eq!(diff_ids, want);
            assert_eq!(
                config["history"].as_array().unwrap().len(),
                img.layers.len()
            );
            assert!(config["config"]["Env"].is_array());
            let manifest: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
            assert_eq!(manifest["schemaVersion"], 2);
            assert_eq!(manifest["mediaType"], OCI_MANIFEST);
            assert_eq!(manifest["config"]["digest"], img.config_digest.to_string());
            assert_eq!(manifest["config"]["size"], img.config.len());
            assert_eq!(
                manifest["layers"].as_array().unwrap().len(),
                img.layers.len()
            );
            assert_eq!(img.manifest_digest, Digest::sha256_of(&img.manifest));
        }
    }

    #[test]
    fn azureml_images_share_exactly_one_layer() {
        for scale in [Scale::Fixture, Scale::Bench] {
            let specs = azureml_images("eastus", scale);
            assert_eq!(specs.len(), 6);
            let names: Vec<_> = specs.iter().map(|s| s.repository.as_str()).collect();
            assert_eq!(names, AZUREML_REPOSITORIES);
            assert!(specs.iter().all(|s| s.tag == "eastus-stable"));
            let mut count: HashMap<LayerSpec, usize> = HashMap::new();
            for s in &specs {
                assert!((2..=6).contains(&s.layers.len()));
                for l in &s.layers {
                    *count.entry(*l).or_default() += 1;
                }
            }
            let shared: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
            assert_eq!(shared.len(), 1, "{shared:?}");
            assert_eq!(*shared[0].1, 6);
        }
        // By digest, on the generated fixtures.
        let imgs = generate_all(&azureml_images("eastus", Scale::Fixture));
        let mut count: HashMap<&Digest, usize> = HashMap::new();
        for i in &imgs {
            for l in &i.layer_info {
                *count.entry(&l.digest).or_default() += 1;
            }
        }
        let shared: Vec<_> = count.values().filter(|n| **n > 1).collect();
        assert_eq!(shared, vec![&6]);
        let total: u64 = unique_layers(&azureml_images("eastus", Scale::Fixture))
            .iter()
            .map(|l| l.size as u64)
            .sum();
        assert!(total < 512 * KIB as u64, "{total}");
    }

    #[test]
    fn bench_scenarios_match_issue_8() {
        let unique = |specs: &[ImageSpec]| -> (usize, usize) {
            let u = unique_layers(specs);
            (u.len(), u.iter().map(|l| l.size).sum())
        };
        let az = azureml();
        assert_eq!(az.len(), 12);
        let (_, bytes) = unique(&az);
        assert_eq!(bytes, 940 * MIB);
        for s in &az {
            let own = &s.layers[1..];
            assert!((3..=5).contains(&own.len()));
            assert!(own.iter().all(|l| (5 * MIB..=60 * MIB).contains(&l.size)));
            assert_eq!(s.layers[0].size, 30 * MIB);
        }
        let up = update();
        assert_eq!(
            up.ref_name(),
            "exe/execution-wrapper/installed:eastus-stable"
        );
        let mut all = az.clone();
        all.push(up.clone());
        assert_eq!(unique(&all).1, 960 * MIB);

        let big = big_index();
        assert_eq!(big.images.len(), 2);
        assert_eq!(unique(&big.images).1, 2560 * MIB);

        let many = many();
        assert_eq!(many.len(), 120);
        let (layers, bytes) = unique(&many);
        assert_eq!(layers + many.len(), 294, "blobs, configs included");
        assert!(
            (170 * MIB..=190 * MIB).contains(&bytes),
            "{} MiB",
            bytes / MIB
        );
        let repos: HashSet<_> = many.iter().map(|s| &s.repository).collect();
        assert_eq!(repos.len(), 40);
        for s in &many {
            assert_eq!(s.layers.len(), 4);
            assert!(s
                .layers
                .iter()
                .all(|l| (64 * KIB..=2 * MIB).contains(&l.size)));
        }
    }

    #[test]
    fn index_names_its_platforms() {
        let spec = IndexSpec {
            repository: "multi/arch".into(),
            tag: "v1".into(),
            images: ["amd64", "arm64"]
                .iter()
                .enumerate()
                .map(|(i, a)| ImageSpec {
                    platform: ("linux".into(), a.to_string()),
                    ..ImageSpec::new(
                        "multi/arch",
                        a,
                        vec![
                            LayerSpec {
                                seed: 9,
                                size: 2000,
                            },
                            LayerSpec {
                                seed: 10 + i as u64,
                                size: 3000,
                            },
                        ],
                    )
                })
                .collect(),
        };
        let idx = generate_index(&spec);
        let json: serde_json::Value = serde_json::from_slice(&idx.manifest).unwrap();
        assert_eq!(json["mediaType"], OCI_INDEX);
        let m = json["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1]["platform"]["architecture"], "arm64");
        assert_eq!(m[1]["digest"], idx.images[1].manifest_digest.to_string());

        // In memory and streamed layouts are the same bytes.
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let imgs = generate_all(&azureml_images("westus", Scale::Fixture)[..2]);
        let ea = write_layout_with_indexes(a.path(), &imgs, std::slice::from_ref(&idx)).unwrap();
        let eb = write_layout_streaming(
            b.path(),
            &azureml_images("westus", Scale::Fixture)[..2],
            &[spec],
        )
        .unwrap();
        assert_eq!(ea, eb);
        assert_eq!(tree(a.path()), tree(b.path()));
        let raw = skopeo_raw(&format!("oci:{}:multi/arch:v1", a.path().display()));
        assert_eq!(raw, idx.manifest.to_vec());
    }

    /// Every file under `dir` (relative path → bytes), temporary names excluded.
    fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    fn committed_fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/azureml")
    }

    #[test]
    fn committed_fixtures_match_the_generator() {
        let dir = tempfile::tempdir().unwrap();
        write_azureml_fixtures(dir.path()).unwrap();
        let fresh = tree(dir.path());
        let committed = tree(&committed_fixtures());
        let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&fresh),
            "fixtures/azureml is out of date: regenerate it with \
             `cargo run -p mirror-tests --bin make-fixtures -- fixtures/azureml`"
        );
        for (name, bytes) in &fresh {
            assert!(
                committed[name] == *bytes,
                "fixtures/azureml/{name} differs from the generator's output: regenerate it with \
                 `cargo run -p mirror-tests --bin make-fixtures -- fixtures/azureml`"
            );
        }
        // And the in-memory path writes the same layout.
        let mem = tempfile::tempdir().unwrap();
        write_layout(
            mem.path(),
            &generate_all(&azureml_images(FIXTURE_REGION, Scale::Fixture)),
        )
        .unwrap();
        assert_eq!(tree(mem.path()), fresh);
        // Blobs are stored once: 6 configs + 6 manifests + 1 base + 13 own layers.
        let blobs = fresh
            .keys()
            .filter(|k| k.starts_with("blobs/sha256/"))
            .count();
        assert_eq!(blobs, 6 + 6 + 1 + 13);
        let index: serde_json::Value = serde_json::from_slice(&fresh["index.json"]).unwrap();
        let mut names: Vec<_> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let mut want: Vec<_> = AZUREML_REPOSITORIES
            .iter()
            .map(|r| format!("{r}:eastus-stable"))
            .collect();
        want.sort();
        assert_eq!(names, want, "index.json is sorted by name");
        names.dedup();
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn peer_tools_read_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let specs = azureml_images(FIXTURE_REGION, Scale::Fixture);
        write_azureml_fixtures(dir.path()).unwrap();
        let img = generate(&specs[0]);

        let raw = skopeo_raw(&format!("oci:{}:{}", dir.path().display(), img.ref_name()));
        assert_eq!(raw, img.manifest.to_vec());

        // Without --raw skopeo reads and parses the config too.
        let reference = format!("oci:{}:{}", dir.path().display(), specs[2].ref_name());
        let info: serde_json::Value =
            serde_json::from_slice(&run_peer("skopeo", &["inspect", &reference])).unwrap();
        assert_eq!(info["Architecture"], "amd64");
        assert_eq!(info["Os"], "linux");
        assert_eq!(
            info["Layers"].as_array().unwrap().len(),
            specs[2].layers.len()
        );

        let mut listed: Vec<_> = umoci_ls(dir.path()).lines().map(str::to_string).collect();
        listed.sort();
        let mut want: Vec<_> = specs.iter().map(ImageSpec::ref_name).collect();
        want.sort();
        assert_eq!(listed, want);

        // umoci unpacks the layers and checks their diff_ids against the config.
        let bundle = tempfile::tempdir().unwrap();
        let image = format!("{}:{}", dir.path().display(), specs[1].ref_name());
        let target = bundle.path().join("b");
        run_peer(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &image,
                target.to_str().unwrap(),
            ],
        );
        assert!(bundle
            .path()
            .join("b/rootfs/etc/fixture")
            .join(format!("{:016x}.txt", AZUREML_BASE_SEED))
            .is_file());
    }

    #[tokio::test]
    async fn push_and_push_layout_land_in_a_real_registry() -> anyhow::Result<()> {
        crate::init_tracing();
        let registry = crate::Registry::start_open().await?;
        let host = registry.host();
        let client = crate::images::client(&host, None);
        let imgs = generate_all(&azureml_images(FIXTURE_REGION, Scale::Fixture));

        let stats = push(&client, &host, &imgs).await?;
        assert_eq!(stats.manifests, 6);
        assert_eq!(
            stats.blobs_pushed,
            6 + 6 + 13,
            "base pushed into each repository"
        );
        let again = push(&client, &host, &imgs).await?;
        assert_eq!(again.blobs_pushed, 0);
        assert_eq!(again.blobs_present, 6 * 2 + 13);

        for img in &imgs {
            let reference =
                registry_client::Reference::parse(&format!("{host}/{}", img.ref_name()))?;
            let got = client.get_manifest(&reference).await?;
            assert_eq!(got.digest, img.manifest_digest);
            assert_eq!(got.bytes, img.manifest);
        }

        // An index through a streamed layout.
        let spec = IndexSpec {
            repository: "multi/arch".into(),
            tag: "v1".into(),
            images: ["amd64", "arm64"]
                .iter()
                .map(|a| ImageSpec {
                    platform: ("linux".into(), a.to_string()),
                    ..ImageSpec::new(
                        "multi/arch",
                        a,
                        vec![LayerSpec {
                            seed: 77,
                            size: 300 * KIB,
                        }],
                    )
                })
                .collect(),
        };
        let dir = tempfile::tempdir()?;
        write_layout_streaming(dir.path(), &[], std::slice::from_ref(&spec))?;
        let stats = push_layout(&client, &host, dir.path()).await?;
        assert_eq!(stats.manifests, 3);
        assert_eq!(stats.blobs_pushed, 3, "one shared layer, two configs");
        let idx = generate_index(&spec);
        let reference = registry_client::Reference::parse(&format!("{host}/multi/arch:v1"))?;
        let got = client.get_manifest(&reference).await?;
        assert_eq!(got.digest, idx.manifest_digest);
        let stats = push_index(&client, &host, &idx).await?;
        assert_eq!(stats.blobs_pushed, 0);
        Ok(())
    }
}
