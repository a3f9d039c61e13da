//! A registry with the OCI 1.1 referrers API, purpose-built because none
//! that serves it can be installed here (distribution 2.8 has no such API).
//!
//! It keeps what is pushed to it in memory, per repository, and serves
//! enough of the distribution spec to be a source or a target: manifests
//! (PUT, GET, HEAD, DELETE by tag or digest, bytes kept as sent), blobs
//! (HEAD, GET; uploads by POST then PUT, PATCH chunks, a single POST with
//! `?digest=`, mounts), the tag list (`n`, `last`, `Link`), and
//! `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose
//! `subject` is that digest, each with its `artifactType` (else its
//! config's media type) and annotations, filtered by `artifactType` (saying
//! so with `OCI-Filters-Applied`) and paged with `Link` past
//! [`ReferrersServerOptions::page_size`] entries. A manifest PUT with a
//! `subject` is answered `OCI-Subject`.
//!
//! What it does not check: that the blobs and children a manifest names
//! exist (distribution refuses such a manifest), auth, ranges.
//! [`ReferrersServerOptions`] switches the filter off (a registry may ignore
//! it) or the whole API (then it answers as distribution 2.8 does).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use registry_client::media_type::{OCI_INDEX, OCI_MANIFEST};
use registry_client::Digest;
use serde_json::{json, Value};

use crate::server::{self, route, Body, BoxError, Route, Server};

/// How a [`ReferrersServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferrersServerOptions {
    /// Referrers per page of the API's answer; more are paged with `Link`.
    pub page_size: usize,
    /// Apply an `artifactType` filter (and answer `OCI-Filters-Applied`).
    /// Off, it is ignored, as the spec allows (the filter is a SHOULD).
    pub apply_filter: bool,
    /// Serve the referrers API. Off, `/referrers/` answers a bare 404 and a
    /// PUT no `OCI-Subject`, as distribution 2.8 does.
    pub referrers_api: bool,
}

impl Default for ReferrersServerOptions {
    fn default() -> Self {
        ReferrersServerOptions {
            page_size: 100,
            apply_filter: true,
            referrers_api: true,
        }
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Store {
    /// (repository, digest) → bytes.
    blobs: HashMap<(String, String), Bytes>,
    /// (repository, digest) → (media type, bytes).
    manifests: HashMap<(String, String), (String, Bytes)>,
    /// (repository, tag) → digest.
    tags: BTreeMap<(String, String), String>,
    /// upload id → (repository, bytes so far).
    uploads: HashMap<String, (String, Vec<u8>)>,
}

struct Shared {
    options: ReferrersServerOptions,
    store: Mutex<Store>,
    requests: Mutex<Vec<ServedRequest>>,
    uploads: AtomicUsize,
}

/// A running referrers-API registry on 127.0.0.1; stops on drop.
pub struct ReferrersServer {
    shared: Arc<Shared>,
    server: Server,
}

impl ReferrersServer {
    /// Starts with the default options: the API on, filtering, 100 a page.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ReferrersServerOptions::default()).await
    }

    pub async fn start_with(options: ReferrersServerOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.page_size > 0, "a page holds at least one referrer");
        let listener = server::bind_loopback().await?;
        let shared = Arc::new(Shared {
            options,
            store: Mutex::default(),
            requests: Mutex::default(),
            uploads: AtomicUsize::new(0),
        });
        let handler_shared = shared.clone();
        let server = Server::spawn(vec![listener], move |req| {
            let shared = handler_shared.clone();
            async move { shared.handle(req).await }
        })?;
        Ok(ReferrersServer { shared, server })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.addr().port())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ServedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests with this method whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.as_str() == method && r.path.contains(path_contains))
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// The tags of `repo`, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.shared.tags_of(repo)
    }

    /// The bytes of a manifest stored in `repo`, by digest.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Option<Bytes> {
        let store = self.shared.store.lock().unwrap();
        store
            .manifests
            .get(&(repo.to_string(), digest.to_string()))
            .map(|(_, b)| b.clone())
    }

    /// Whether `repo` holds the blob.
    pub fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        let store = self.shared.store.lock().unwrap();
        store
            .blobs
            .contains_key(&(repo.to_string(), digest.to_string()))
    }
}

