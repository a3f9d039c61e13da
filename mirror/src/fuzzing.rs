//! Entry points for the fuzz targets under `fuzz/` (feature `fuzzing`;
//! not part of the API). Each takes the raw bytes a registry, a bundle or
//! a file could hand us, feeds them to the parser mirror uses, and asserts
//! what must hold beyond "no panic". Files go to a scratch directory of
//! this process under `$TMPDIR`; nothing touches the network.
//!
//! Some inputs are templates, so that a fuzzer can build what it could
//! never guess (a digest, the size of another manifest); each function
//! says which.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use futures::StreamExt;
use registry_client::{Descriptor, Digest, Manifest, Repository, Url};

use crate::graph::{self, Bounds, ManifestReader, Selection, StoreReader};
use crate::platform::PlatformFilter;
use crate::state::spool::Spools;
use crate::state::uploads::UploadJournal;
use crate::store::archive::ArchiveReader;
use crate::store::oci_index::{stored_manifest, Holder, OciIndex, REF_NAME};
use crate::store::{ImageRef, ImageSource, StoreError};

/// A directory of this process's own, created once.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mirror-fuzz-{}", std::process::id()));
        // The fuzz harness's own set-up, before any input is read: a
        // machine that cannot make a temporary directory cannot fuzz.
        std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
        dir
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // Set-up of the harness, independent of any input.
            .expect("a tokio runtime")
    })
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn split<'a>(data: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(separator.len()).position(|w| w == separator) {
        out.push(&rest[..i]);
        rest = &rest[i + separator.len()..];
    }
    out.push(rest);
    out
}

/// `needle` in `haystack` replaced by `with`.
fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let parts = split(haystack, needle);
    parts.join(with)
}

// ------------------------------------------------------------ image graph

/// Manifests after the first [`GRAPH_SEPARATOR`].
const GRAPH_SEPARATOR: &[u8] = b"\n----\n";
const GRAPH_MANIFESTS: usize = 16;
const GRAPH_BOUNDS: Bounds = Bounds {
    depth: 3,
    manifests: 8,
    blobs: 16,
    blob_bytes: 1 << 40,
};

/// The digest manifest `i` of a graph input is stored under. Not the hash
/// of its bytes: the store lies, as a hostile one may, and lets manifests
/// name each other (and themselves) in cycles.
fn graph_digest(i: usize) -> Digest {
    Digest::sha256_of(format!("fuzz manifest {i}").as_bytes())
}

/// `@a`..`@p` become the digest of manifest 0..15, `#a`..`#p` its size
/// (right-aligned in 20 columns: JSON allows the spaces, and the width
/// does not depend on the value).
fn graph_expand(chunk: &[u8], count: usize, sizes: Option<&[usize]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut i = 0;
    while i < chunk.len() {
        let b = chunk[i];
        let target = chunk
            .get(i + 1)
            .filter(|c| (b'a'..b'a' + GRAPH_MANIFESTS as u8).contains(c))
            .map(|c| (c - b'a') as usize)
            .filter(|&t| t < count);
        match (b, target) {
            (b'@', Some(t)) => {
                out.extend_from_slice(graph_digest(t).to_string().as_bytes());
                i += 2;
            }
            (b'#', Some(t)) => {
                let size = sizes.map(|s| s[t]).unwrap_or(0);
                out.extend_from_slice(format!("{size:>20}").as_bytes());
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

struct GraphStore {
    manifests: HashMap<Digest, Manifest>,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl ManifestReader for GraphStore {
    async fn read_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.manifests
            .get(digest)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("manifest {digest}")))
    }

    /// As the referrers API answers: every manifest naming `subject`.
    async fn referrers(
        &self,
        subject: &Digest,
        _artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        Ok(self
            .manifests
            .values()
            .filter(|m| {
                m.content()
                    .ok()
                    .and_then(|c| c.subject)
                    .is_some_and(|s| &s.digest == subject)
            })
            .map(|m| Descriptor::new(m.media_type.clone(), m.digest.clone(), m.bytes.len() as u64))
            .collect())
    }

    async fn tagged(&self, _tag: &str) -> Result<Option<Manifest>, StoreError> {
        Ok(None)
    }
}

/// Manifest and index JSON into the image graph. The input is a line of
/// options (platform filters such as `linux/amd64`, `+foreign` and
/// `+referrers`), then
/// up to 16 manifests, each after a `\n----\n`, written with the
/// placeholders of [`graph_expand`]; the first is the root. The walk must
/// end within its bounds, every manifest and blob once, the root last.
pub fn graph(data: &[u8]) {
    let mut chunks = split(data, GRAPH_SEPARATOR);
    let options = String::from_utf8_lossy(chunks.remove(0)).into_owned();
    chunks.truncate(GRAPH_MANIFESTS);
    if chunks.is_empty() {
        return;
    }
    let mut selection = Selection::default();
    for word in options.split_whitespace() {
        if word == "+foreign" {
            selection.include_foreign = true;
        } else if word == "+referrers" {
            selection.referrers = Some(Vec::new());
        } else if let Ok(filter) = PlatformFilter::from_str(word) {
            selection.platforms.push(filter);
        }
    }
    let count = chunks.len();
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| graph_expand(c, count, None).len())
        .collect();
    let manifests: Vec<Manifest> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let bytes = graph_expand(c, count, Some(&sizes));
            debug_assert_eq!(bytes.len(), sizes[i]);
            stored_manifest(&graph_digest(i), Bytes::from(bytes))
        })
        .collect();
    for m in &manifests {
        let _ = graph::successors(m);
    }
    let store = GraphStore {
        manifests: manifests
            .iter()
            .map(|m| (m.digest.clone(), m.clone()))
            .collect(),
        reads: AtomicUsize::new(0),
    };
    let jobs = 1 + data.len() % 3;
    let bounds = GRAPH_BOUNDS;
    let walked = runtime().block_on(graph::walk(
        &store,
        manifests[0].clone(),
        &selection,
        &bounds,
        jobs,
    ));
    let reads = store.reads.load(Ordering::SeqCst);
    assert!(reads <= bounds.manifests, "{reads} manifest reads");
    if let Ok(g) = walked {
        assert!(g.manifests.len() <= bounds.manifests);
        assert!(g.blobs.len() <= bounds.blobs);
        // Referrers come after their subject: without them the root is last.
        if selection.referrers.is_none() {
            assert_eq!(
                g.manifests.last().map(|m| &m.digest),
                Some(&g.root.digest),
                "the root comes last"
            );
        } else {
            assert!(g.manifests.iter().any(|m| m.digest == g.root.digest));
        }
        let manifests: HashSet<&Digest> = g.manifests.iter().map(|m| &m.digest).collect();
        assert_eq!(manifests.len(), g.manifests.len(), "a manifest twice");
        let blobs: HashSet<&Digest> = g.blobs.iter().map(|b| &b.digest).collect();
        assert_eq!(blobs.len(), g.blobs.len(), "a blob twice");
    }
}

