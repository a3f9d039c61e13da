//! Listing a manifest's referrers (signatures, SBOMs, attestations: the
//! manifests whose `subject` names it). Through the OCI 1.1 referrers API
//! where the registry has it, else through the referrers tag schema: an
//! index under the tag `<alg>-<hex>` that pushers keep
//! ([`crate::referrers_index`]). Which of the two a registry has is learnt
//! from the first listing's answer and remembered by the client, so a
//! registry without the API is asked once, not once per image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{header, Method, StatusCode};
use url::Url;

use crate::auth::Scopes;
use crate::client::{Call, Client};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{redact_url, Error};
use crate::limits::{MAX_ERROR_BODY, MAX_LIST_PAGE_BODY};
use crate::media_type::OCI_INDEX;
use crate::reference::Repository;
use crate::referrers_index::referrers_tag;
use crate::tags::{follow_pages, next_link};

/// The referrers of one manifest, and how the registry gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrers {
    /// Descriptors as the registry (or the tag's index) holds them, with
    /// their `artifactType` and `annotations`; only those of the types asked
    /// for.
    pub manifests: Vec<Descriptor>,
    /// Whether the registry's API or the tag schema gave them.
    pub source: ReferrersSource,
}

/// Where a registry's referrers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersSource {
    /// `GET /v2/<name>/referrers/<digest>`: the registry keeps the list.
    Api,
    /// The index under the tag `<alg>-<hex>`: pushers keep the list.
    TagSchema,
}

/// What a client has learnt about referrers, per registry, and the locks
/// that keep its own writers of one tag-schema index from racing.
#[derive(Debug, Default)]
pub(crate) struct ReferrersState {
    /// API host → how it answers referrers, once known.
    support: Mutex<HashMap<String, ReferrersSource>>,
    /// Index (`host/name:tag`) → the lock its writers in this client take.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ReferrersState {
    fn known(&self, host: &str) -> Option<ReferrersSource> {
        self.support.lock().unwrap().get(host).copied()
    }

    fn learnt(&self, host: &str, source: ReferrersSource) {
        self.support
            .lock()
            .unwrap()
            .insert(host.to_string(), source);
    }

    /// The lock of one index's writers.
    pub(crate) fn writer(&self, index: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.writers
            .lock()
            .unwrap()
            .entry(index.to_string())
            .or_default()
            .clone()
    }

    /// Give back a lock from [`ReferrersState::writer`]; the last one out
    /// removes it, so the map holds only indexes being written.
    pub(crate) fn done_writing(&self, index: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut writers = self.writers.lock().unwrap();
        // Ours and the map's: nobody else holds or waits for it.
        if Arc::strong_count(&lock) == 2 {
            writers.remove(index);
        }
    }
}

/// One page of a referrers API answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