// ---- answers ------------------------------------------------------------

fn respond(status: StatusCode) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("docker-distribution-api-version", "registry/2.0")
}

fn empty(status: StatusCode) -> Result<Response<Body>, BoxError> {
    Ok(respond(status).body(server::full(Bytes::new()))?)
}

/// An error answer with the spec's `{"errors": [...]}` body.
fn error(status: StatusCode, code: &str, message: &str) -> Result<Response<Body>, BoxError> {
    let body = json!({"errors": [{"code": code, "message": message}]}).to_string();
    Ok(respond(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(server::full(body))?)
}

fn query_value(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The digest of `bytes` in the algorithm `named` uses, or why not.
fn check_digest(named: &str, bytes: &[u8]) -> Result<Digest, String> {
    let wanted = Digest::parse(named).map_err(|e| e.to_string())?;
    let actual = Digest::of(wanted.algorithm(), bytes);
    if actual == wanted {
        Ok(actual)
    } else {
        Err(format!("the content's digest is {actual}, not {wanted}"))
    }
}

/// A tag as the spec's grammar allows: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The descriptor the referrers API lists for a manifest: `artifactType`
/// (else the config's media type; none for an index without one) and
/// annotations, as the spec says.
fn referrer_descriptor(media_type: &str, digest: &str, bytes: &[u8], json: &Value) -> Value {
    let mut d = json!({
        "mediaType": json["mediaType"].as_str().unwrap_or(media_type),
        "digest": digest,
        "size": bytes.len(),
    });
    let artifact_type = json["artifactType"]
        .as_str()
        .filter(|t| !t.is_empty())
        .or_else(|| json["config"]["mediaType"].as_str());
    if let Some(t) = artifact_type {
        d["artifactType"] = json!(t);
    }
    if let Some(a) = json.get("annotations").filter(|a| a.is_object()) {
        d["annotations"] = a.clone();
    }
    d
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_owned);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        let body = req.into_body().collect().await?.to_bytes();
        let q = query.clone().unwrap_or_default();
        let response = match route(&path) {
            Route::Base => empty(StatusCode::OK),
            Route::Manifest(repo, reference) => match method {
                Method::PUT => self.put_manifest(&repo, &reference, &content_type, body),
                Method::GET | Method::HEAD => {
                    self.get_manifest(&repo, &reference, method == Method::HEAD)
                }
                Method::DELETE => self.delete_manifest(&repo, &reference),
                _ => empty(StatusCode::METHOD_NOT_ALLOWED),
            },
            Route::Referrers(repo, digest) if method == Method::GET => {
                self.referrers(&repo, &digest, &q)
            }
            Route::Blob(repo, digest) if method == Method::GET || method == Method::HEAD => {
                self.blob(&repo, &digest, method == Method::HEAD)
            }
            Route::Uploads(repo, id) => self.upload(&repo, id, &method, &q, body),
            Route::Tags(repo) if method == Method::GET => self.tag_list(&repo, &q),
            _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
        }?;
        self.requests.lock().unwrap().push(ServedRequest {
            method,
            path,
            query,
            status: response.status().as_u16(),
        });
        Ok(response)
    }

    fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Response<Body>, BoxError> {
        let (digest, tag) = if reference.contains(':') {
            match check_digest(reference, &bytes) {
                Ok(d) => (d, None),
                Err(why) => return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", &why),
            }
        } else if is_tag(reference) {
            (Digest::sha256_of(&bytes), Some(reference))
        } else {
            return error(StatusCode::BAD_REQUEST, "TAG_INVALID", "not a valid tag");
        };
        let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
            return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "not JSON");
        };
        let subject = json["subject"]["digest"].as_str().map(str::to_owned);
        let mut store = self.store.lock().unwrap();
        if let Some(tag) = tag {
            store
                .tags
                .insert((repo.into(), tag.into()), digest.to_string());
        }
        store.manifests.insert(
            (repo.into(), digest.to_string()),
            (media_type.into(), bytes),
        );
        let mut b = respond(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{repo}/manifests/{digest}"))
            .header("docker-content-digest", digest.to_string());
        if let Some(subject) = subject.filter(|_| self.options.referrers_api) {
            b = b.header("oci-subject", subject);
        }
        Ok(b.body(server::full(Bytes::new()))?)
    }

    /// The digest a tag or digest reference names in `repo`, if stored.
    fn resolve(store: &Store, repo: &str, reference: &str) -> Option<String> {
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            store.tags.get(&(repo.into(), reference.into()))?.clone()
        };
        store
            .manifests
            .contains_key(&(repo.into(), digest.clone()))
            .then_some(digest)
    }

    fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> Result<Response<Body>, BoxError> {
        let store = self.store.lock().unwrap();
        let Some(digest) = Self::resolve(&store, repo, reference) else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        };
        let (media_type, bytes) = store.manifests[&(repo.to_string(), digest.clone())].clone();
        Ok(respond(StatusCode::OK)
            .header(header::CONTENT_TYPE, media_type)
            .header("docker-content-digest", digest)
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(server::full(if head { Bytes::new() } else { bytes }))?)
    }

    fn delete_manifest(&self, repo: &str, reference: &str) -> Result<Response<Body>, BoxError> {
        let mut store = self.store.lock().unwrap();
        let Some(digest) = Self::resolve(&store, repo, reference) else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        };
        if reference.contains(':') {
            store.manifests.remove(&(repo.to_string(), digest.clone()));
            store.tags.retain(|(r, _), d| !(r == repo && *d == digest));
        } else {
            store
                .tags
                .remove(&(repo.to_string(), reference.to_string()));
        }
        empty(StatusCode::ACCEPTED)
    }

    fn referrers(&self, repo: &str, digest: &str, query: &str) -> Result<Response<Body>, BoxError> {
        if !self.options.referrers_api {
            // What distribution 2.8's router answers a path it does not know.
            return Ok(Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(server::full("404 page not found\n"))?);
        }
        if Digest::parse(digest).is_err() {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        }
        let store = self.store.lock().unwrap();
        if !store.manifests.keys().any(|(r, _)| r == repo) {
            return error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        let filter = query_value(query, "artifactType").filter(|_| self.options.apply_filter);
        let mut all: Vec<(String, Value)> = store
            .manifests
            .iter()
            .filter(|((r, _), _)| r == repo)
            .filter_map(|((_, d), (media_type, bytes))| {
                let json: Value = serde_json::from_slice(bytes).ok()?;
                (json["subject"]["digest"].as_str() == Some(digest))
                    .then(|| (d.clone(), referrer_descriptor(media_type, d, bytes, &json)))
            })
            .filter(|(_, d)| {
                filter
                    .as_deref()
                    .is_none_or(|t| d["artifactType"].as_str() == Some(t))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let n = self.options.page_size;
        let page: usize = query_value(query, "page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let entries: Vec<Value> = all
            .iter()
            .skip(page * n)
            .take(n)
            .map(|(_, d)| d.clone())
            .collect();
        let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        let mut b = respond(StatusCode::OK).header(header::CONTENT_TYPE, OCI_INDEX);
        if filter.is_some() {
            b = b.header("oci-filters-applied", "artifactType");
        }
        if all.len() > (page + 1) * n {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            next.append_pair("page", &(page + 1).to_string());
            if let Some(t) = query_value(query, "artifactType") {
                next.append_pair("artifactType", &t);
            }
            b = b.header(
                header::LINK,
                format!(
                    "</v2/{repo}/referrers/{digest}?{}>; rel=\"next\"",
                    next.finish()
                ),
            );
        }
        Ok(b.body(server::full(body.to_string()))?)
    }

    fn blob(&self, repo: &str, digest: &str, head: bool) -> Result<Response<Body>, BoxError> {
        let store = self.store.lock().unwrap();
        let Some(blob) = store.blobs.get(&(repo.into(), digest.into())).cloned() else {
            return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
        };
        Ok(respond(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("docker-content-digest", digest)
            .header(header::CONTENT_LENGTH, blob.len())
            .body(server::full(if head { Bytes::new() } else { blob }))?)
    }

    /// A blob whole, verified: 201, or 400 `DIGEST_INVALID`.
    fn commit_blob(
        store: &mut Store,
        repo: &str,
        named: &str,
        bytes: Bytes,
    ) -> Result<Response<Body>, BoxError> {
        let digest = match check_digest(named, &bytes) {
            Ok(d) => d,
            Err(why) => return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", &why),
        };
        store.blobs.insert((repo.into(), digest.to_string()), bytes);
        Ok(respond(StatusCode::CREATED)
            .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
            .header("docker-content-digest", digest.to_string())
            .body(server::full(Bytes::new()))?)
    }

    fn upload(
        &self,
        repo: &str,
        id: Option<String>,
        method: &Method,
        query: &str,
        body: Bytes,
    ) -> Result<Response<Body>, BoxError> {
        let mut store = self.store.lock().unwrap();
        let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}");
        let session = |id: &str, held: usize, status: StatusCode| {
            Ok(respond(status)
                .header(header::LOCATION, location(id))
                .header(header::RANGE, format!("0-{}", held.saturating_sub(1)))
                .header("docker-upload-uuid", id)
                .body(server::full(Bytes::new()))?)
        };
        let Some(id) = id else {
            if *method != Method::POST {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            if let (Some(mount), Some(from)) =
                (query_value(query, "mount"), query_value(query, "from"))
            {
                if let Some(blob) = store.blobs.get(&(from, mount.clone())).cloned() {
                    return Self::commit_blob(&mut store, repo, &mount, blob);
                }
            } else if let Some(digest) = query_value(query, "digest") {
                return Self::commit_blob(&mut store, repo, &digest, body);
            }
            let id = format!("u{}", self.uploads.fetch_add(1, Ordering::Relaxed));
            store.uploads.insert(id.clone(), (repo.into(), Vec::new()));
            return session(&id, 0, StatusCode::ACCEPTED);
        };
        let Some((_, held)) = store.uploads.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown",
            );
        };
        match *method {
            Method::PATCH => {
                held.extend_from_slice(&body);
                let len = held.len();
                session(&id, len, StatusCode::ACCEPTED)
            }
            Method::GET => {
                let len = held.len();
                session(&id, len, StatusCode::NO_CONTENT)
            }
            Method::PUT => {
                held.extend_from_slice(&body);
                let whole = Bytes::from(std::mem::take(held));
                store.uploads.remove(&id);
                let named = query_value(query, "digest").unwrap_or_default();
                Self::commit_blob(&mut store, repo, &named, whole)
            }
            Method::DELETE => {
                store.uploads.remove(&id);
                empty(StatusCode::NO_CONTENT)
            }
            _ => empty(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    fn tag_list(&self, repo: &str, query: &str) -> Result<Response<Body>, BoxError> {
        let tags = self.tags_of(repo);
        if tags.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        let last = query_value(query, "last");
        let after: Vec<String> = tags
            .into_iter()
            .filter(|t| last.as_ref().is_none_or(|l| t > l))
            .collect();
        let n = query_value(query, "n")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let page: Vec<String> = after.iter().take(n).cloned().collect();
        let mut b = respond(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
        if after.len() > page.len() && !page.is_empty() {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            next.append_pair("n", &n.to_string());
            next.append_pair("last", page.last().expect("not empty"));
            b = b.header(
                header::LINK,
                format!("</v2/{repo}/tags/list?{}>; rel=\"next\"", next.finish()),
            );
        }
        let body = json!({"name": repo, "tags": page}).to_string();
        Ok(b.body(server::full(body))?)
    }

    fn tags_of(&self, repo: &str) -> Vec<String> {
        let store = self.store.lock().unwrap();
        store
            .tags
            .keys()
            .filter(|(r, _)| r == repo)
            .map(|(_, t)| t.clone())
            .collect()
    }
}
