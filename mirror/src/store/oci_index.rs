//! The OCI image index both on-disk stores keep: `index.json`, whose
//! entries name images with `org.opencontainers.image.ref.name`, and the
//! `oci-layout` marker beside it. A layout directory reads and rewrites it
//! in place; an archive reads it from an entry, or builds one to append.
//!
//! The index is parsed to walk it, but kept and edited as JSON, so the
//! unknown fields and foreign entries of an index another tool wrote
//! survive a rename.
//!
//! Referrers (signatures, SBOMs, attestations: manifests with a `subject`)
//! are kept as oras keeps them in a layout: an entry without a name (its
//! media type, digest, size, `artifactType` and annotations), which plain
//! OCI readers (skopeo, umoci) pass over, since they look images up by
//! name. A layout or archive has no referrers API, so its referrers are
//! found by reading the manifest of each unnamed entry and keeping those
//! whose `subject` is the image asked about.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use registry_client::{media_type, Descriptor, Digest, Manifest};
use serde_json::{json, Value};

use super::{ImageRef, StoreError};

/// The annotation that names an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The only `imageLayoutVersion` there is.
pub(super) const LAYOUT_VERSION: &str = "1.0.0";
/// `index.json` and `oci-layout` are small; larger ones are hostile or broken.
pub(super) use crate::limits::MAX_INDEX_JSON as MAX_INDEX_SIZE;

/// The store an index belongs to, for the messages about it.
pub(crate) struct Holder {
    /// The store, as its `describe` names it (`oci:PATH`).
    pub store: String,
    /// Where the index lies (its file, its archive entry).
    pub index: String,
    /// How a user names one image of the store (`oci:PATH:NAME`).
    pub syntax: &'static str,
}

/// An `index.json`: the document as read, and its entries as descriptors.
#[derive(Debug, Clone)]
pub(crate) struct OciIndex {
    /// The whole document: what an edit does not touch is written back.
    value: Value,
    /// `manifests`, in order, each one valid.
    entries: Vec<Descriptor>,
}

