//! Manifests as raw bytes: GET (verified against the digest asked for or
//! the registry's `Docker-Content-Digest`), HEAD, PUT. Never re-serialised.

use bytes::Bytes;
use http::{header, Method};

use crate::auth::Scopes;
use crate::client::{Body, Call, Client};
use crate::descriptor::ManifestContent;
use crate::digest::{Algorithm, Digest};
use crate::error::{redact_url, Error};
use crate::media_type::{self, manifest_accept_header};
use crate::reference::{Reference, Repository};

use crate::limits::MAX_MANIFEST_SIZE;
const DIGEST_HEADER: &str = "docker-content-digest";
/// Answered to a manifest PUT with a `subject` by registries with the
/// referrers API (distribution spec 1.1).
const SUBJECT_HEADER: &str = "oci-subject";

/// A manifest's exact bytes, with their media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type: the registry's `Content-Type`, else the manifest's
    /// own `mediaType` ([`crate::media_type`]).
    pub media_type: String,
    /// The digest of [`Manifest::bytes`], verified when read.
    pub digest: Digest,
    /// The bytes exactly as the registry sent them (or as they will be
    /// pushed): never re-serialised, so the digest stays the same.
    pub bytes: Bytes,
}

impl Manifest {
    /// A manifest of these bytes, with their sha256 digest: what to push.
    pub fn from_bytes(media_type: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Manifest {
            media_type: media_type.into(),
            digest: Digest::sha256_of(&bytes),
            bytes,
        }
    }

    /// Parse the references out of it (config, layers, children, subject).
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the bytes are not JSON of a manifest's shape.
    pub fn content(&self) -> Result<ManifestContent, Error> {
        serde_json::from_slice(&self.bytes).map_err(|e| Error::Protocol {
            method: "parse".into(),
            url: self.digest.to_string(),
            reason: format!("manifest is not valid JSON: {e}"),
        })
    }

    /// Whether it is an index (OCI image index or Docker manifest list),
    /// whose children are manifests rather than blobs.
    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type)
    }
}

/// What a manifest PUT was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPut {
    /// The digest of the bytes pushed.
    pub digest: Digest,
    /// The answer's `OCI-Subject`: the registry processed the manifest's
    /// `subject` and lists it as a referrer of this digest. `None` from a
    /// registry without the referrers API (distribution 2.8), and for a
    /// manifest without a subject.
    pub oci_subject: Option<Digest>,
}

/// What a HEAD tells about a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// The media type (`Content-Type`).
    pub media_type: String,
    /// The digest (`Docker-Content-Digest`).
    pub digest: Digest,
    /// The size in bytes (`Content-Length`).
    pub size: u64,
}

