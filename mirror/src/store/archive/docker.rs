//! The `docker load` side of an archive (`mirror export --format docker`):
//! a `manifest.json` beside `index.json`, as `docker save` (Docker 25 and
//! later) and `regctl image export` write it, so one tar is an OCI archive
//! (`mirror import`, skopeo, umoci) and what `docker load` and `podman
//! load` take. Its entries point at the blobs the OCI side holds; nothing
//! is stored twice.
//!
//! Docker's format is narrower than OCI's, and what does not fit is
//! refused for the image, naming it and why, never dropped quietly:
//! - one image manifest per entry: a multi-platform index must be down to
//!   one platform (`--platform`); attestation children (`unknown/unknown`)
//!   do not count;
//! - every layer in the archive: a foreign layer left out, or a delta's
//!   left-out blob, makes an image `docker load` cannot load;
//! - layers that are tars, plain, gzip or zstd (zstd needs Docker 23 or
//!   later; podman reads all three);
//! - an image config, not an artifact's;
//! - `RepoTags` a name and a tag: the recorded source reference
//!   (`HOST/REPO:TAG`, what a pull would have called it), else the name in
//!   the bundle; an image exported by digest loads untagged.

use std::collections::BTreeMap;

use registry_client::{media_type, Descriptor, Digest, Reference};
use serde::{Deserialize, Serialize};

use super::tar::{blob_digest, blob_name};
use crate::platform::{describe, is_image_config};

/// The entry name `docker load` reads.
pub(super) const MANIFEST_JSON: &str = "manifest.json";
/// The legacy tag file `docker save` writes beside it; read by nobody here.
pub(super) const REPOSITORIES: &str = "repositories";

/// One entry of `manifest.json`, with the field names docker's loader reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_is_empty")]
    pub repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// The image manifest docker's entry describes: `manifest` itself, or the
/// one image child of an index. `Err` says why there is none.
pub(super) fn chosen_manifest(
    manifest_media_type: &str,
    bytes: &[u8],
) -> Result<Option<Descriptor>, String> {
    if !media_type::is_index(manifest_media_type) {
        return Ok(None);
    }
    let content: registry_client::ManifestContent =
        serde_json::from_slice(bytes).map_err(|e| format!("its index is not valid JSON: {e}"))?;
    let images: Vec<&Descriptor> = content
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_none_or(|p| !(p.os == "unknown" && p.architecture == "unknown"))
        })
        .collect();
    match images.as_slice() {
        [one] if media_type::is_index(&one.media_type) => Err(format!(
            "its one child {} is an index itself; docker load takes an image manifest",
            one.digest
        )),
        [one] => Ok(Some((*one).clone())),
        [] => Err("its index names no image for a platform".into()),
        many => {
            let platforms: Vec<String> = many
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or_else(|| "no platform".into(), describe)
                })
                .collect();
            Err(format!(
                "it is a multi-platform index ({}), and docker load takes one platform per \
                 image: choose one with --platform OS/ARCH[/VARIANT] (the bundle then holds \
                 that platform only), or export without --format docker to keep them all",
                platforms.join(", ")
            ))
        }
    }
}

/// Whether docker's and podman's loaders take a layer of this media type:
/// a tar, plain, gzip or zstd (foreign ones too, when the archive holds them).
fn loadable_layer(media_type: &str) -> bool {
    [".tar", ".tar+gzip", ".tar.gzip", ".tar+zstd"]
        .iter()
        .any(|end| media_type.ends_with(end))
}

/// The entry for the image manifest `bytes`, named `repo_tags`; every blob
/// it names must be in the archive (`holds`).
pub(super) fn entry(
    bytes: &[u8],
    repo_tags: Vec<String>,
    holds: &dyn Fn(&Digest) -> bool,
) -> Result<DockerEntry, String> {
    let content: registry_client::ManifestContent = serde_json::from_slice(bytes)
        .map_err(|e| format!("its manifest is not valid JSON: {e}"))?;
    let config = content
        .config
        .ok_or("its manifest names no config: it is no container image")?;
    if !is_image_config(&config.media_type) {
        return Err(format!(
            "its config is {:?}, not an image config: docker load takes container images only",
            config.media_type
        ));
    }
    if !holds(&config.digest) {
        return Err(format!(
            "its config {} is not in the bundle (a delta leaves it out)",
            config.digest
        ));
    }
    let mut layers = Vec::with_capacity(content.layers.len());
    for layer in &content.layers {
        if !loadable_layer(&layer.media_type) {
            return Err(format!(
                "layer {} is {:?}, which docker load does not take (a tar, plain, gzip or zstd)",
                layer.digest, layer.media_type
            ));
        }
        if !holds(&layer.digest) {
            return Err(if layer.is_foreign() {
                format!(
                    "layer {} is foreign (non-distributable) and not in the bundle; \
                     docker load needs every layer in the archive",
                    layer.digest
                )
            } else {
                format!(
                    "layer {} is not in the bundle (a delta leaves it out); docker load \
                     needs every layer in the archive",
                    layer.digest
                )
            });
        }
        layers.push(blob_name(&layer.digest));
    }
    Ok(DockerEntry {
        config: blob_name(&config.digest),
        repo_tags,
        layers,
    })
}