impl Default for OciIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl OciIndex {
    /// An index of no images, as a new layout or bundle starts.
    pub fn new() -> Self {
        OciIndex {
            value: json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": [],
            }),
            entries: Vec::new(),
        }
    }

    /// Parse `bytes` read from `label` (a file, an archive entry), which
    /// every error names: at most [`MAX_INDEX_SIZE`] bytes of JSON, schema
    /// version 2, each entry a valid descriptor.
    pub fn parse(label: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::invalid(label, reason);
        if bytes.len() as u64 > MAX_INDEX_SIZE {
            return Err(bad(format!(
                "has {} bytes (at most {MAX_INDEX_SIZE})",
                bytes.len()
            )));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let top = value
            .as_object()
            .ok_or_else(|| bad("is not a JSON object".into()))?;
        match top.get("schemaVersion").and_then(Value::as_u64) {
            Some(2) => {}
            other => return Err(bad(format!("schemaVersion is {other:?}, not 2"))),
        }
        let entries = match top.get("manifests") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    serde_json::from_value::<Descriptor>(e.clone()).map_err(|err| {
                        bad(format!("manifests[{i}] is not a valid descriptor: {err}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("\"manifests\" is not an array".into())),
        };
        Ok(OciIndex { value, entries })
    }

    /// Every entry, named or not, in order.
    pub fn entries(&self) -> &[Descriptor] {
        &self.entries
    }

    /// The named entries, in order.
    pub fn names(&self) -> Vec<(String, Descriptor)> {
        self.entries
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).map(|n| (n.clone(), d.clone())))
            .collect()
    }

    /// The entries without a name, in order: referrers, and whatever
    /// another tool left unnamed.
    pub fn unnamed(&self) -> Vec<&Descriptor> {
        self.entries
            .iter()
            .filter(|d| !d.annotations.contains_key(REF_NAME))
            .collect()
    }

    /// Keep `entry` (a referrer's descriptor, from
    /// [`Manifest::referrer_descriptor`]) as an entry without a name, last;
    /// `false` when an unnamed entry of that digest is there already.
    pub fn add_unnamed(&mut self, entry: &Descriptor) -> bool {
        if self.unnamed().iter().any(|d| d.digest == entry.digest) {
            return false;
        }
        let mut entry = entry.clone();
        entry.annotations.remove(REF_NAME);
        let value = serde_json::to_value(&entry).expect("a descriptor serialises");
        let mut pairs = self.take_pairs();
        pairs.push((value, entry));
        self.put_pairs(pairs);
        true
    }

    /// Whether the index names any image.
    pub fn has_names(&self) -> bool {
        self.entries
            .iter()
            .any(|d| d.annotations.contains_key(REF_NAME))
    }

    /// The names for messages; unnamed entries by digest.
    pub fn list_names(&self) -> String {
        if self.entries.is_empty() {
            return "none".into();
        }
        self.entries
            .iter()
            .map(|d| match d.annotations.get(REF_NAME) {
                Some(n) => n.clone(),
                None => format!("unnamed {}", d.digest),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The entry `reference` picks, `None` when none does. A name given to
    /// two manifests, and `Only` when there are several, are refused.
    pub fn find(
        &self,
        reference: &ImageRef,
        holder: &Holder,
    ) -> Result<Option<&Descriptor>, StoreError> {
        match reference {
            ImageRef::Tag(name) => {
                let mut hits = self
                    .entries
                    .iter()
                    .filter(|d| d.annotations.get(REF_NAME) == Some(name));
                let Some(first) = hits.next() else {
                    return Ok(None);
                };
                if let Some(other) = hits.find(|d| d.digest != first.digest) {
                    return Err(StoreError::invalid(
                        holder.index.as_str(),
                        format!(
                            "the name {name:?} is given to two manifests ({} and {})",
                            first.digest, other.digest
                        ),
                    ));
                }
                Ok(Some(first))
            }
            // Unnamed entries beside named ones are referrers (or left
            // over): the one named image is the only image.
            ImageRef::Only => {
                let candidates: Vec<&Descriptor> = if self.has_names() {
                    self.entries
                        .iter()
                        .filter(|d| d.annotations.contains_key(REF_NAME))
                        .collect()
                } else {
                    self.entries.iter().collect()
                };
                match candidates.as_slice() {
                    [] => Ok(None),
                    [only] => Ok(Some(only)),
                    many => Err(StoreError::invalid(
                        holder.store.as_str(),
                        format!(
                            "holds {} images ({}); name one with {}",
                            many.len(),
                            self.list_names(),
                            holder.syntax
                        ),
                    )),
                }
            }
            ImageRef::Digest(d) => Ok(self.entries.iter().find(|e| &e.digest == d)),
        }
    }

    /// The entry `reference` picks, or an error saying what there is.
    pub fn pick(&self, reference: &ImageRef, holder: &Holder) -> Result<&Descriptor, StoreError> {
        self.find(reference, holder)?
            .ok_or_else(|| match reference {
                ImageRef::Tag(name) => StoreError::NotFound(format!(
                    "image named {name:?} in {} (names: {})",
                    holder.store,
                    self.list_names()
                )),
                ImageRef::Digest(d) => {
                    StoreError::NotFound(format!("manifest {d} in {}", holder.store))
                }
                ImageRef::Only => StoreError::invalid(holder.store.as_str(), "holds no images"),
            })
    }

    /// Name `manifest` `name` (with `more` annotations beside the name): the
    /// entry that had the name loses it, and the new one comes last.
    pub fn set_name(&mut self, name: &str, manifest: &Manifest, more: BTreeMap<String, String>) {
        let mut annotations = more;
        annotations.insert(REF_NAME.to_string(), name.to_string());
        let entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(),
            "annotations": annotations,
        });
        let mut desc = Descriptor::new(
            manifest.media_type.clone(),
            manifest.digest.clone(),
            manifest.bytes.len() as u64,
        );
        desc.annotations = annotations;

        let mut pairs = self.take_pairs();
        pairs.retain(|(_, d)| d.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        pairs.push((entry, desc));
        self.put_pairs(pairs);
    }

    /// Put the entries in name order (unnamed first), not in the order
    /// images happened to be named.
    pub fn sort_by_name(&mut self) {
        let mut pairs = self.take_pairs();
        pairs.sort_by(|a, b| {
            let name = |d: &Descriptor| d.annotations.get(REF_NAME).cloned();
            name(&a.1).cmp(&name(&b.1))
        });
        self.put_pairs(pairs);
    }

    /// Set a top-level annotation of the index.
    pub fn annotate(&mut self, key: &str, value: String) {
        let top = self.value.as_object_mut().expect("parse checks an object");
        match top.get_mut("annotations").and_then(Value::as_object_mut) {
            Some(annotations) => {
                annotations.insert(key.to_string(), Value::String(value));
            }
            None => {
                top.insert("annotations".into(), json!({ key: value }));
            }
        }
    }

    /// The document as `index.json` holds it.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_json(&self.value)
    }

    /// Each `manifests` element with its descriptor (`entries` mirrors
    /// `manifests` one to one), leaving both empty.
    fn take_pairs(&mut self) -> Vec<(Value, Descriptor)> {
        let list = std::mem::take(self.manifests_mut());
        list.into_iter().zip(self.entries.drain(..)).collect()
    }

    fn put_pairs(&mut self, pairs: Vec<(Value, Descriptor)>) {
        let (list, entries) = pairs.into_iter().unzip();
        *self.manifests_mut() = list;
        self.entries = entries;
    }

    fn manifests_mut(&mut self) -> &mut Vec<Value> {
        let top = self.value.as_object_mut().expect("parse checks an object");
        top.entry("manifests")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("parse checks an array")
    }
}

