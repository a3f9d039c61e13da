//! Reading an archive: the tar indexed once when opened, refusing hostile
//! or malformed entries by name; blobs then served by seeking to their
//! entry, verified as they stream (see the module documentation).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use registry_client::{media_type, Descriptor, Digest, Manifest, Verifier, MAX_MANIFEST_SIZE};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::docker::{check_manifest_json, MANIFEST_JSON, REPOSITORIES};
use super::tar::{
    blob_digest, blob_name, clean_name, pax_overrides, round_up, PaxOverrides, Span, MAX_LONG_NAME,
    MAX_PAX_HEADER,
};
use super::OMITTED_BLOBS;
use crate::store::oci_index::{
    layout_version, referrer_entries, referrers_of, stored_manifest, Holder, OciIndex,
    ReferrerCache, LAYOUT_VERSION, MAX_INDEX_SIZE,
};
use crate::store::{BlobStream, ImageRef, ImageSource, Store, StoreError, StoreId};

const READ_CHUNK: usize = 256 * 1024;
use crate::limits::MAX_TAR_TAIL as MAX_TAIL;

/// An archive opened for reading: a copy source. Indexed and checked once
/// when opened; holds no open file.
#[derive(Debug)]
pub struct ArchiveReader {
    id: StoreId,
    path: PathBuf,
    canonical: PathBuf,
    blobs: HashMap<Digest, Span>,
    index: OciIndex,
    omitted: BTreeSet<Digest>,
    /// What each unnamed entry's manifest refers to (read when asked).
    referrer_cache: ReferrerCache,
}

