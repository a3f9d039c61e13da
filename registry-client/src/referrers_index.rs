//! The referrers tag schema as a writer keeps it: on a registry without the
//! referrers API, the referrers of a manifest are listed in an OCI index
//! under the tag `<alg>-<hex>` of its digest, and whoever pushes a manifest
//! with a `subject` adds it there (distribution spec 1.1, "Pushing Manifests
//! with Subject"). Other tools (cosign, notation, oras, regctl) write the
//! same index, so it is merged into, never rewritten: every entry and field
//! already there is kept byte for byte, ours is appended.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::client::Client;
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::media_type::OCI_INDEX;
use crate::reference::{Reference, Repository};

/// Writes of one index before giving up on a registry where another writer
/// keeps replacing it.
const MAX_WRITES: usize = 4;

/// How long after a write the index is read back, at least. Two writers
/// that read the same index and write at once each replace the other's
/// write; a write still on its way when the other reads back would go
/// unseen, so reading back waits for such a write to land. After the n-th
/// write it waits up to n times as long again, at random, so writers that
/// met do not meet again in step (each round in step lets only one in).
const SETTLE: Duration = Duration::from_millis(50);

/// The tag holding the referrers of `subject` on a registry without the
/// API: the algorithm (at most 32 characters), `-`, and the encoded digest
/// (at most 64), so `sha256-<hex>`, and a sha512 digest's first 64 hex
/// characters. Both parts are already tag characters.
pub fn referrers_tag(subject: &Digest) -> String {
    let alg = subject.algorithm().name();
    let hex = subject.hex();
    format!(
        "{}-{}",
        &alg[..alg.len().min(32)],
        &hex[..hex.len().min(64)]
    )
}

/// What [`Client::add_to_referrers_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUpdate {
    /// The referrer is listed now, and was not before.
    Added,
    /// It was listed already; nothing was written.
    AlreadyListed,
}

impl Manifest {
    /// The descriptor a referrers list holds for this manifest: its media
    /// type, digest and size, its `artifactType` (else its config's media
    /// type, as the spec says; none for an index without one) and its
    /// annotations.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the bytes are not a JSON object.
    pub fn referrer_descriptor(&self) -> Result<Descriptor, Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Own {
            #[serde(default)]
            artifact_type: Option<String>,
            #[serde(default)]
            config: Option<Config>,
            #[serde(default)]
            annotations: BTreeMap<String, String>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Config {
            media_type: String,
        }
        let own: Own = serde_json::from_slice(&self.bytes).map_err(|e| Error::Protocol {
            method: "parse".into(),
            url: self.digest.to_string(),
            reason: format!("manifest is not valid JSON: {e}"),
        })?;
        let mut d = Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        );
        d.artifact_type = own
            .artifact_type
            .filter(|t| !t.is_empty())
            .or(own.config.map(|c| c.media_type));
        d.annotations = own.annotations;
        Ok(d)
    }
}

impl Client {
    /// List `referrer` in the tag-schema index of `subject` in `repo`, for
    /// a registry that did not answer its push with `OCI-Subject` (see
    /// [`Client::put_manifest_with_subject`]). Build the descriptor with
    /// [`Manifest::referrer_descriptor`].
    ///
    /// A missing tag is an empty index. Entries already there, ours or
    /// another tool's, are kept as they are, byte for byte; `referrer` is
    /// appended unless an entry of its digest is there. A tag holding
    /// something else than an OCI index is refused, not replaced.
    ///
    /// distribution has no conditional manifest PUT (no `If-Match`), and a
    /// registry old enough to lack the API is unlikely to have one, so a
    /// concurrent writer is caught afterwards instead: the index is read
    /// back after each write and, when another writer's index replaced
    /// ours, merged into again, up to 4 writes. Writers in this client take
    /// turns per index, so only other processes can race it. What no
    /// read-back can catch: another process's write, made from what it
    /// read before ours landed and arriving after our read-back, still
    /// drops our entry; only the referrers API (or a conditional PUT)
    /// rules that out, as the spec says. Costs three requests (GET, PUT,
    /// GET) and 50 ms when nobody else writes, one request when the
    /// referrer is listed already.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a tag holding something other than an OCI
    /// index; [`Error::Protocol`] for an index that is not JSON, or when
    /// other writers replaced it after every write; those of the requests.
    pub async fn add_to_referrers_index(
        &self,
        repo: &Repository,
        subject: &Digest,
        referrer: &Descriptor,
    ) -> Result<IndexUpdate, Error> {
        let tag = referrers_tag(subject);
        let reference = repo.tag(&tag)?;
        let key = format!("{}/{}:{tag}", repo.api_host(), repo.name());
        let lock = self.referrers_state().writer(&key);
        let result = {
            let _turn = lock.lock().await;
            self.merge_into_index(repo, &reference, referrer).await
        };
        self.referrers_state().done_writing(&key, lock);
        result
    }