/// The `RepoTags` of the image named `name` in the bundle whose source was
/// `reference` (when recorded): `HOST/REPO:TAG`; none for a source given by
/// digest (docker's tags take no digest); else the bundle's name, which
/// must then be a name docker takes.
pub(super) fn repo_tags(name: &str, reference: Option<&str>) -> Result<Vec<String>, String> {
    if let Some(r) = reference {
        let parsed = Reference::parse(r)
            .map_err(|e| format!("its recorded reference is no docker name: {e}"))?;
        return Ok(match (parsed.tag(), parsed.digest()) {
            (Some(_), None) => vec![r.to_string()],
            _ => Vec::new(),
        });
    }
    let parsed = Reference::parse(name).map_err(|e| {
        format!("its name {name:?} is no docker name:tag, which docker load needs: {e}")
    })?;
    Ok(match parsed.digest() {
        Some(_) => Vec::new(),
        None => vec![name.to_string()],
    })
}

/// `manifest.json`: the entries in the order given, two names of one image
/// in one entry (as `docker save` writes them).
pub(super) fn manifest_json(entries: &[DockerEntry]) -> Vec<u8> {
    let mut merged: Vec<DockerEntry> = Vec::new();
    for e in entries {
        match merged
            .iter_mut()
            .find(|m| m.config == e.config && m.layers == e.layers)
        {
            Some(m) => {
                for t in &e.repo_tags {
                    if !m.repo_tags.contains(t) {
                        m.repo_tags.push(t.clone());
                    }
                }
            }
            None => merged.push(e.clone()),
        }
    }
    serde_json::to_vec(&merged).expect("plain strings serialise")
}