impl ArchiveReader {
    /// Index the archive at `path`, refusing hostile or malformed content,
    /// within the run's `archive-entries` limit.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_bounded(path, crate::limits::get().archive_entries)
    }

    /// [`ArchiveReader::open`], refusing more than `max_entries` entries.
    pub fn open_bounded(path: impl AsRef<Path>, max_entries: usize) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let canonical = StoreError::canonical(&path, "OCI archive")?;
        let refuse = |entry: &str, reason: String| {
            StoreError::invalid(format!("{}: entry {entry:?}", path.display()), reason)
        };
        let io_err = |e: io::Error| StoreError::io(format!("reading {}", path.display()), e);
        let file = fs::File::open(&canonical).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut archive = ::tar::Archive::new(file);
        let mut spans: HashMap<String, Span> = HashMap::new();
        let mut duplicates: Vec<(Span, Span)> = Vec::new();
        let mut end = 0u64;
        let mut count = 0usize;
        // Raw: GNU long-name and PAX headers come as entries of their own,
        // read here with a bound and counted, not buffered whole by `tar`.
        let entries = archive.entries_with_seek().map_err(io_err)?.raw(true);
        // What the extended headers before an entry say of it.
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax = PaxOverrides::default();
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                StoreError::invalid(
                    path.display().to_string(),
                    format!("not a readable tar archive: {e}"),
                )
            })?;
            count += 1;
            if count > max_entries {
                return Err(StoreError::invalid(
                    path.display().to_string(),
                    format!(
                        "holds more than {max_entries} entries ({})",
                        registry_client::limits::reached("archive-entries", max_entries)
                    ),
                ));
            }
            let header_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let offset = entry.raw_file_position();
            let size = entry.size();
            match offset.checked_add(size) {
                Some(e) if e <= file_len => end = end.max(offset + round_up(size)),
                _ => {
                    return Err(refuse(
                        &header_name,
                        format!("claims {size} bytes, but the archive ends at byte {file_len}"),
                    ))
                }
            }
            let mut extension = |what: &str, max: u64| -> Result<Vec<u8>, StoreError> {
                if size > max {
                    return Err(refuse(
                        &header_name,
                        format!("{what} of {size} bytes (at most {max})"),
                    ));
                }
                let mut data = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(io_err)?;
                Ok(data)
            };
            match kind {
                tar::EntryType::GNULongName => {
                    let mut data = extension("a GNU long name", MAX_LONG_NAME)?;
                    while data.last() == Some(&0) {
                        data.pop();
                    }
                    long_name = Some(data);
                    continue;
                }
                tar::EntryType::XHeader => {
                    let data = extension("a PAX header", MAX_PAX_HEADER)?;
                    pax = pax_overrides(&data).map_err(|r| refuse(&header_name, r))?;
                    continue;
                }
                tar::EntryType::XGlobalHeader => {
                    // Global headers (git archive's comment) change nothing here.
                    extension("a PAX global header", MAX_PAX_HEADER)?;
                    continue;
                }
                _ => {}
            }
            let raw = match (pax.path.take(), long_name.take()) {
                (Some(path), _) | (None, Some(path)) => path,
                (None, None) => entry.path_bytes().into_owned(),
            };
            let name = String::from_utf8_lossy(&raw).into_owned();
            if let Some(claimed) = pax.size.take() {
                if claimed != size {
                    return Err(refuse(
                        &name,
                        format!("a PAX header gives {claimed} bytes, its tar header {size}"),
                    ));
                }
            }
            if std::str::from_utf8(&raw).is_err() {
                return Err(refuse(&name, "the name is not UTF-8".into()));
            }
            let clean = clean_name(&name).map_err(|r| refuse(&name, r))?;
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Directory => {
                    if matches!(clean.as_str(), "" | "blobs")
                        || clean
                            .strip_prefix("blobs/")
                            .is_some_and(|a| a == "sha256" || a == "sha512")
                    {
                        continue;
                    }
                    return Err(refuse(
                        &name,
                        "a directory that is no part of an OCI layout".into(),
                    ));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    return Err(refuse(
                        &name,
                        "is a link; archives must hold only files".into(),
                    ))
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    return Err(refuse(
                        &name,
                        "is a device or fifo; archives must hold only files".into(),
                    ))
                }
                other => {
                    return Err(refuse(
                        &name,
                        format!("has the unsupported entry type {other:?}"),
                    ))
                }
            }
            // Docker's files too: a bundle for `docker load`, or what
            // `docker save` (25 and later) writes.
            let known = clean == "index.json"
                || clean == "oci-layout"
                || clean == MANIFEST_JSON
                || clean == REPOSITORIES
                || blob_digest(&clean).is_some();
            if !known {
                return Err(refuse(
                    &name,
                    "is not index.json, oci-layout, blobs/<alg>/<hex> or docker's manifest.json or repositories".into(),
                ));
            }
            let span = Span {
                name: name.clone(),
                offset,
                size,
            };
            match spans.get(&clean) {
                Some(first) => duplicates.push((first.clone(), span)),
                None => {
                    spans.insert(clean, span);
                }
            }
        }
        drop(archive);
        let mut file = fs::File::open(&canonical).map_err(io_err)?;
        // After the last entry: the end blocks and padding, all zero.
        let tail = file_len.saturating_sub(end);
        if tail > MAX_TAIL {
            return Err(StoreError::invalid(
                path.display().to_string(),
                format!("holds {tail} bytes after its last entry (at most {MAX_TAIL} are allowed): larger than its entries claim"),
            ));
        }
        file.seek(SeekFrom::Start(end)).map_err(io_err)?;
        let mut rest = Vec::new();
        (&mut file)
            .take(tail)
            .read_to_end(&mut rest)
            .map_err(io_err)?;
        if rest.iter().any(|&b| b != 0) {
            return Err(StoreError::invalid(
                path.display().to_string(),
                format!("holds data after its last entry (from byte {end})"),
            ));
        }
        for (first, second) in &duplicates {
            let same = first.size == second.size
                && first.hash(&mut file).map_err(io_err)?
                    == second.hash(&mut file).map_err(io_err)?;
            if !same {
                return Err(refuse(
                    &second.name,
                    "appears twice with different content".into(),
                ));
            }
        }
        let small = |file: &mut fs::File, name: &str| -> Result<Vec<u8>, StoreError> {
            let span = spans.get(name).ok_or_else(|| {
                StoreError::invalid(
                    path.display().to_string(),
                    format!("has no {name}: it is no OCI archive"),
                )
            })?;
            if span.size > MAX_INDEX_SIZE {
                return Err(refuse(
                    &span.name,
                    format!("has {} bytes (at most {MAX_INDEX_SIZE})", span.size),
                ));
            }
            span.read(file).map_err(io_err)
        };
        let layout = small(&mut file, "oci-layout")?;
        let version = layout_version(&layout).ok().flatten();
        if version.as_deref() != Some(LAYOUT_VERSION) {
            return Err(refuse(
                "oci-layout",
                format!("imageLayoutVersion is {version:?}, not {LAYOUT_VERSION:?}"),
            ));
        }
        let index_bytes = small(&mut file, "index.json")?;
        let index_label = format!("{}: entry \"index.json\"", path.display());
        let index = OciIndex::parse(&index_label, &index_bytes)?;
        let omitted = omitted_blobs(&index_bytes).map_err(|r| refuse("index.json", r))?;
        // Read only to check it points at what the archive holds.
        let docker = match spans.contains_key(MANIFEST_JSON) {
            true => Some(small(&mut file, MANIFEST_JSON)?),
            false => None,
        };
        let mut blobs = HashMap::new();
        for (clean, span) in spans {
            if let Some(d) = blob_digest(&clean) {
                blobs.insert(d, span);
            }
        }
        if let Some(bytes) = docker {
            check_manifest_json(&bytes, |d| blobs.contains_key(d))
                .map_err(|r| refuse(MANIFEST_JSON, r))?;
        }
        for d in index.entries() {
            if !d.urls.is_empty() {
                return Err(refuse(
                    "index.json",
                    format!("points outside the bundle: {} has urls", d.digest),
                ));
            }
            match blobs.get(&d.digest) {
                None => {
                    return Err(refuse(
                        "index.json",
                        format!(
                            "points outside the bundle: no entry {} holds {}",
                            blob_name(&d.digest),
                            d.digest
                        ),
                    ))
                }
                Some(s) if s.size != d.size => {
                    return Err(refuse(
                        "index.json",
                        format!(
                            "gives {} a size of {} bytes, but its entry has {}",
                            d.digest, d.size, s.size
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(ArchiveReader {
            id: StoreId::Archive {
                path: path.clone(),
                canonical: canonical.clone(),
            },
            path,
            canonical,
            blobs,
            index,
            omitted,
            referrer_cache: ReferrerCache::default(),
        })
    }

    /// The blobs a delta bundle leaves out (empty for a whole bundle).
    pub fn omitted(&self) -> &BTreeSet<Digest> {
        &self.omitted
    }

    /// The named images in `index.json`, in its order, with their original
    /// references when recorded.
    pub fn names(&self) -> Vec<(String, Descriptor)> {
        self.index.names()
    }

    /// Every referrer the archive holds (an unnamed entry whose manifest
    /// has a subject), with its subject's digest.
    pub async fn referrer_entries(&self) -> Result<Vec<(Digest, Descriptor)>, StoreError> {
        let unnamed = self.index.unnamed().into_iter().cloned().collect();
        referrer_entries(
            &self.holder().index,
            unnamed,
            &self.referrer_cache,
            |d| async move { self.manifest(&d).await },
        )
        .await
    }

    fn entry_context(&self, span: &Span) -> String {
        format!("{}: entry {:?}", self.describe(), span.name)
    }

    /// Who holds the index, for its messages.
    fn holder(&self) -> Holder {
        let store = self.describe();
        Holder {
            index: format!("{store}: entry \"index.json\""),
            store,
            syntax: "oci-archive:PATH:NAME",
        }
    }

    async fn manifest_bytes(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        let span = self.blobs.get(digest).ok_or_else(|| {
            StoreError::NotFound(format!("manifest {digest} in {}", self.describe()))
        })?;
        if span.size > MAX_MANIFEST_SIZE {
            return Err(StoreError::invalid(
                self.entry_context(span),
                format!(
                    "a manifest of {} bytes (at most {MAX_MANIFEST_SIZE})",
                    span.size
                ),
            ));
        }
        let desc = Descriptor::new(media_type::OCTET_STREAM, digest.clone(), span.size);
        let mut stream = self.read_blob(&desc).await?;
        let mut out = BytesMut::with_capacity(span.size as usize);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

/// The digests in `index.json`'s [`OMITTED_BLOBS`] annotation.
pub fn omitted_blobs(index_bytes: &[u8]) -> Result<BTreeSet<Digest>, String> {
    let value: Value = serde_json::from_slice(index_bytes).map_err(|e| e.to_string())?;
    let Some(list) = value
        .pointer("/annotations")
        .and_then(|a| a.get(OMITTED_BLOBS))
    else {
        return Ok(Default::default());
    };
    let list = list
        .as_str()
        .ok_or_else(|| format!("the {OMITTED_BLOBS} annotation is not a string"))?;
    list.split_whitespace()
        .map(|d| {
            Digest::parse(d).map_err(|e| format!("the {OMITTED_BLOBS} annotation lists {d:?}: {e}"))
        })
        .collect()
}

impl Store for ArchiveReader {
    fn id(&self) -> &StoreId {
        &self.id
    }
}

#[async_trait::async_trait]
impl ImageSource for ArchiveReader {
    async fn resolve(&self, reference: &ImageRef) -> Result<Manifest, StoreError> {
        if let ImageRef::Digest(d) = reference {
            return self.manifest(d).await;
        }
        let desc = self.index.pick(reference, &self.holder())?.clone();
        let bytes = self.manifest_bytes(&desc.digest).await?;
        Ok(Manifest {
            media_type: desc.media_type,
            digest: desc.digest,
            bytes,
        })
    }

    async fn resolve_digest(&self, reference: &ImageRef) -> Result<Option<Digest>, StoreError> {
        match reference {
            ImageRef::Digest(d) => Ok(self.blobs.contains_key(d).then(|| d.clone())),
            _ => Ok(self
                .index
                .find(reference, &self.holder())?
                .map(|d| d.digest.clone())),
        }
    }

    async fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        Ok(stored_manifest(digest, self.manifest_bytes(digest).await?))
    }

    async fn read_blob(&self, desc: &Descriptor) -> Result<BlobStream, StoreError> {
        let span = self
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| {
                StoreError::NotFound(format!("blob {} in {}", desc.digest, self.describe()))
            })?
            .clone();
        let context = self.entry_context(&span);
        if span.size != desc.size {
            return Err(StoreError::invalid(
                context,
                format!(
                    "has {} bytes, but the descriptor of {} says {}",
                    span.size, desc.digest, desc.size
                ),
            ));
        }
        let mut file = tokio::fs::File::open(&self.canonical)
            .await
            .map_err(|e| StoreError::io(format!("opening {}", self.path.display()), e))?;
        file.seek(SeekFrom::Start(span.offset))
            .await
            .map_err(|e| StoreError::io(format!("reading {context}"), e))?;
        let state = (
            file.take(span.size),
            Verifier::new(desc.digest.clone(), Some(desc.size)),
            context,
        );
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let (mut file, mut verifier, context) = state?;
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let corrupt = |e: registry_client::Error, context: &str| StoreError::Integrity {
                context: format!("{context} is corrupt"),
                source: Box::new(e),
            };
            match file.read_buf(&mut buf).await {
                Ok(0) => match verifier.finish() {
                    Ok(_) => None,
                    Err(e) => Some((Err(corrupt(e, &context)), None)),
                },
                Ok(_) => match verifier.update(&buf) {
                    Ok(()) => Some((Ok(buf.freeze()), Some((file, verifier, context)))),
                    Err(e) => Some((Err(corrupt(e, &context)), None)),
                },
                Err(e) => Some((Err(StoreError::io(format!("reading {context}"), e)), None)),
            }
        });
        Ok(stream.boxed())
    }

    async fn list_tags(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.names().into_iter().map(|(n, _)| n).collect())
    }

    /// The unnamed entries whose manifest's subject is `subject`.
    async fn referrers(
        &self,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, StoreError> {
        Ok(referrers_of(
            self.referrer_entries().await?,
            subject,
            artifact_types,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::store::oci_index::{to_json, REF_NAME};
    use serde_json::json;

    // ------------------------------------------------ hostile bundles

    /// One raw tar entry: a GNU header with the name bytes as given (no
    /// checks: the point is to write what a careful writer would not).
    fn raw(name: &str, kind: tar::EntryType, data: &[u8], claimed: Option<u64>) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(kind);
        h.set_size(claimed.unwrap_or(data.len() as u64));
        if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(round_up(out.len() as u64) as usize, 0);
        out
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        raw(name, tar::EntryType::Regular, data, None)
    }

    /// A valid bundle's entries: one image `v1` with one layer.
    fn good() -> (Vec<Vec<u8>>, Manifest, Vec<u8>) {
        let (parts, m, layer) = good_parts();
        let entries = parts.iter().map(|(name, data)| file(name, data)).collect();
        (entries, m, layer)
    }

    /// Entries as names and data.
    type Parts = Vec<(String, Vec<u8>)>;

    /// [`good`]'s entries as names and data.
    fn good_parts() -> (Parts, Manifest, Vec<u8>) {
        let layer = b"layer bytes".to_vec();
        let m = manifest_over(&[&layer]);
        let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": m.digest.to_string(), "size": m.bytes.len(), "annotations": {REF_NAME: "v1"}}]});
        let parts = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            (blob_name(&Digest::sha256_of(&layer)), layer.clone()),
            (format!("./{}", blob_name(&m.digest)), m.bytes.to_vec()),
            ("index.json".to_string(), to_json(&index)),
        ];
        (parts, m, layer)
    }

    fn write_tar(dir: &Path, entries: &[Vec<u8>], tail: &[u8]) -> PathBuf {
        let path = dir.join(format!("t{:x}.tar", rand::random::<u32>()));
        let mut bytes = entries.concat();
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes.extend_from_slice(tail);
        fs::write(&path, bytes).unwrap();
        path
    }

    fn refused(path: &Path, needles: &[&str]) {
        let err = ArchiveReader::open(path).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    }

    /// A PAX extended header entry holding `records` (`LEN KEY=VALUE\n`).
    fn pax(kind: tar::EntryType, records: &[(&str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            // The length counts its own digits.
            let mut len = body.len() + 1;
            while (len.to_string().len() + body.len()) != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        raw("PaxHeaders/x", kind, &data, None)
    }

    fn long_name(name: &[u8]) -> Vec<u8> {
        let mut data = name.to_vec();
        data.push(0);
        raw("././@LongLink", tar::EntryType::GNULongName, &data, None)
    }

    #[tokio::test]
    async fn extended_headers_are_bounded_counted_and_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (base, m, _) = good();
        // A PAX path and a GNU long name rename the entry after them.
        let (parts, _, _) = good_parts();
        let renamed: Vec<Vec<u8>> = parts
            .iter()
            .map(|(name, data)| match name.as_str() {
                "index.json" => [
                    pax(tar::EntryType::XHeader, &[("path", "index.json")]),
                    file("not-index", data),
                ]
                .concat(),
                "oci-layout" => [long_name(b"oci-layout"), file("x", data)].concat(),
                _ => file(name, data),
            })
            .collect();
        let r = ArchiveReader::open(write_tar(d, &renamed, &[])).unwrap();
        assert_eq!(r.resolve(&ImageRef::Tag("v1".into())).await.unwrap(), m);

        let with = |extra: Vec<u8>| {
            let mut e = base.clone();
            e.insert(1, extra);
            e
        };
        // Names and headers larger than any valid one are refused unread.
        refused(
            &write_tar(d, &with(long_name(&[b'a'; 8192])), &[]),
            &["a GNU long name of 8193 bytes (at most 4096)"],
        );
        let huge = "p".repeat(70_000);
        refused(
            &write_tar(
                d,
                &with(pax(tar::EntryType::XHeader, &[("comment", &huge)])),
                &[],
            ),
            &["a PAX header of", "(at most 65536)"],
        );
        refused(
            &write_tar(
                d,
                &with(pax(tar::EntryType::XGlobalHeader, &[("comment", &huge)])),
                &[],
            ),
            &["a PAX global header of"],
        );
        // A PAX size that disagrees with the header, and sparse files.
        let mut lying = base.clone();
        lying.insert(1, pax(tar::EntryType::XHeader, &[("size", "5")]));
        refused(&write_tar(d, &lying, &[]), &["a PAX header gives 5 bytes"]);
        refused(
            &write_tar(
                d,
                &with(pax(tar::EntryType::XHeader, &[("GNU.sparse.map", "0,1")])),
                &[],
            ),
            &["sparse"],
        );
        // Extended headers count toward the entry bound.
        let mut many = base.clone();
        for _ in 0..3 {
            many.insert(0, pax(tar::EntryType::XGlobalHeader, &[("comment", "x")]));
        }
        let path = write_tar(d, &many, &[]);
        ArchiveReader::open_bounded(&path, 7).unwrap();
        let err = ArchiveReader::open_bounded(&path, 6)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds more than 6 entries") && err.contains("--limit archive-entries=N"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn hostile_bundles_are_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (base, m, layer) = good();
        // The valid one opens and reads.
        let ok = write_tar(d, &base, &[]);
        let r = ArchiveReader::open(&ok).unwrap();
        assert_eq!(r.resolve(&ImageRef::Tag("v1".into())).await.unwrap(), m);

        let with = |extra: Vec<u8>| {
            let mut e = base.clone();
            e.insert(1, extra);
            e
        };
        refused(
            &write_tar(d, &with(file("../evil", b"x")), &[]),
            &["\"../evil\"", ".."],
        );
        refused(
            &write_tar(d, &with(file("blobs/../../evil", b"x")), &[]),
            &["blobs/../../evil"],
        );
        refused(
            &write_tar(d, &with(file("/etc/cron.d/x", b"x")), &[]),
            &["/etc/cron.d/x", "absolute"],
        );
        refused(
            &write_tar(
                d,
                &with(raw("blobs/sha256/link", tar::EntryType::Symlink, b"", None)),
                &[],
            ),
            &["blobs/sha256/link", "link"],
        );
        refused(
            &write_tar(d, &with(raw("hard", tar::EntryType::Link, b"", None)), &[]),
            &["\"hard\"", "link"],
        );
        refused(
            &write_tar(d, &with(raw("dev", tar::EntryType::Char, b"", None)), &[]),
            &["\"dev\"", "device"],
        );
        refused(
            &write_tar(d, &with(file("run.sh", b"#!/bin/sh")), &[]),
            &["run.sh", "not index.json"],
        );
        // Docker's files are read past (docker save 25 writes them, and
        // --format docker); a manifest.json naming what is not there is refused.
        let docker = format!(
            r#"[{{"Config":"{}","RepoTags":["app:v1"],"Layers":[]}}]"#,
            blob_name(&Digest::sha256_of(&layer))
        );
        let mut both = with(file("manifest.json", docker.as_bytes()));
        both.insert(1, file("repositories", br#"{"app":{"v1":"x"}}"#));
        let r = ArchiveReader::open(write_tar(d, &both, &[])).unwrap();
        assert_eq!(r.resolve(&ImageRef::Tag("v1".into())).await.unwrap(), m);
        let missing = format!(
            r#"[{{"Config":"{}","RepoTags":["app:v1"],"Layers":[]}}]"#,
            blob_name(&Digest::sha256_of(b"not here"))
        );
        refused(
            &write_tar(d, &with(file("manifest.json", missing.as_bytes())), &[]),
            &["manifest.json", "does not hold"],
        );
        // The same name twice with different content; the same content twice is fine.
        let index_again = file("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
        let mut dup = base.clone();
        dup.push(index_again);
        refused(
            &write_tar(d, &dup, &[]),
            &["index.json", "twice with different content"],
        );
        let mut same = base.clone();
        same.push(base[1].clone());
        ArchiveReader::open(write_tar(d, &same, &[])).unwrap();
        // An entry claiming more bytes than the file holds.
        let mut long = base.clone();
        long.push(raw(
            "blobs/sha256/00",
            tar::EntryType::Regular,
            b"abc",
            Some(1 << 40),
        ));
        let path = d.join("long.tar");
        fs::write(&path, long.concat()).unwrap();
        refused(&path, &["blobs/sha256/00", "claims 1099511627776 bytes"]);
        // Far larger than its entries: data after the end.
        refused(
            &write_tar(d, &base, &vec![0u8; 1 << 20]),
            &["after its last entry"],
        );
        refused(
            &write_tar(d, &base, b"hidden"),
            &["data after its last entry"],
        );
        // index.json naming a manifest that is not in the bundle.
        let mut outside = base.clone();
        let ghost = Digest::sha256_of(b"ghost");
        outside[3] = file(
            "index.json",
            &to_json(
                &json!({"schemaVersion": 2, "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": ghost.to_string(), "size": 5}]}),
            ),
        );
        refused(
            &write_tar(d, &outside, &[]),
            &["index.json", "points outside the bundle", ghost.hex()],
        );

        // A blob whose content is not its name: refused as it is read, naming the entry.
        let mut forged = base.clone();
        let name = blob_name(&Digest::sha256_of(&layer));
        forged[1] = file(&name, b"LAYER BYTES");
        let r = ArchiveReader::open(write_tar(d, &forged, &[])).unwrap();
        let layer_desc = desc(&layer);
        let err = read_all(r.read_blob(&layer_desc).await.unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), registry_client::ErrorKind::Integrity);
        assert!(err.to_string().contains(&name), "{err}");
        // Nothing was written anywhere: the directory holds only the test's tars.
        assert!(
            listing(d).iter().all(|n| n.ends_with(".tar")),
            "{:?}",
            listing(d)
        );
    }
}