    async fn merge_into_index(
        &self,
        repo: &Repository,
        reference: &Reference,
        referrer: &Descriptor,
    ) -> Result<IndexUpdate, Error> {
        let entry = serde_json::value::to_raw_value(referrer).map_err(|e| Error::Protocol {
            method: "serialise".into(),
            url: referrer.digest.to_string(),
            reason: format!("the referrer's descriptor: {e}"),
        })?;
        let tag = reference.tag().unwrap_or_default();
        for writes in 0..=MAX_WRITES {
            if writes > 0 {
                let jitter = rand::thread_rng().gen_range(0.0..1.0) * writes as f64;
                tokio::time::sleep(SETTLE.mul_f64(1.0 + jitter)).await;
            }
            let index = self.read_index(reference).await?;
            if index.lists(&referrer.digest) {
                return Ok(if writes == 0 {
                    IndexUpdate::AlreadyListed
                } else {
                    IndexUpdate::Added
                });
            }
            if writes > 0 {
                tracing::debug!(index = %reference, writes, "another writer replaced the referrers index: merging again");
            }
            if writes == MAX_WRITES {
                break;
            }
            self.put_manifest(repo, tag, OCI_INDEX, index.with(&entry))
                .await?;
        }
        Err(Error::Protocol {
            method: "PUT".into(),
            url: reference.to_string(),
            reason: format!(
                "the referrers index was replaced by another writer after each of {MAX_WRITES} writes, and {} is still not in it; run again once the other writer is done",
                referrer.digest
            ),
        })
    }

    /// The index under the tag: empty when the tag is missing.
    async fn read_index(&self, reference: &Reference) -> Result<IndexDoc, Error> {
        match self.get_manifest(reference).await {
            Ok(m) if m.media_type == OCI_INDEX => IndexDoc::parse(&m.bytes, reference),
            Ok(m) => Err(Error::Unsupported {
                what: format!("referrers tag {reference}"),
                reason: format!(
                    "it holds a {}, not an OCI index; left as it is",
                    m.media_type
                ),
            }),
            Err(e) if e.is_not_found() => Ok(IndexDoc::empty()),
            Err(e) => Err(e),
        }
    }
}

/// A referrers index as JSON text: its top-level members in order, each
/// value exactly as it was received, and the `manifests` entries likewise.
/// Written back, only the whitespace between top-level members changes.
#[derive(Debug)]
struct IndexDoc {
    members: Vec<(String, Box<RawValue>)>,
    entries: Vec<Box<RawValue>>,
}

/// The members of a JSON object, in order.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(InOrder)
    }
}

impl IndexDoc {
    fn empty() -> Self {
        let raw = |v: serde_json::Value| {
            serde_json::value::to_raw_value(&v).expect("a JSON value serialises")
        };
        IndexDoc {
            members: vec![
                ("schemaVersion".into(), raw(2.into())),
                ("mediaType".into(), raw(OCI_INDEX.into())),
            ],
            entries: Vec::new(),
        }
    }

