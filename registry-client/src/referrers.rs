//! Referrers of a manifest: the OCI 1.1 referrers API, falling back to the
//! `<alg>-<hex>` tag schema on registries without it (distribution 2.8).

use http::{header, Method};

use crate::auth::Scopes;
use crate::client::{read_capped, Call, Client};
use crate::descriptor::{Descriptor, ManifestContent};
use crate::digest::Digest;
use crate::error::{redact_url, Error};
use crate::manifest::MAX_MANIFEST_SIZE;
use crate::media_type::OCI_INDEX;
use crate::reference::Repository;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    pub manifests: Vec<Descriptor>,
    /// True when they came from the fallback tag, not the API.
    pub from_tag_schema: bool,
}

impl Client {
    /// Manifests whose `subject` is `digest`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers, Error> {
        let mut url = self.api_url(repo, &format!("referrers/{digest}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let call = Call::new(
            Method::GET,
            url.clone(),
            repo.registry(),
            Scopes::pull(repo.name()),
        )
        .header(header::ACCEPT, OCI_INDEX);
        let (manifests, from_tag_schema) = match self.send(call).await {
            Ok(resp) => {
                let body = read_capped(resp, MAX_MANIFEST_SIZE)
                    .await
                    .map_err(|e| Error::Transport {
                        method: "GET".into(),
                        url: redact_url(&url),
                        source: e.without_url(),
                    })?
                    .ok_or_else(|| Error::TooLarge {
                        what: "referrers index".into(),
                        url: redact_url(&url),
                        limit: MAX_MANIFEST_SIZE,
                    })?;
                let index: ManifestContent =
                    serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                        method: "GET".into(),
                        url: redact_url(&url),
                        reason: format!("referrers answer is not an index: {e}"),
                    })?;
                (index.manifests, false)
            }
            Err(e) if e.is_not_found() => {
                let tag = format!("{}-{}", digest.algorithm().name(), digest.hex());
                match self.get_manifest(&repo.tag(&tag)?).await {
                    Ok(m) => (m.content()?.manifests, true),
                    Err(e) if e.is_not_found() => (Vec::new(), true),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        // Filter here too: a registry may ignore artifactType.
        let manifests = manifests
            .into_iter()
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect();
        Ok(Referrers {
            manifests,
            from_tag_schema,
        })
    }
}