/// The `oci-layout` file's bytes.
pub(super) fn layout_marker() -> Vec<u8> {
    to_json(&json!({ "imageLayoutVersion": LAYOUT_VERSION }))
}

/// The `imageLayoutVersion` an `oci-layout` file gives (`None` when it
/// gives none, or not as a string).
pub(super) fn layout_version(bytes: &[u8]) -> Result<Option<String>, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    Ok(value
        .get("imageLayoutVersion")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// A manifest read by digest, where no descriptor gives its media type:
/// its own `mediaType`; without one, an index if it lists manifests, else
/// an OCI image manifest.
pub(crate) fn stored_manifest(digest: &Digest, bytes: Bytes) -> Manifest {
    let value: Option<Value> = serde_json::from_slice(&bytes).ok();
    let value = value.as_ref();
    let media_type = match value
        .and_then(|v| v.get("mediaType"))
        .and_then(Value::as_str)
    {
        Some(mt) => mt.to_string(),
        None if value.and_then(|v| v.get("manifests")).is_some() => {
            media_type::OCI_INDEX.to_string()
        }
        None => media_type::OCI_MANIFEST.to_string(),
    };
    Manifest {
        media_type,
        digest: digest.clone(),
        bytes,
    }
}

/// What an unnamed entry's manifest refers to, as [`referrer_entries`]
/// found it: its subject's digest and the descriptor a referrers list
/// gives it. `None`: no referrer (no subject, or not a manifest at all).
type Referrer = Option<(Digest, Descriptor)>;

/// What each unnamed entry's manifest was found to be, by digest (its
/// bytes cannot change under it), so a walk asking about every manifest of
/// every image reads each referrer once.
#[derive(Debug, Default)]
pub(crate) struct ReferrerCache(StdMutex<HashMap<Digest, Referrer>>);

impl ReferrerCache {
    fn get(&self, digest: &Digest) -> Option<Referrer> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    fn put(&self, digest: Digest, found: Referrer) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, found);
    }
}

/// A manifest as a referrer: its subject and its referrers-list descriptor,
/// or `None` when it has no subject (or is no JSON manifest).
pub(crate) fn as_referrer(manifest: &Manifest) -> Referrer {
    let subject = manifest.content().ok()?.subject?;
    let desc = manifest.referrer_descriptor().ok()?;
    Some((subject.digest, desc))
}