/// Check a `manifest.json` read from an archive: docker's entries, each
/// path a blob entry the archive holds (`holds`). `Err` says what is wrong.
pub(super) fn check_manifest_json(
    bytes: &[u8],
    holds: impl Fn(&Digest) -> bool,
) -> Result<Vec<DockerEntry>, String> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(bytes).map_err(|e| {
        format!("is no docker manifest.json (a list of Config, RepoTags, Layers): {e}")
    })?;
    let mut seen = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for path in std::iter::once(&e.config).chain(&e.layers) {
            let digest = blob_digest(path.trim_start_matches("./")).ok_or_else(|| {
                format!("entry {i} names {path:?}, which is no blobs/<alg>/<hex>")
            })?;
            if !*seen.entry(digest.clone()).or_insert_with(|| holds(&digest)) {
                return Err(format!(
                    "entry {i} names {path:?}, which the archive does not hold"
                ));
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    struct Held(HashSet<Digest>);
    impl Held {
        fn holds(&self, digest: &Digest) -> bool {
            self.0.contains(digest)
        }
    }

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn image(layers: &[(&str, &str, bool)], config_type: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": d("config").to_string(), "size": 6},
            "layers": layers.iter().map(|(name, mt, foreign)| {
                let mut l = json!({"mediaType": mt, "digest": d(name).to_string(), "size": 4});
                if *foreign { l["urls"] = json!(["https://example.invalid/l"]); }
                l
            }).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    #[test]
    fn manifest_json_is_what_docker_load_reads() {
        let held = Held([d("config"), d("a"), d("b")].into_iter().collect());
        let bytes = image(
            &[
                (("a"), GZ, false),
                (
                    "b",
                    "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    false,
                ),
            ],
            OCI_CONFIG,
        );
        let e = entry(&bytes, vec!["reg.example:5000/team/app:v1".into()], &|x| {
            held.holds(x)
        })
        .unwrap();
        let other = DockerEntry {
            repo_tags: vec!["reg.example:5000/team/app:latest".into()],
            ..e.clone()
        };
        let untagged = DockerEntry {
            config: blob_name(&d("other")),
            repo_tags: vec![],
            layers: vec![],
        };
        let text = String::from_utf8(manifest_json(&[e, other, untagged])).unwrap();
        assert_eq!(
            text,
            format!(
                r#"[{{"Config":"blobs/sha256/{c}","RepoTags":["reg.example:5000/team/app:v1","reg.example:5000/team/app:latest"],"Layers":["blobs/sha256/{a}","blobs/sha256/{b}"]}},{{"Config":"blobs/sha256/{o}","RepoTags":[],"Layers":[]}}]"#,
                c = d("config").hex(),
                a = d("a").hex(),
                b = d("b").hex(),
                o = d("other").hex(),
            )
        );
        // It reads back, each path checked against the archive.
        let back = check_manifest_json(text.as_bytes(), |x| held.holds(x) || *x == d("other"));
        assert_eq!(back.unwrap().len(), 2);
        let err = check_manifest_json(text.as_bytes(), |x| held.holds(x)).unwrap_err();
        assert!(
            err.contains(d("other").hex()) && err.contains("does not hold"),
            "{err}"
        );
        let err = check_manifest_json(br#"[{"Config":"../etc/passwd","Layers":[]}]"#, |_| true)
            .unwrap_err();
        assert!(err.contains("../etc/passwd"), "{err}");
        assert!(check_manifest_json(br#"{"Config":1}"#, |_| true).is_err());
        // docker save writes null for an untagged image.
        let null = format!(
            r#"[{{"Config":"blobs/sha256/{}","RepoTags":null,"Layers":[]}}]"#,
            d("x").hex()
        );
        assert!(check_manifest_json(null.as_bytes(), |_| true).unwrap()[0]
            .repo_tags
            .is_empty());
    }

    #[test]
    fn what_docker_load_cannot_take_is_refused_naming_it() {
        let all = Held([d("config"), d("a"), d("f")].into_iter().collect());
        let some = Held([d("config"), d("a")].into_iter().collect());
        let foreign = image(
            &[
                ("a", GZ, false),
                (
                    "f",
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                    true,
                ),
            ],
            OCI_CONFIG,
        );
        // A foreign layer the bundle carries is loaded like any other.
        assert_eq!(
            entry(&foreign, vec![], &|x| all.holds(x))
                .unwrap()
                .layers
                .len(),
            2
        );
        let err = entry(&foreign, vec![], &|x| some.holds(x)).unwrap_err();
        assert!(
            err.contains(&d("f").to_string()) && err.contains("foreign"),
            "{err}"
        );
        let delta = image(&[("a", GZ, false), ("f", GZ, false)], OCI_CONFIG);
        let err = entry(&delta, vec![], &|x| some.holds(x)).unwrap_err();
        assert!(err.contains("delta"), "{err}");
        let zstd = image(
            &[("a", "application/vnd.oci.image.layer.v1.tar+zstd", false)],
            OCI_CONFIG,
        );
        assert!(entry(&zstd, vec![], &|x| some.holds(x)).is_ok());
        let odd = image(&[("a", "application/vnd.example.blob", false)], OCI_CONFIG);
        let err = entry(&odd, vec![], &|x| some.holds(x)).unwrap_err();
        assert!(err.contains("application/vnd.example.blob"), "{err}");
        let artifact = image(&[("a", GZ, false)], "application/vnd.example.config");
        let err = entry(&artifact, vec![], &|x| some.holds(x)).unwrap_err();
        assert!(err.contains("not an image config"), "{err}");
        let err = entry(&image(&[], OCI_CONFIG), vec![], &|x| {
            Held(HashSet::new()).holds(x)
        })
        .unwrap_err();
        assert!(
            err.contains("config") && err.contains("not in the bundle"),
            "{err}"
        );
        assert!(entry(b"{", vec![], &|x| all.holds(x))
            .unwrap_err()
            .contains("not valid JSON"));
    }

    /// A child: its name, media type and `(os, architecture)`.
    type Child<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

    fn index(children: &[Child]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": children.iter().map(|(name, mt, p)| {
                let mut c = json!({"mediaType": mt, "digest": d(name).to_string(), "size": 4});
                if let Some((os, arch)) = p { c["platform"] = json!({"os": os, "architecture": arch}); }
                c
            }).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn the_platform_of_an_index_must_be_one_or_it_is_refused() {
        let m = media_type::OCI_MANIFEST;
        // Not an index: the manifest itself.
        assert_eq!(chosen_manifest(m, b"{}").unwrap(), None);
        // One platform, with an attestation beside it: that one.
        let one = index(&[
            ("amd", m, Some(("linux", "amd64"))),
            ("att", m, Some(("unknown", "unknown"))),
        ]);
        let got = chosen_manifest(media_type::OCI_INDEX, &one)
            .unwrap()
            .unwrap();
        assert_eq!(got.digest, d("amd"));
        // Two: refused, naming both and the way out.
        let two = index(&[
            ("amd", m, Some(("linux", "amd64"))),
            ("arm", m, Some(("linux", "arm64"))),
        ]);
        let err = chosen_manifest(media_type::DOCKER_MANIFEST_LIST, &two).unwrap_err();
        assert!(
            err.contains("linux/amd64, linux/arm64") && err.contains("--platform"),
            "{err}"
        );
        let none = index(&[("att", m, Some(("unknown", "unknown")))]);
        assert!(chosen_manifest(media_type::OCI_INDEX, &none)
            .unwrap_err()
            .contains("no image"));
        let nested = index(&[("inner", media_type::OCI_INDEX, None)]);
        assert!(chosen_manifest(media_type::OCI_INDEX, &nested)
            .unwrap_err()
            .contains("index itself"));
    }

    #[test]
    fn repo_tags_are_the_source_reference_or_the_bundle_name() {
        assert_eq!(
            repo_tags("team/app:v1", Some("127.0.0.1:5000/team/app:v1")).unwrap(),
            vec!["127.0.0.1:5000/team/app:v1".to_string()]
        );
        let by_digest = format!("127.0.0.1:5000/team/app@{}", d("m"));
        assert!(repo_tags("x", Some(&by_digest)).unwrap().is_empty());
        assert_eq!(
            repo_tags("app:v2", None).unwrap(),
            vec!["app:v2".to_string()]
        );
        let err = repo_tags("Not A Name", None).unwrap_err();
        assert!(err.contains("\"Not A Name\""), "{err}");
    }
}