impl Client {
    /// Read a manifest or index by tag or digest, with the full Accept list
    /// (OCI manifest and index, Docker manifest and list). By digest the
    /// bytes must hash to it; by tag, to the registry's
    /// `Docker-Content-Digest` when it sends one. At most
    /// [`MAX_MANIFEST_SIZE`] bytes are read.
    ///
    /// ```no_run
    /// # async fn run(client: registry_client::Client) -> Result<(), registry_client::Error> {
    /// use registry_client::Reference;
    ///
    /// let reference = Reference::parse("docker.io/library/alpine:3.20")?;
    /// let manifest = client.get_manifest(&reference).await?;
    /// println!("{} {}", manifest.digest, manifest.media_type);
    /// if manifest.is_index() {
    ///     for child in manifest.content()?.manifests {
    ///         let child = client.get_manifest(&reference.with_digest(child.digest)).await?;
    ///         println!("  {}", child.digest);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when there is no
    /// such manifest (the codes say `MANIFEST_UNKNOWN` or `NAME_UNKNOWN`);
    /// [`Error::DigestMismatch`] for bytes that do not hash to the digest;
    /// [`Error::TooLarge`] past the size cap; [`Error::Unsupported`] for
    /// Docker schema 1; [`Error::Protocol`] for an answer that is not a
    /// manifest (a login page); and the errors every request can have
    /// (auth, transport, status).
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest, Error> {
        let repo = reference.repository();
        let url = self.api_url(repo, &format!("manifests/{}", reference.manifest_ref()))?;
        let call = Call::new(
            Method::GET,
            url.clone(),
            repo.registry(),
            Scopes::pull(repo.name()),
        )
        .header(header::ACCEPT, &manifest_accept_header());
        let resp = self.send(call).await?;
        let content_type = header_str(&resp, header::CONTENT_TYPE.as_str());
        let announced = header_str(&resp, DIGEST_HEADER);
        let bytes = self
            .read_whole(
                resp,
                MAX_MANIFEST_SIZE,
                &format!("manifest {reference}"),
                &url,
            )
            .await?;
        let media_type =
            media_type_of(content_type.as_deref(), &bytes).map_err(|reason| Error::Protocol {
                method: "GET".into(),
                url: redact_url(&url),
                reason,
            })?;
        if media_type::is_schema1(&media_type) || schema_version(&bytes) == Some(1) {
            return Err(Error::Unsupported {
                what: format!("manifest {reference}"),
                reason: "Docker schema 1 manifests are deprecated and not supported; push the image again with a current client".into(),
            });
        }
        let digest = verify_manifest_digest(reference, announced.as_deref(), &bytes)?;
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// What a manifest is (digest, media type, size) without reading it:
    /// `None` when it does not exist. One HEAD; a GET when the registry
    /// leaves the headers out of its HEAD answers.
    ///
    /// # Errors
    ///
    /// As [`Client::get_manifest`], but a missing manifest is `Ok(None)`.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<ManifestInfo>, Error> {
        let repo = reference.repository();
        let url = self.api_url(repo, &format!("manifests/{}", reference.manifest_ref()))?;
        let call = Call::new(
            Method::HEAD,
            url,
            repo.registry(),
            Scopes::pull(repo.name()),
        )
        .header(header::ACCEPT, &manifest_accept_header());
        let resp = match self.send(call).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let digest = header_str(&resp, DIGEST_HEADER).and_then(|d| Digest::parse(&d).ok());
        let media_type = header_str(&resp, header::CONTENT_TYPE.as_str());
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Some(ManifestInfo {
                media_type,
                digest,
                size,
            })),
            // Some registries leave headers out of HEAD answers: ask with GET.
            _ => {
                let m = self.get_manifest(reference).await?;
                Ok(Some(ManifestInfo {
                    size: m.bytes.len() as u64,
                    media_type: m.media_type,
                    digest: m.digest,
                }))
            }
        }
    }

    /// PUT the bytes as they are under a tag or digest; returns their digest.
    /// Everything the manifest references must be in the repository first
    /// (blobs, children), or the registry refuses it
    /// ([`ErrorCode::ManifestBlobUnknown`](crate::ErrorCode::ManifestBlobUnknown)).
    ///
    /// ```no_run
    /// # async fn run(client: registry_client::Client, manifest: registry_client::Manifest) -> Result<(), registry_client::Error> {
    /// use registry_client::Repository;
    ///
    /// let repo = Repository::parse("myacr.azurecr.io/team/app")?;
    /// let digest = client
    ///     .put_manifest(&repo, "v1", &manifest.media_type, manifest.bytes.clone())
    ///     .await?;
    /// assert_eq!(digest, manifest.digest);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::DigestMismatch`] when pushed by a digest the bytes do not
    /// hash to; [`Error::InvalidReference`] for a bad tag;
    /// [`Error::TooLarge`] past [`MAX_MANIFEST_SIZE`]; [`Error::Protocol`]
    /// when the registry says it stored another digest; the registry's
    /// refusal as [`Error::Status`] with its codes.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, Error> {
        self.put_manifest_with_subject(repo, tag_or_digest, media_type, bytes)
            .await
            .map(|put| put.digest)
    }

    /// [`Client::put_manifest`], also telling whether the registry answered
    /// `OCI-Subject`: for a manifest with a `subject`, a registry with the
    /// referrers API says so, and then lists it by itself. Without it the
    /// pusher keeps the tag-schema index
    /// ([`Client::add_to_referrers_index`]).
    ///
    /// # Errors
    ///
    /// As [`Client::put_manifest`].
    pub async fn put_manifest_with_subject(
        &self,
        repo: &Repository,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<ManifestPut, Error> {
        let algorithm = match Digest::parse(tag_or_digest) {
            Ok(d) => d.algorithm(),
            Err(_) if !tag_or_digest.contains(':') => {
                repo.tag(tag_or_digest)?;
                Algorithm::Sha256
            }
            Err(e) => return Err(e),
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Ok(wanted) = Digest::parse(tag_or_digest) {
            if wanted != digest {
                return Err(Error::DigestMismatch {
                    expected: wanted,
                    actual: digest,
                });
            }
        }
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge {
                what: format!("manifest {digest}"),
                url: repo.to_string(),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let url = self.api_url(repo, &format!("manifests/{tag_or_digest}"))?;
        let call = Call::new(
            Method::PUT,
            url.clone(),
            repo.registry(),
            Scopes::push(repo.name()),
        )
        .header(header::CONTENT_TYPE, media_type)
        .body(Body::Bytes(bytes));
        let resp = self.send(call).await?;
        if let Some(got) = header_str(&resp, DIGEST_HEADER).and_then(|d| Digest::parse(&d).ok()) {
            if got.algorithm() == digest.algorithm() && got != digest {
                return Err(Error::Protocol {
                    method: "PUT".into(),
                    url: redact_url(&url),
                    reason: format!("the registry stored the manifest as {got}, not {digest}"),
                });
            }
        }
        let oci_subject = header_str(&resp, SUBJECT_HEADER).and_then(|d| Digest::parse(&d).ok());
        Ok(ManifestPut {
            digest,
            oci_subject,
        })
    }

    /// Delete a manifest by digest (registries refuse deletion by tag).
    ///
    /// # Errors
    ///
    /// The registry's refusal (many disable deletion:
    /// [`ErrorCode::Unsupported`](crate::ErrorCode::Unsupported)), or
    /// not found.
    pub async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<(), Error> {
        let url = self.api_url(repo, &format!("manifests/{digest}"))?;
        self.send(Call::new(
            Method::DELETE,
            url,
            repo.registry(),
            Scopes::new().with("repository", repo.name(), &["delete"]),
        ))
        .await
        .map(|_| ())
    }
}

pub(crate) fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// The Content-Type, unless it is missing or generic; then the JSON's own
/// `mediaType`. Refused, naming both: a manifest Content-Type the
/// manifest's own `mediaType` contradicts (an image served as an index
/// would be copied without its blobs), and a body that is not JSON under a
/// Content-Type that is not a manifest's (a login page, a proxy's error).
fn media_type_of(content_type: Option<&str>, bytes: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Own {
        #[serde(default, rename = "mediaType")]
        media_type: Option<String>,
    }
    let own = serde_json::from_slice::<Own>(bytes);
    let body_type = own.as_ref().ok().and_then(|o| o.media_type.clone());
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        .filter(|c| {
            !c.is_empty()
                && c != "application/json"
                && c != "text/plain"
                && c != media_type::OCTET_STREAM
        });
    let Some(ct) = ct else {
        return Ok(body_type.unwrap_or_else(|| media_type::OCI_MANIFEST.to_string()));
    };
    let known = |t: &str| media_type::MANIFEST_ACCEPT.contains(&t) || media_type::is_schema1(t);
    if known(&ct) {
        match body_type {
            Some(own) if own != ct && known(&own) => Err(format!(
                "the Content-Type {ct} contradicts the manifest's own mediaType {own}"
            )),
            _ => Ok(ct),
        }
    } else if own.is_err() {
        Err(format!(
            "the answer (Content-Type {ct}) is not a manifest: not JSON"
        ))
    } else {
        Ok(body_type.unwrap_or(ct))
    }
}

fn schema_version(bytes: &[u8]) -> Option<u32> {
    serde_json::from_slice::<ManifestContent>(bytes)
        .ok()
        .and_then(|m| m.schema_version)
}

/// By digest: the bytes must hash to it. By tag: they must hash to the
/// registry's `Docker-Content-Digest` when it sends one.
fn verify_manifest_digest(
    reference: &Reference,
    announced: Option<&str>,
    bytes: &[u8],
) -> Result<Digest, Error> {
    if let Some(wanted) = reference.digest() {
        let actual = Digest::of(wanted.algorithm(), bytes);
        if &actual != wanted {
            return Err(Error::DigestMismatch {
                expected: wanted.clone(),
                actual,
            });
        }
        return Ok(actual);
    }
    if let Some(announced) = announced.and_then(|a| Digest::parse(a).ok()) {
        let actual = Digest::of(announced.algorithm(), bytes);
        if actual != announced {
            return Err(Error::DigestMismatch {
                expected: announced,
                actual,
            });
        }
        return Ok(actual);
    }
    Ok(Digest::sha256_of(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_from_header_or_body() {
        assert_eq!(
            media_type_of(
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}"
            )
            .unwrap(),
            media_type::OCI_INDEX
        );
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            media_type_of(Some("application/json"), body).unwrap(),
            media_type::DOCKER_MANIFEST
        );
        assert_eq!(
            media_type_of(Some("application/octet-stream"), body).unwrap(),
            media_type::DOCKER_MANIFEST
        );
        assert_eq!(
            media_type_of(None, b"{}").unwrap(),
            media_type::OCI_MANIFEST
        );
    }

    #[test]
    fn a_content_type_the_manifest_contradicts_is_refused() {
        let image =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        let err = media_type_of(Some(media_type::OCI_INDEX), image).unwrap_err();
        assert!(
            err.contains(media_type::OCI_INDEX) && err.contains(media_type::OCI_MANIFEST),
            "{err}"
        );
        let err = media_type_of(Some("text/html"), b"<html>sign in</html>").unwrap_err();
        assert!(err.contains("text/html"), "{err}");
        // Not JSON under a manifest type: left to the parser, which names it.
        assert_eq!(
            media_type_of(Some(media_type::OCI_MANIFEST), b"{\"schemaVer").unwrap(),
            media_type::OCI_MANIFEST
        );
    }

    #[test]
    fn digest_checks_name_both_values() {
        let r = Reference::parse("r.io/a:t").unwrap();
        let good = Digest::sha256_of(b"x");
        assert_eq!(
            verify_manifest_digest(&r, Some(&good.to_string()), b"x").unwrap(),
            good
        );
        let err = verify_manifest_digest(&r, Some(&good.to_string()), b"y")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&good.to_string()) && err.contains(&Digest::sha256_of(b"y").to_string())
        );
        let pinned = r.with_digest(good.clone());
        assert!(verify_manifest_digest(&pinned, None, b"y").is_err());
    }
}