/// The referrers among the unnamed entries `unnamed` of `index_label`
/// (each with its subject), their manifests read through `read` (capped
/// and verified by the store). More than `image-manifests` unnamed entries
/// is refused: a bundle cannot make one listing read without end.
pub(crate) async fn referrer_entries<F, Fut>(
    index_label: &str,
    unnamed: Vec<Descriptor>,
    cache: &ReferrerCache,
    read: F,
) -> Result<Vec<(Digest, Descriptor)>, StoreError>
where
    F: Fn(Digest) -> Fut,
    Fut: Future<Output = Result<Manifest, StoreError>>,
{
    let max = crate::limits::get().graph.manifests;
    if unnamed.len() > max {
        return Err(StoreError::invalid(
            index_label,
            format!(
                "holds {} entries without a name (referrers), more than {max} ({})",
                unnamed.len(),
                crate::limits::named("image-manifests", max)
            ),
        ));
    }
    let mut out = Vec::new();
    for entry in unnamed {
        let found = match cache.get(&entry.digest) {
            Some(found) => found,
            None => {
                // The store's error names the file or entry.
                let manifest = read(entry.digest.clone()).await?;
                let found = as_referrer(&manifest);
                cache.put(entry.digest.clone(), found.clone());
                found
            }
        };
        out.extend(found);
    }
    Ok(out)
}

/// Of `entries`, the referrers of `subject` of these artifact types (all
/// when empty), as the referrers API answers.
pub(crate) fn referrers_of(
    entries: Vec<(Digest, Descriptor)>,
    subject: &Digest,
    artifact_types: &[String],
) -> Vec<Descriptor> {
    entries
        .into_iter()
        .filter(|(s, _)| s == subject)
        .map(|(_, d)| d)
        .filter(|d| {
            artifact_types.is_empty()
                || d.artifact_type
                    .as_ref()
                    .is_some_and(|t| artifact_types.contains(t))
        })
        .collect()
}