impl Client {
    /// The manifests whose `subject` is `subject`, of the `artifact_types`
    /// given (all when empty).
    ///
    /// On a registry with the referrers API this is one request per page
    /// (`Link` pages, bounded by the list-pages and list-entries limits); on
    /// one without, one GET of the tag-schema index, after one probe of the
    /// API per registry for the client's life. The artifact type filter is
    /// left to the registry only when it says it applied it
    /// (`OCI-Filters-Applied: artifactType`) and only one type is asked
    /// for (the API filters on one); otherwise it is applied here.
    ///
    /// ```no_run
    /// # async fn run(client: registry_client::Client) -> Result<(), registry_client::Error> {
    /// use registry_client::Reference;
    ///
    /// let image = Reference::parse("ghcr.io/org/app:v1")?;
    /// let digest = client.get_manifest(&image).await?.digest;
    /// let signatures = ["application/vnd.dev.cosign.artifact.sig.v1+json".to_string()];
    /// let found = client.referrers(image.repository(), &digest, &signatures).await?;
    /// for r in &found.manifests {
    ///     println!("{} {:?}", r.digest, r.artifact_type);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of the listing requests; [`Error::Exceeded`] past the
    /// [`Limits`](crate::Limits); [`Error::Protocol`] for an answer that is
    /// not an OCI index. A missing repository, a missing tag-schema tag or
    /// one holding something else lists none.
    pub async fn referrers(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Referrers, Error> {
        let host = repo.api_host();
        if self.referrers_state().known(host) != Some(ReferrersSource::TagSchema) {
            if let Some(manifests) = self.referrers_by_api(repo, subject, artifact_types).await? {
                return Ok(Referrers {
                    manifests,
                    source: ReferrersSource::Api,
                });
            }
        }
        let manifests = self.referrers_by_tag(repo, subject, artifact_types).await?;
        Ok(Referrers {
            manifests,
            source: ReferrersSource::TagSchema,
        })
    }

    /// What the client has learnt about a registry (`host` or `host:port`):
    /// `None` until a listing there has been answered.
    pub fn referrers_support(&self, registry: &str) -> Option<ReferrersSource> {
        self.referrers_state()
            .known(crate::reference::api_host(registry))
    }

    /// Every page of the API's answer; `None` when the registry has no API.
    async fn referrers_by_api(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Option<Vec<Descriptor>>, Error> {
        let mut url = self.api_url(repo, &format!("referrers/{subject}"))?;
        if let [only] = artifact_types {
            url.query_pairs_mut().append_pair("artifactType", only);
        }
        let Some(first) = self.first_referrers_page(repo, url, artifact_types).await? else {
            return Ok(None);
        };
        let what = format!("the referrers of {repo}@{subject}");
        let mut first = Some(first);
        let all = follow_pages(&what, self.limits(), |next| {
            let ready = first.take();
            async move {
                match (ready, next) {
                    (Some(page), _) => Ok(page),
                    (None, Some(url)) => self.referrers_page(repo, url, artifact_types).await,
                    (None, None) => Ok((Vec::new(), None)),
                }
            }
        })
        .await?;
        Ok(Some(all))
    }

    /// The first page, which is also the probe: per the distribution spec a
    /// registry with the API never answers it 404 (no referrers is 200 and
    /// an empty index), and a client answered 404 falls back to the tag
    /// schema. A 404 that carries an index anyway is taken as an answer.
    async fn first_referrers_page(
        &self,
        repo: &Repository,
        url: Url,
        artifact_types: &[String],
    ) -> Result<Option<(Vec<Descriptor>, Option<Url>)>, Error> {
        let host = repo.api_host();
        let call = self.referrers_call(repo, url.clone()).not_found_answers();
        let resp = self.send(call).await?;
        if resp.status() != StatusCode::NOT_FOUND {
            let page = self.read_referrers_page(resp, &url, artifact_types).await?;
            self.referrers_state().learnt(host, ReferrersSource::Api);
            return Ok(Some(page));
        }
        // An unreadable 404 body is no index: what it says is only whether
        // the API is there.
        let body = self
            .read_whole(resp, MAX_ERROR_BODY, "referrers answer", &url)
            .await
            .unwrap_or_default();
        if let Some(entries) = index_entries(&body) {
            self.referrers_state().learnt(host, ReferrersSource::Api);
            return Ok(Some((keep_wanted(entries, artifact_types), None)));
        }
        let codes = crate::error::ApiErrors::parse(&body);
        if codes.contains(&crate::ErrorCode::NameUnknown) {
            // The repository is missing: that says nothing of the API, and
            // nothing is listed either way.
            tracing::debug!(repository = %repo, "no such repository: referrers support still unknown");
        } else {
            tracing::debug!(registry = host, "no referrers API: using the tag schema");
            self.referrers_state()
                .learnt(host, ReferrersSource::TagSchema);
        }
        Ok(None)
    }

    /// A page a `Link` named.
    async fn referrers_page(
        &self,
        repo: &Repository,
        url: Url,
        artifact_types: &[String],
    ) -> Result<(Vec<Descriptor>, Option<Url>), Error> {
        let resp = self.send(self.referrers_call(repo, url.clone())).await?;
        self.read_referrers_page(resp, &url, artifact_types).await
    }

    fn referrers_call(&self, repo: &Repository, url: Url) -> Call {
        Call::new(Method::GET, url, repo.registry(), Scopes::pull(repo.name()))
            .header(header::ACCEPT, OCI_INDEX)
    }

    /// A page's entries of the types asked for, and the next page's URL.
    async fn read_referrers_page(
        &self,
        resp: reqwest::Response,
        url: &Url,
        artifact_types: &[String],
    ) -> Result<(Vec<Descriptor>, Option<Url>), Error> {
        let next = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .and_then(|l| url.join(&l).ok());
        // Trusted only for the one filter we sent: a registry may ignore it
        // (the spec makes it a SHOULD) and then says nothing.
        let filtered = artifact_types.len() == 1
            && resp
                .headers()
                .get_all("oci-filters-applied")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|f| f.trim() == "artifactType");
        let body = self
            .read_whole(resp, MAX_LIST_PAGE_BODY, "referrers page", url)
            .await?;
        let page: Page = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            method: "GET".into(),
            url: redact_url(url),
            reason: format!("the referrers answer is not an OCI index: {e}"),
        })?;
        let entries = page.manifests.unwrap_or_default();
        let entries = if filtered {
            entries
        } else {
            keep_wanted(entries, artifact_types)
        };
        Ok((entries, next))
    }

    /// The tag-schema index's entries; none when the tag is missing or
    /// holds something else than an OCI index (as the spec says to assume).
    async fn referrers_by_tag(
        &self,
        repo: &Repository,
        subject: &Digest,
        artifact_types: &[String],
    ) -> Result<Vec<Descriptor>, Error> {
        let reference = repo.tag(&referrers_tag(subject))?;
        let manifest = match self.get_manifest(&reference).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if manifest.media_type != OCI_INDEX {
            tracing::warn!(
                tag = %reference,
                media_type = %manifest.media_type,
                "the referrers tag holds no OCI index: taken as no referrers"
            );
            return Ok(Vec::new());
        }
        match manifest.content() {
            Ok(index) => Ok(keep_wanted(index.manifests, artifact_types)),
            Err(e) => {
                tracing::warn!(tag = %reference, error = %e, "the referrers tag's index is unreadable: taken as no referrers");
                Ok(Vec::new())
            }
        }
    }
}

/// The entries of a body that is an OCI index.
fn index_entries(body: &[u8]) -> Option<Vec<Descriptor>> {
    let page: Page = serde_json::from_slice(body).ok()?;
    match page.media_type.as_deref() {
        None | Some(OCI_INDEX) => page.manifests,
        Some(_) => None,
    }
}

/// The entries of the types asked for (all when none is).
fn keep_wanted(entries: Vec<Descriptor>, artifact_types: &[String]) -> Vec<Descriptor> {
    if artifact_types.is_empty() {
        return entries;
    }
    entries
        .into_iter()
        .filter(|d| {
            d.artifact_type
                .as_ref()
                .is_some_and(|t| artifact_types.contains(t))
        })
        .collect()
}