// ---------------------------------------------------------------- bundles

/// Give every header of a tar its right checksum, so a fuzzer's changes
/// reach the reader instead of stopping at the checksum. Headers are found
/// as a reader finds them: each after the previous entry's data.
fn fix_tar_checksums(tar: &mut [u8]) {
    let mut pos = 0usize;
    while let Some(block) = tar.get_mut(pos..pos + 512) {
        if block.iter().all(|&b| b == 0) {
            break;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let Some(size) = tar_size(&block[124..136]) else {
            break;
        };
        let Some(next) = size
            .checked_add(511)
            .map(|s| s / 512 * 512 + 512)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| pos.checked_add(s))
        else {
            break;
        };
        pos = next;
    }
}

/// A header's size field: octal, or base-256 when the high bit is set.
fn tar_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(256)?.checked_add(u64::from(b)));
    }
    let digits = std::str::from_utf8(field).ok()?;
    let digits = digits.trim_matches(|c| c == '\0' || c == ' ');
    u64::from_str_radix(digits, 8).ok()
}

/// The tar entries of a bundle (`oci-archive:`): the input, its header
/// checksums fixed, is written to a file and opened; then every image it
/// names is resolved and walked, and its blobs read (verified) to the end.
pub fn archive(data: &[u8]) {
    let mut tar = data.to_vec();
    fix_tar_checksums(&mut tar);
    let path = scratch().join("bundle.tar");
    if std::fs::write(&path, &tar).is_err() {
        return;
    }
    runtime().block_on(async {
        let Ok(reader) = ArchiveReader::open(&path) else {
            return;
        };
        let _ = reader.omitted();
        let _ = reader.list_tags().await;
        let mut refs = vec![ImageRef::Only];
        refs.extend(
            reader
                .names()
                .into_iter()
                .take(4)
                .map(|(name, _)| ImageRef::Tag(name)),
        );
        for r in refs {
            let _ = reader.resolve_digest(&r).await;
            let Ok(root) = reader.resolve(&r).await else {
                continue;
            };
            let walked = graph::walk(
                &StoreReader(&reader),
                root,
                &Selection::default(),
                &GRAPH_BOUNDS,
                2,
            )
            .await;
            let Ok(g) = walked else { continue };
            for blob in g.blobs.iter().take(16) {
                if let Ok(mut stream) = reader.read_blob(blob).await {
                    while let Some(chunk) = stream.next().await {
                        if chunk.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let _ = std::fs::remove_file(&path);
}

// ------------------------------------------------------------- index.json

/// A layout's or bundle's `index.json`: looked up by every name it gives,
/// then edited as a layout target edits it; what is written back parses
/// again with the same entries.
pub fn oci_index(data: &[u8]) {
    let Ok(mut index) = OciIndex::parse("fuzz/index.json", data) else {
        return;
    };
    let holder = Holder {
        store: "oci:fuzz".into(),
        index: "fuzz/index.json".into(),
        syntax: "oci:PATH:NAME",
    };
    let _ = index.list_names();
    let _ = index.pick(&ImageRef::Only, &holder);
    for (name, desc) in index.names().into_iter().take(8) {
        if let Ok(Some(found)) = index.find(&ImageRef::Tag(name.clone()), &holder) {
            assert_eq!(found.annotations.get(REF_NAME), Some(&name));
        }
        let _ = index.pick(&ImageRef::Digest(desc.digest), &holder);
    }
    let bytes = Bytes::from_static(b"{\"schemaVersion\":2}");
    let manifest = stored_manifest(&Digest::sha256_of(&bytes), bytes);
    index.set_name("fuzz:latest", &manifest, BTreeMap::new());
    index.sort_by_name();
    index.annotate("org.example.fuzz", "1".into());
    let again = OciIndex::parse("fuzz/index.json (rewritten)", &index.to_bytes())
        .unwrap_or_else(|e| panic!("an index we write does not parse: {e}"));
    assert_eq!(again.entries(), index.entries());
    let found = again.find(&ImageRef::Tag("fuzz:latest".into()), &holder);
    assert!(
        matches!(found, Ok(Some(d)) if d.digest == manifest.digest),
        "the name just given is not found: {found:?}"
    );
}

// ---------------------------------------------------------- sync configs

const CONFIG_PATH: &str = "/nonexistent/mirror-fuzz/sync.yaml";

/// `mirror sync` YAML. An error names the file.
pub fn sync_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match crate::sync::config::parse(text, Path::new(CONFIG_PATH)) {
        Ok(config) => {
            let _ = config.client_settings();
        }
        Err(e) => assert_eq!(e.file, CONFIG_PATH, "{e}"),
    }
}

/// A skopeo sync YAML file, under a registry and a layout target. An
/// error names the file.
pub fn skopeo_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for target in ["r.example/mirror", "oci:/nonexistent/mirror-fuzz/layout"] {
        match crate::sync::skopeo::parse(text, Path::new(CONFIG_PATH), target) {
            Ok(config) => {
                let _ = config.client_settings();
            }
            Err(e) => assert_eq!(e.file, CONFIG_PATH, "{e}"),
        }
    }
}

// ------------------------------------------------------- state directory

/// A spool's checkpoint and data file, as a crash, a full disk or another
/// hand may leave them. The input is the checkpoint (its first line, where
/// `@D` and `@S` stand for the blob's digest and size), an optional second
/// line `DIGEST SIZE` for the blob (default: the data's), and the data
/// file. What the spool trusts is never more than the blob or the file.
pub fn spool_state(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let checkpoint = parts.next().unwrap_or_default();
    let blob_line = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let content = parts.next().unwrap_or_default();
    let mut words = blob_line.split_whitespace();
    let digest = words
        .next()
        .and_then(|d| Digest::parse(d).ok())
        .unwrap_or_else(|| Digest::sha256_of(content));
    let size = words
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(content.len() as u64);
    let desc = Descriptor::new("application/octet-stream", digest.clone(), size);
    let checkpoint = replace(checkpoint, b"@D", digest.to_string().as_bytes());
    let checkpoint = replace(&checkpoint, b"@S", size.to_string().as_bytes());

    let dir = scratch().join("downloads");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let stem = format!("{}-{}", digest.algorithm().name(), digest.hex());
    let written = std::fs::write(dir.join(format!("{stem}.json")), &checkpoint)
        .and_then(|()| std::fs::write(dir.join(format!("{stem}.data")), content));
    if written.is_err() {
        return;
    }
    let spools = Spools::new(dir, 0);
    let Some(spool) = spools.claim(&desc) else {
        panic!("a spool claimed twice");
    };
    let held = spool.held();
    assert!(
        held <= size,
        "the spool trusts {held} bytes of a {size}-byte blob"
    );
    assert!(
        held <= content.len() as u64,
        "the spool trusts {held} bytes of a {}-byte file",
        content.len()
    );
    spool.finish();
}

/// An upload session record (`uploads/*.json`). `@R`, `@D` and `@S` in the
/// input stand for the repository, digest and size the record is looked
/// up for. A record is trusted only for what it was asked for.
pub fn upload_state(data: &[u8]) {
    let Ok(repo) = Repository::parse("r.example/fuzz/repo") else {
        return;
    };
    let digest = Digest::sha256_of(b"fuzz blob");
    let size: u64 = 1 << 20;
    let record = replace(data, b"@R", repo.to_string().as_bytes());
    let record = replace(&record, b"@D", digest.to_string().as_bytes());
    let record = replace(&record, b"@S", size.to_string().as_bytes());
    let dir = scratch().join("uploads");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let journal = UploadJournal::new(dir);
    if std::fs::write(journal.path(&repo, &digest), &record).is_err() {
        return;
    }
    if let Some(r) = journal.load(&repo, &digest) {
        assert_eq!(r.repository, repo.to_string());
        assert_eq!(r.digest, digest);
        // What the store does next with a record of the right size.
        if r.size == size {
            let _ = Url::parse(&r.location);
        }
    }
    journal.remove(&repo, &digest);
}