/// Compact JSON, as every index and marker this crate writes.
pub(super) fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(seed: u8) -> Manifest {
        let bytes = Bytes::from(format!("{{\"schemaVersion\":2,\"seed\":{seed}}}"));
        Manifest {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    fn holder() -> Holder {
        Holder {
            store: "oci:/x".into(),
            index: "/x/index.json".into(),
            syntax: "oci:PATH:NAME",
        }
    }

    #[test]
    fn a_name_moves_and_unknown_fields_stay() {
        let (a, b) = (manifest(1), manifest(2));
        let foreign = json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": a.digest.to_string(),
            "size": a.bytes.len(),
            "annotations": {REF_NAME: "z", "x.custom": "keep"},
            "platform": {"architecture": "arm64", "os": "linux"},
        });
        let text = to_json(&json!({"schemaVersion": 2, "manifests": [foreign], "extra": 1}));
        let mut index = OciIndex::parse("index.json", &text).unwrap();
        index.set_name("v1", &a, BTreeMap::new());
        index.set_name("v1", &b, BTreeMap::from([("k".into(), "v".into())]));
        let names: Vec<(String, Digest)> = index
            .names()
            .into_iter()
            .map(|(n, d)| (n, d.digest))
            .collect();
        assert_eq!(
            names,
            [
                ("z".into(), a.digest.clone()),
                ("v1".into(), b.digest.clone())
            ]
        );
        index.sort_by_name();
        assert_eq!(index.list_names(), "v1, z");
        let back: Value = serde_json::from_slice(&index.to_bytes()).unwrap();
        assert_eq!(back["extra"], 1);
        assert_eq!(back["manifests"][1], foreign);
        assert_eq!(back["manifests"][0]["annotations"]["k"], "v");
        // What it writes parses back to the same entries.
        let again = OciIndex::parse("index.json", &index.to_bytes()).unwrap();
        assert_eq!(again.entries(), index.entries());
    }

    #[test]
    fn find_refuses_what_is_ambiguous() {
        let (a, b) = (manifest(1), manifest(2));
        let mut index = OciIndex::new();
        assert_eq!(index.list_names(), "none");
        let err = index.pick(&ImageRef::Only, &holder()).unwrap_err();
        assert!(err.to_string().contains("holds no images"), "{err}");
        index.set_name("a", &a, BTreeMap::new());
        assert_eq!(
            index.pick(&ImageRef::Only, &holder()).unwrap().digest,
            a.digest
        );
        index.set_name("b", &b, BTreeMap::new());
        let err = index
            .find(&ImageRef::Only, &holder())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds 2 images (a, b); name one with oci:PATH:NAME"),
            "{err}"
        );
        let err = index
            .pick(&ImageRef::Tag("c".into()), &holder())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"c\" in oci:/x (names: a, b)"), "{err}");
        assert_eq!(
            index
                .find(&ImageRef::Digest(b.digest.clone()), &holder())
                .unwrap()
                .map(|d| &d.digest),
            Some(&b.digest)
        );

        // One name on two manifests (another tool's index) is refused.
        let twice = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": media_type::OCI_MANIFEST, "digest": a.digest.to_string(), "size": 1, "annotations": {REF_NAME: "x"}},
            {"mediaType": media_type::OCI_MANIFEST, "digest": b.digest.to_string(), "size": 1, "annotations": {REF_NAME: "x"}},
        ]});
        let index = OciIndex::parse("i", &to_json(&twice)).unwrap();
        let err = index
            .find(&ImageRef::Tag("x".into()), &holder())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/x/index.json: ") && err.contains("two manifests"),
            "{err}"
        );
    }

    #[test]
    fn unnamed_entries_are_kept_once_and_only_pass_over_them() {
        let (a, b) = (manifest(1), manifest(2));
        let mut index = OciIndex::new();
        let mut entry = Descriptor::new(media_type::OCI_MANIFEST, b.digest.clone(), 7);
        entry.artifact_type = Some("x/sig".into());
        entry.annotations.insert("k".into(), "v".into());
        assert!(index.add_unnamed(&entry));
        assert!(!index.add_unnamed(&entry), "once");
        assert!(!index.has_names());
        // Unnamed alone: it is the only image.
        assert_eq!(
            index.pick(&ImageRef::Only, &holder()).unwrap().digest,
            b.digest
        );
        index.set_name("app", &a, BTreeMap::new());
        assert_eq!(index.unnamed().len(), 1);
        assert_eq!(
            index.pick(&ImageRef::Only, &holder()).unwrap().digest,
            a.digest
        );
        let back: Value = serde_json::from_slice(&index.to_bytes()).unwrap();
        assert_eq!(
            back["manifests"][0],
            json!({"mediaType": media_type::OCI_MANIFEST, "digest": b.digest.to_string(), "size": 7, "artifactType": "x/sig", "annotations": {"k": "v"}})
        );
        let again = OciIndex::parse("index.json", &index.to_bytes()).unwrap();
        assert_eq!(again.entries(), index.entries());
    }

    #[test]
    fn referrers_are_picked_by_subject_and_type() {
        let (s, other) = (Digest::sha256_of(b"s"), Digest::sha256_of(b"o"));
        let entry = |seed: &[u8], t: Option<&str>| {
            let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256_of(seed), 1);
            d.artifact_type = t.map(str::to_string);
            d
        };
        let entries = vec![
            (s.clone(), entry(b"1", Some("x/sig"))),
            (s.clone(), entry(b"2", Some("x/sbom"))),
            (s.clone(), entry(b"3", None)),
            (other.clone(), entry(b"4", Some("x/sig"))),
        ];
        assert_eq!(referrers_of(entries.clone(), &s, &[]).len(), 3);
        let sigs = referrers_of(entries.clone(), &s, &["x/sig".into()]);
        assert_eq!(sigs, vec![entries[0].1.clone()]);
        assert!(referrers_of(entries, &Digest::sha256_of(b"none"), &[]).is_empty());
    }

    #[test]
    fn malformed_and_oversized_indexes_are_named() {
        for bad in [
            &b"{not json"[..],
            br#"[]"#,
            br#"{"schemaVersion":1}"#,
            br#"{"schemaVersion":2,"manifests":{}}"#,
            br#"{"schemaVersion":2,"manifests":[{"digest":"md5:00"}]}"#,
        ] {
            let err = OciIndex::parse("the/index.json", bad).unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
            assert!(err.to_string().starts_with("the/index.json: "), "{err}");
        }
        let huge = vec![b' '; MAX_INDEX_SIZE as usize + 1];
        let err = OciIndex::parse("big", &huge).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
        assert!(OciIndex::parse("i", br#"{"schemaVersion":2}"#)
            .unwrap()
            .entries()
            .is_empty());
    }

    #[test]
    fn the_marker_and_its_version() {
        assert_eq!(layout_marker(), br#"{"imageLayoutVersion":"1.0.0"}"#);
        assert_eq!(
            layout_version(&layout_marker()).unwrap().as_deref(),
            Some(LAYOUT_VERSION)
        );
        assert_eq!(
            layout_version(br#"{"imageLayoutVersion":1}"#).unwrap(),
            None
        );
        assert!(layout_version(b"{").is_err());
    }
}