    fn parse(bytes: &[u8], reference: &Reference) -> Result<Self, Error> {
        let bad = |reason: String| Error::Protocol {
            method: "GET".into(),
            url: reference.to_string(),
            reason: format!("the referrers index is unusable, so not written to: {reason}"),
        };
        let Members(members) =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let entries = match members.iter().find(|(k, _)| k == "manifests") {
            Some((_, list)) => serde_json::from_str::<Vec<Box<RawValue>>>(list.get())
                .map_err(|e| bad(format!("`manifests` is not a list: {e}")))?,
            None => Vec::new(),
        };
        Ok(IndexDoc { members, entries })
    }

    /// Whether an entry names `digest`.
    fn lists(&self, digest: &Digest) -> bool {
        #[derive(serde::Deserialize)]
        struct Named {
            digest: String,
        }
        let wanted = digest.to_string();
        self.entries
            .iter()
            .any(|e| serde_json::from_str::<Named>(e.get()).is_ok_and(|n| n.digest == wanted))
    }

    /// The index with `entry` appended to its `manifests`.
    fn with(&self, entry: &RawValue) -> Bytes {
        let list = || {
            let items: Vec<&str> = self
                .entries
                .iter()
                .map(|e| e.get())
                .chain([entry.get()])
                .collect();
            format!("[{}]", items.join(","))
        };
        let mut out = String::from("{");
        let mut listed = false;
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out += &serde_json::to_string(key).expect("a string serialises");
            out.push(':');
            if key == "manifests" && !listed {
                out += &list();
                listed = true;
            } else {
                out += value.get();
            }
        }
        if !listed {
            if !self.members.is_empty() {
                out.push(',');
            }
            out += "\"manifests\":";
            out += &list();
        }
        out.push('}');
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        Reference::parse("r.io/a:sha256-x").unwrap()
    }

    #[test]
    fn the_tag_truncates_as_the_spec_says() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
        let long = Digest::of(crate::digest::Algorithm::Sha512, b"x");
        let tag = referrers_tag(&long);
        assert_eq!(tag, format!("sha512-{}", &long.hex()[..64]));
        assert!(tag.len() <= 128);
    }

    #[test]
    fn a_merge_keeps_every_entry_and_member_byte_for_byte() {
        let other = r#"{ "size": 10, "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "mediaType": "application/vnd.oci.image.manifest.v1+json", "x-tool": {"b": 1, "a": [1.50, 2]} }"#;
        let doc = format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_INDEX}\",\n  \"zz\": {{\"k\": \"v\"}},\n  \"manifests\": [\n    {other}\n  ],\n  \"annotations\": {{\"b\": \"2\", \"a\": \"1\"}}\n}}"
        );
        let index = IndexDoc::parse(doc.as_bytes(), &reference()).unwrap();
        let mut ours = Descriptor::new(OCI_INDEX, Digest::sha256_of(b"ours"), 3);
        ours.artifact_type = Some("application/vnd.example".into());
        assert!(!index.lists(&ours.digest));
        let merged = index.with(&serde_json::value::to_raw_value(&ours).unwrap());
        let text = std::str::from_utf8(&merged).unwrap();
        assert!(text.contains(other), "{text}");
        assert!(
            text.contains(r#""zz":{"k": "v"}"#)
                && text.contains(r#""annotations":{"b": "2", "a": "1"}"#),
            "{text}"
        );
        let again = IndexDoc::parse(&merged, &reference()).unwrap();
        assert!(again.lists(&ours.digest));
        assert_eq!(again.entries.len(), 2);
        assert_eq!(again.entries[0].get(), other);
    }

    #[test]
    fn an_empty_index_gains_a_manifests_list() {
        let ours = Descriptor::new(OCI_INDEX, Digest::sha256_of(b"ours"), 3);
        let raw = serde_json::value::to_raw_value(&ours).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&IndexDoc::empty().with(&raw)).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"][0]["digest"], ours.digest.to_string());
        let bare = IndexDoc::parse(br#"{"schemaVersion":2}"#, &reference()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bare.with(&raw)).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_index_that_is_not_an_object_is_refused() {
        for bad in [&b"[]"[..], b"{\"manifests\": {}}", b"not json"] {
            let err = IndexDoc::parse(bad, &reference()).unwrap_err().to_string();
            assert!(err.contains("unusable"), "{err}");
        }
    }
}
