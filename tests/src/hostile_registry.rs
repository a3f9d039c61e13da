//! A hostile registry: a purpose-built OCI Distribution server that
//! misbehaves on demand, because no real server does.
//!
//! Each instance serves two repositories: `good` (a small, well-formed
//! image under `good:v1`) and `evil`, where one [`Misbehaviour`] applies.
//! It stores what is pushed to it (per repository: blobs, manifests, tags),
//! so it can be a source, a target, or both. The misbehaviours are data: a
//! test names one, and [`Misbehaviour::ALL`] lists them for a table of
//! cases.
//!
//! Besides its main listener (plain HTTP, or TLS with a [`TestCa`] of its
//! own when [`Misbehaviour::needs_tls`]), it always has a second plain-HTTP
//! listener, "elsewhere", on another port: a foreign origin to point
//! redirects, upload `Location`s and token realms at, which records every
//! request it gets. [`Misbehaviour::needs_raw`] cases get a third, raw TCP
//! listener where HTTP itself goes wrong (headers that never end, bytes
//! that are not HTTP); the evil image is then reached there
//! ([`HostileRegistry::evil_host`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use registry_client::media_type::{OCI_INDEX, OCI_MANIFEST};
use registry_client::Digest;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::images::{image, TestImage};
use crate::server::{self, route, Body, BoxError, Route, Server};
use crate::tls::TestCa;

/// One way the `evil` repository (or its token endpoint, or its upload
/// sessions) misbehaves. `good` always behaves, except where a
/// misbehaviour is host-wide by nature (a token realm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Everything as it should be.
    None,
    // ---- digests and sizes ----
    /// `Docker-Content-Digest` names another manifest than the bytes sent
    /// (and the server answers that digest with the same bytes).
    DigestHeaderLies,
    /// A layer's body is 100 bytes longer than its descriptor says.
    BlobLonger,
    /// A layer's body is 100 bytes shorter than its descriptor says.
    BlobShorter,
    /// A layer's first GET breaks after 100 KiB; the ranged GET that
    /// continues it gets a `206` whose `Content-Range` starts at 0.
    ContentRangeElsewhere,
    /// A layer descriptor's `size` is `u64::MAX`.
    HugeSize,
    /// A manifest's `Content-Length` is 1000 bytes more than it sends.
    ManifestLengthLies,
    // ---- redirects ----
    /// A layer GET redirects to a new URL every time, forever.
    RedirectLoop,
    /// (TLS) a layer GET redirects to plain `http://` elsewhere.
    RedirectHttpsToHttp,
    // ---- auth ----
    /// `evil` answers every request 401, with a new challenge each time.
    UnauthorizedLoop,
    /// The token endpoint never answers a request for `evil`'s scope.
    TokenNeverAnswers,
    /// Tokens come with `expires_in: u64::MAX`.
    TokenHugeExpiry,
    /// A 2 MiB token answer for `evil`'s scope.
    TokenHugeAnswer,
    /// (TLS) the challenge's realm is on plain `http://` (elsewhere).
    HttpRealm,
    /// (TLS) the realm is on another host name over https (`localhost`
    /// for a registry reached as `127.0.0.1`), as Docker Hub's is.
    OtherHostRealm,
    // ---- endless and slow answers ----
    /// A manifest body that never ends.
    EndlessManifest,
    /// A layer body that never ends (and has no `Content-Length`).
    EndlessBlob,
    /// A manifest body trickled a byte every 200 ms.
    SlowManifestBody,
    /// (raw) response headers trickled a byte every 100 ms, never ending.
    SlowHeaders,
    /// (raw) bytes that are not HTTP, then the connection closes.
    NotHttp,
    /// 503 for every `evil` request, forever.
    ServerErrorForever,
    /// 429 with `Retry-After: 9999999999` for `evil`'s manifests.
    HugeRetryAfter,
    // ---- listings ----
    /// A tag list of a million and one entries, in one page.
    MillionTags,
    /// The same tag listed a thousand times, over two pages.
    DuplicateTags,
    /// Tag pages that each name a new `Link`, forever.
    NewLinkEveryPage,
    // ---- manifest JSON ----
    /// The manifest is cut off: not JSON at the top level.
    MalformedTopLevel,
    /// `config` is a string, not a descriptor.
    MalformedConfig,
    /// `layers` is an object, not an array.
    MalformedLayers,
    /// A layer descriptor without a `digest`.
    MalformedLayer,
    /// An index entry that is a string, not a descriptor.
    MalformedIndexEntry,
    /// An index entry whose `platform` is a string.
    MalformedPlatform,
    /// A layer digest that is not a digest (`sha256:not-hex`).
    InvalidDigest,
    /// A layer `size` of -1.
    NegativeSize,
    /// The manifest is served as `Content-Type` index, while its own
    /// `mediaType` says image manifest.
    WrongContentType,
    /// A 200 with an HTML login page instead of a manifest.
    HtmlPage,
    // ---- graphs ----
    /// An index whose child, asked for by digest, is answered with the
    /// index itself (a cycle, if the answer were trusted).
    IndexNamesItself,
    /// A chain of 1000 indexes, each the only child of the next.
    NestedIndexes,
    /// An index of 20,000 children.
    TooManyChildren,
    // ---- uploads (evil as a target) ----
    /// Upload sessions open with a `Location` on another host (elsewhere).
    UploadElsewhere,
    /// Upload sessions open with `OCI-Chunk-Min-Length: u64::MAX`.
    HugeChunkMinLength,
    /// A finished upload answers with another blob's `Docker-Content-Digest`.
    UploadDigestLies,
}

impl Misbehaviour {
    /// Served over TLS (the main listener), with a CA of its own.
    pub fn needs_tls(self) -> bool {
        matches!(
            self,
            Misbehaviour::RedirectHttpsToHttp
                | Misbehaviour::HttpRealm
                | Misbehaviour::OtherHostRealm
        )
    }

    /// The evil image is reached on the raw TCP listener.
    pub fn needs_raw(self) -> bool {
        matches!(self, Misbehaviour::SlowHeaders | Misbehaviour::NotHttp)
    }

    /// Whether the registry asks for bearer tokens (every repository).
    fn token_auth(self) -> bool {
        matches!(
            self,
            Misbehaviour::UnauthorizedLoop
                | Misbehaviour::TokenNeverAnswers
                | Misbehaviour::TokenHugeExpiry
                | Misbehaviour::TokenHugeAnswer
                | Misbehaviour::HttpRealm
                | Misbehaviour::OtherHostRealm
        )
    }
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Main,
    Elsewhere,
}

/// One request the server answered (or is still answering).
#[derive(Debug, Clone)]
pub struct Seen {
    pub listener: Listener,
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub authorization: Option<String>,
    /// The request body, for token POSTs (small bodies only).
    pub form: Option<String>,
}

#[derive(Default)]
struct Store {
    /// (repository, digest) → bytes.
    blobs: HashMap<(String, String), Bytes>,
    /// (repository, digest) → (media type, bytes).
    manifests: HashMap<(String, String), (String, Bytes)>,
    /// (repository, tag) → digest.
    tags: HashMap<(String, String), String>,
    /// upload id → (repository, bytes so far).
    uploads: HashMap<String, (String, Vec<u8>)>,
}

struct Shared {
    misbehaviour: Misbehaviour,
    store: Mutex<Store>,
    seen: Mutex<Vec<Seen>>,
    counter: AtomicUsize,
    /// `scheme://host:port` of the main listener.
    main_base: String,
    /// `http://127.0.0.1:port` of the elsewhere listener.
    elsewhere_base: String,
    main_port: u16,
    /// The million-tag page, built once.
    million_tags: Option<Bytes>,
}

/// A running hostile registry; stops on drop.
pub struct HostileRegistry {
    shared: Arc<Shared>,
    _main: Server,
    _elsewhere: Server,
    raw: Option<(u16, JoinHandle<()>)>,
    ca: Option<TestCa>,
    good: TestImage,
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.raw {
            task.abort();
        }
    }
}

/// The repository that behaves.
pub const GOOD: &str = "good";
/// The repository that misbehaves.
pub const EVIL: &str = "evil";
/// The tag both are served under.
pub const TAG: &str = "v1";

impl HostileRegistry {
    /// Starts on 127.0.0.1 (and `[::1]` on the same port where possible,
    /// so `localhost` reaches it too), with `good:v1` and `evil:v1` in place.
    pub async fn start(misbehaviour: Misbehaviour) -> anyhow::Result<Self> {
        let v4 = server::bind_loopback().await?;
        let main_port = v4.local_addr()?.port();
        let mut listeners = vec![v4];
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", main_port)).await {
            listeners.push(v6);
        }
        let elsewhere = server::bind_loopback().await?;
        let elsewhere_base = format!("http://127.0.0.1:{}", elsewhere.local_addr()?.port());
        let (ca, acceptor) = if misbehaviour.needs_tls() {
            let ca = TestCa::new()?;
            let acceptor = ca.acceptor()?;
            (Some(ca), Some(acceptor))
        } else {
            (None, None)
        };
        let scheme = if ca.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            misbehaviour,
            store: Mutex::default(),
            seen: Mutex::default(),
            counter: AtomicUsize::new(0),
            main_base: format!("{scheme}://127.0.0.1:{main_port}"),
            elsewhere_base,
            main_port,
            million_tags: (misbehaviour == Misbehaviour::MillionTags).then(|| {
                let tags: Vec<String> = (0..1_000_001)
                    .map(|i| format!("t{i}"))
                    .chain([TAG.to_string()])
                    .collect();
                Bytes::from(serde_json::to_vec(&json!({"name": EVIL, "tags": tags})).unwrap())
            }),
        });
        let good = image(1, &[4096, 8192], false);
        {
            let mut store = shared.store.lock().unwrap();
            put_image(&mut store, GOOD, TAG, &good);
            seed_evil(&mut store, misbehaviour);
        }
        let handler = |listener: Listener| {
            let shared = shared.clone();
            move |req| {
                let shared = shared.clone();
                async move { shared.handle(listener, req).await }
            }
        };
        let main = match acceptor {
            Some(acceptor) => Server::spawn_tls(listeners, acceptor, handler(Listener::Main))?,
            None => Server::spawn(listeners, handler(Listener::Main))?,
        };
        let elsewhere = Server::spawn(vec![elsewhere], handler(Listener::Elsewhere))?;
        let raw = if misbehaviour.needs_raw() {
            let listener = server::bind_loopback().await?;
            let port = listener.local_addr()?.port();
            Some((port, tokio::spawn(raw_loop(listener, misbehaviour))))
        } else {
            None
        };
        Ok(HostileRegistry {
            shared,
            _main: main,
            _elsewhere: elsewhere,
            raw,
            ca,
            good,
        })
    }

    /// `127.0.0.1:PORT` of the main listener.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.shared.main_port)
    }

    /// Where the evil image is: the raw listener for [`Misbehaviour::needs_raw`],
    /// else [`HostileRegistry::host`].
    pub fn evil_host(&self) -> String {
        match &self.raw {
            Some((port, _)) => format!("127.0.0.1:{port}"),
            None => self.host(),
        }
    }

    /// `HOST/good:v1`.
    pub fn good_ref(&self) -> String {
        format!("{}/{GOOD}:{TAG}", self.host())
    }

    /// `EVIL_HOST/evil:v1`.
    pub fn evil_ref(&self) -> String {
        format!("{}/{EVIL}:{TAG}", self.evil_host())
    }

    /// The good image's manifest digest.
    pub fn good_digest(&self) -> Digest {
        self.good.digest.clone()
    }

    /// The CA whose certificate the TLS listener presents, if it is TLS.
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests that reached the elsewhere listener.
    pub fn seen_elsewhere(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.listener == Listener::Elsewhere)
            .collect()
    }

    /// Tags pushed to (or seeded in) `repo`.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.shared.tags_of(repo)
    }

    /// Manifests stored in `repo` (seeded ones included).
    pub fn manifest_count(&self, repo: &str) -> usize {
        let store = self.shared.store.lock().unwrap();
        store.manifests.keys().filter(|(r, _)| r == repo).count()
    }
}

// ---- content ----------------------------------------------------------

fn digest_of(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

fn put_image(store: &mut Store, repo: &str, tag: &str, img: &TestImage) {
    for blob in std::iter::once(&img.config).chain(&img.layers) {
        store
            .blobs
            .insert((repo.into(), digest_of(blob)), blob.clone());
    }
    put_manifest(store, repo, Some(tag), img.media_type, img.manifest.clone());
}

fn put_manifest(store: &mut Store, repo: &str, tag: Option<&str>, media_type: &str, bytes: Bytes) {
    let digest = digest_of(&bytes);
    if let Some(tag) = tag {
        store.tags.insert((repo.into(), tag.into()), digest.clone());
    }
    store
        .manifests
        .insert((repo.into(), digest), (media_type.into(), bytes));
}

fn layer_descriptor(blob: &[u8]) -> Value {
    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(blob), "size": blob.len()})
}

/// `evil:v1` for each misbehaviour: a plain image, or the hostile bytes.
fn seed_evil(store: &mut Store, m: Misbehaviour) {
    use Misbehaviour as M;
    let layer_size = match m {
        M::ContentRangeElsewhere => 300 * 1024,
        _ => 20_000,
    };
    let img = image(2, &[layer_size], false);
    let config = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(&img.config), "size": img.config.len()});
    let layer = layer_descriptor(&img.layers[0]);
    let manifest = |config: Value, layers: Value| {
        Bytes::from(
            serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}))
                .unwrap(),
        )
    };
    let index_of = |manifests: Value| {
        Bytes::from(
            serde_json::to_vec(
                &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
            )
            .unwrap(),
        )
    };
    let child = json!({"mediaType": OCI_MANIFEST, "digest": img.digest.to_string(), "size": img.manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}});
    // The plain image is always there (by digest), for indexes to name.
    put_image(store, EVIL, "plain", &img);
    let (media_type, bytes) = match m {
        M::MalformedTopLevel => {
            let whole = manifest(config, json!([layer]));
            (OCI_MANIFEST, whole.slice(..whole.len() / 2))
        }
        M::MalformedConfig => (
            OCI_MANIFEST,
            manifest(json!(img.config.len()), json!([layer])),
        ),
        M::MalformedLayers => (OCI_MANIFEST, manifest(config, json!({"0": layer}))),
        M::MalformedLayer => (
            OCI_MANIFEST,
            manifest(
                config,
                json!([{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 5}]),
            ),
        ),
        M::InvalidDigest => {
            let mut bad = layer.clone();
            bad["digest"] = json!("sha256:not-hex");
            (OCI_MANIFEST, manifest(config, json!([bad])))
        }
        M::NegativeSize => {
            let mut bad = layer.clone();
            bad["size"] = json!(-1);
            (OCI_MANIFEST, manifest(config, json!([bad])))
        }
        M::HugeSize => {
            let mut bad = layer.clone();
            bad["size"] = json!(u64::MAX);
            (OCI_MANIFEST, manifest(config, json!([bad])))
        }
        M::MalformedIndexEntry => (OCI_INDEX, index_of(json!([img.digest.to_string()]))),
        M::MalformedPlatform => {
            let mut bad = child.clone();
            bad["platform"] = json!("linux/amd64");
            (OCI_INDEX, index_of(json!([bad])))
        }
        M::IndexNamesItself => {
            // The child's digest is one the server answers with the index.
            let mut own = child.clone();
            own["digest"] = json!(digest_of(b"the index itself"));
            (OCI_INDEX, index_of(json!([own])))
        }
        M::NestedIndexes => {
            let mut below = child.clone();
            let mut top = Bytes::new();
            for _ in 0..1000 {
                top = index_of(json!([below]));
                put_manifest(store, EVIL, None, OCI_INDEX, top.clone());
                below =
                    json!({"mediaType": OCI_INDEX, "digest": digest_of(&top), "size": top.len()});
            }
            (OCI_INDEX, top)
        }
        M::TooManyChildren => {
            let children: Vec<Value> = (0..20_000u32)
                .map(|i| json!({"mediaType": OCI_MANIFEST, "digest": digest_of(&i.to_be_bytes()), "size": 500}))
                .collect();
            (OCI_INDEX, index_of(Value::Array(children)))
        }
        _ => (img.media_type, img.manifest.clone()),
    };
    put_manifest(store, EVIL, Some(TAG), media_type, bytes);
}

// ---- serving ----------------------------------------------------------

fn respond(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

fn empty(status: StatusCode) -> Result<Response<Body>, BoxError> {
    Ok(respond(status).body(server::full(Bytes::new()))?)
}

fn not_found(code: &str) -> Result<Response<Body>, BoxError> {
    Ok(respond(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "application/json")
        .body(server::full(
            json!({"errors": [{"code": code, "message": code.to_lowercase()}]}).to_string(),
        ))?)
}

/// A body of `chunk` repeated forever.
fn endless(chunk: Bytes) -> Body {
    let s = futures::stream::repeat(chunk).map(|b| Ok::<_, BoxError>(Frame::data(b)));
    BodyExt::boxed(StreamBody::new(s))
}

/// `bytes`, one byte every `every`.
fn trickle(bytes: Bytes, every: Duration) -> Body {
    let s = futures::stream::unfold(0usize, move |i| {
        let bytes = bytes.clone();
        async move {
            if i >= bytes.len() {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, BoxError>(Frame::data(bytes.slice(i..=i))), i + 1))
        }
    });
    BodyExt::boxed(StreamBody::new(s))
}

/// `head`, then (once it had time to leave) a broken connection.
fn broken_after(head: Bytes) -> Body {
    let s = futures::stream::unfold(Some(head), |head| async move {
        match head {
            Some(head) => Some((Ok::<_, BoxError>(Frame::data(head)), None)),
            None => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let cut: BoxError = "the hostile registry cuts the body".into();
                Some((Err(cut), None))
            }
        }
    });
    BodyExt::boxed(StreamBody::new(s))
}

fn query_value(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl Shared {
    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn realm(&self) -> String {
        match self.misbehaviour {
            Misbehaviour::HttpRealm => format!("{}/token", self.elsewhere_base),
            Misbehaviour::OtherHostRealm => format!("https://localhost:{}/token", self.main_port),
            _ => format!("{}/token", self.main_base),
        }
    }

    fn challenge(&self, repo: Option<&str>) -> Result<Response<Body>, BoxError> {
        let mut c = format!("Bearer realm=\"{}\",service=\"hostile\"", self.realm());
        if let Some(repo) = repo {
            c += &format!(",scope=\"repository:{repo}:pull,push\"");
        }
        Ok(respond(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, c)
            .header(header::CONTENT_TYPE, "application/json")
            .body(server::full(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ))?)
    }

    async fn handle(
        &self,
        listener: Listener,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, BoxError> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        let body = req.into_body().collect().await?.to_bytes();
        self.seen.lock().unwrap().push(Seen {
            listener,
            method: method.clone(),
            uri: if query.is_empty() {
                path.clone()
            } else {
                format!("{path}?{query}")
            },
            authorization: authorization.clone(),
            form: (path == "/token" && body.len() < 4096)
                .then(|| String::from_utf8_lossy(&body).into_owned()),
        });
        let m = self.misbehaviour;
        let route = route(&path);
        if let Route::Token = route {
            return self.token(&query).await;
        }
        let repo = match &route {
            Route::Manifest(r, _) | Route::Blob(r, _) | Route::Uploads(r, _) | Route::Tags(r) => {
                Some(r.clone())
            }
            _ => None,
        };
        let evil = repo.as_deref() == Some(EVIL);
        if m.token_auth() {
            let bearer = authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer tok-"));
            if m == Misbehaviour::UnauthorizedLoop && evil {
                let n = self.next();
                let c = format!(
                    "Bearer realm=\"{}\",service=\"hostile-{n}\",scope=\"repository:{EVIL}-{n}:pull\",error=\"insufficient_scope\"",
                    self.realm()
                );
                return Ok(respond(StatusCode::UNAUTHORIZED)
                    .header(header::WWW_AUTHENTICATE, c)
                    .body(server::full(Bytes::new()))?);
            }
            if !bearer {
                return self.challenge(repo.as_deref());
            }
        }
        if evil {
            match m {
                Misbehaviour::ServerErrorForever => {
                    return empty(StatusCode::SERVICE_UNAVAILABLE);
                }
                Misbehaviour::HugeRetryAfter if matches!(route, Route::Manifest(..)) => {
                    return Ok(respond(StatusCode::TOO_MANY_REQUESTS)
                        .header(header::RETRY_AFTER, "9999999999")
                        .body(server::full(Bytes::new()))?);
                }
                _ => {}
            }
        }
        match route {
            Route::Base => empty(StatusCode::OK),
            Route::Manifest(repo, reference) => match method {
                Method::PUT => {
                    let mut store = self.store.lock().unwrap();
                    let digest = digest_of(&body);
                    let tag = (!reference.contains(':')).then_some(reference.as_str());
                    put_manifest(&mut store, &repo, tag, &content_type, body);
                    Ok(respond(StatusCode::CREATED)
                        .header("docker-content-digest", digest)
                        .body(server::full(Bytes::new()))?)
                }
                _ => self.manifest(&repo, &reference, method == Method::HEAD),
            },
            Route::Blob(repo, digest) => {
                self.blob(&repo, &digest, &method, range.as_deref(), &query)
            }
            Route::Uploads(repo, id) => self.upload(&repo, id, &method, &query, body),
            Route::Tags(repo) => self.tag_list(&repo, &query),
            Route::Token | Route::Referrers(..) | Route::Other => not_found("NAME_UNKNOWN"),
        }
    }

    async fn token(&self, query: &str) -> Result<Response<Body>, BoxError> {
        let evil_scope = query_value(query, "scope").is_some_and(|s| s.contains(EVIL));
        let n = self.next();
        let answer = match self.misbehaviour {
            Misbehaviour::TokenNeverAnswers if evil_scope => {
                futures::future::pending::<()>().await;
                unreachable!("a pending future never completes")
            }
            Misbehaviour::TokenHugeExpiry => {
                format!(
                    r#"{{"token":"tok-{n}","access_token":"tok-{n}","expires_in":18446744073709551615}}"#
                )
            }
            Misbehaviour::TokenHugeAnswer if evil_scope => {
                format!(r#"{{"token":"tok-{}"}}"#, "x".repeat(2 * 1024 * 1024))
            }
            _ => format!(r#"{{"token":"tok-{n}","access_token":"tok-{n}","expires_in":300}}"#),
        };
        Ok(respond(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(server::full(answer))?)
    }

    fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> Result<Response<Body>, BoxError> {
        use Misbehaviour as M;
        let m = self.misbehaviour;
        let evil = repo == EVIL;
        let found = {
            let store = self.store.lock().unwrap();
            let digest = if reference.contains(':') {
                Some(reference.to_string())
            } else {
                store.tags.get(&(repo.into(), reference.into())).cloned()
            };
            let tagged = || {
                let d = store.tags.get(&(repo.into(), TAG.into()))?;
                store.manifests.get(&(repo.into(), d.clone())).cloned()
            };
            match digest {
                Some(d) => match store.manifests.get(&(repo.into(), d.clone())).cloned() {
                    Some(found) => Some((d, found)),
                    // Asked for the digest it lied about, or the child it
                    // names: the same (tagged) bytes again.
                    None if evil && matches!(m, M::DigestHeaderLies | M::IndexNamesItself) => {
                        tagged().map(|f| (d, f))
                    }
                    None => None,
                },
                None => None,
            }
        };
        let Some((_, (media_type, bytes))) = found else {
            return not_found("MANIFEST_UNKNOWN");
        };
        let announced = if evil && m == M::DigestHeaderLies {
            digest_of(b"a digest that is not the manifest's")
        } else {
            digest_of(&bytes)
        };
        if evil && m == M::HtmlPage {
            let page = Bytes::from_static(b"<html><body><form>Sign in</form></body></html>");
            return Ok(respond(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/html")
                .header(header::CONTENT_LENGTH, page.len())
                .body(server::full(if head { Bytes::new() } else { page }))?);
        }
        let content_type = if evil && m == M::WrongContentType {
            OCI_INDEX.to_string()
        } else {
            media_type
        };
        let b = respond(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header("docker-content-digest", &announced);
        if head {
            return Ok(b
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(server::full(Bytes::new()))?);
        }
        if evil {
            match m {
                M::EndlessManifest => {
                    return Ok(b.body(endless(Bytes::from(vec![b' '; 64 * 1024])))?)
                }
                M::SlowManifestBody => {
                    return Ok(b
                        .header(header::CONTENT_LENGTH, bytes.len())
                        .body(trickle(bytes, Duration::from_millis(200)))?)
                }
                M::ManifestLengthLies => {
                    return Ok(b
                        .header(header::CONTENT_LENGTH, bytes.len() + 1000)
                        .body(broken_after(bytes))?)
                }
                _ => {}
            }
        }
        Ok(b.header(header::CONTENT_LENGTH, bytes.len())
            .body(server::full(bytes))?)
    }

    fn blob(
        &self,
        repo: &str,
        digest: &str,
        method: &Method,
        range: Option<&str>,
        query: &str,
    ) -> Result<Response<Body>, BoxError> {
        use Misbehaviour as M;
        let m = self.misbehaviour;
        let evil = repo == EVIL;
        let Some(blob) = self
            .store
            .lock()
            .unwrap()
            .blobs
            .get(&(repo.into(), digest.into()))
            .cloned()
        else {
            return not_found("BLOB_UNKNOWN");
        };
        // The hostile parts are the layer; the config behaves.
        let layer = blob.len() > 10_000;
        let b = respond(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("docker-content-digest", digest);
        if *method == Method::HEAD {
            return Ok(b
                .header(header::CONTENT_LENGTH, blob.len())
                .body(server::full(Bytes::new()))?);
        }
        if evil && layer {
            match m {
                M::BlobLonger => {
                    let mut longer = blob.to_vec();
                    longer.extend_from_slice(&[0u8; 100]);
                    return Ok(b
                        .header(header::CONTENT_LENGTH, longer.len())
                        .body(server::full(longer))?);
                }
                M::BlobShorter => {
                    let shorter = blob.slice(..blob.len() - 100);
                    return Ok(b
                        .header(header::CONTENT_LENGTH, shorter.len())
                        .body(server::full(shorter))?);
                }
                M::EndlessBlob => return Ok(b.body(endless(blob))?),
                M::ContentRangeElsewhere => {
                    if range.is_none() {
                        return Ok(b
                            .header(header::CONTENT_LENGTH, blob.len())
                            .body(broken_after(blob.slice(..100 * 1024)))?);
                    }
                    let len = blob.len();
                    return Ok(respond(StatusCode::PARTIAL_CONTENT)
                        .header(header::CONTENT_RANGE, format!("bytes 0-{}/{len}", len - 1))
                        .header(header::CONTENT_LENGTH, len)
                        .body(server::full(blob))?);
                }
                M::RedirectLoop => {
                    let hop: u64 = query_value(query, "hop")
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(0);
                    return Ok(respond(StatusCode::TEMPORARY_REDIRECT)
                        .header(
                            header::LOCATION,
                            format!("/v2/{repo}/blobs/{digest}?hop={}", hop + 1),
                        )
                        .body(server::full(Bytes::new()))?);
                }
                M::RedirectHttpsToHttp => {
                    return Ok(respond(StatusCode::TEMPORARY_REDIRECT)
                        .header(
                            header::LOCATION,
                            format!("{}/v2/{repo}/blobs/{digest}", self.elsewhere_base),
                        )
                        .body(server::full(Bytes::new()))?);
                }
                _ => {}
            }
        }
        if let Some(start) = range
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|s| *s < blob.len())
        {
            let len = blob.len();
            return Ok(respond(StatusCode::PARTIAL_CONTENT)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{len}", len - 1),
                )
                .header(header::CONTENT_LENGTH, len - start)
                .body(server::full(blob.slice(start..)))?);
        }
        Ok(b.header(header::CONTENT_LENGTH, blob.len())
            .body(server::full(blob))?)
    }

    fn upload(
        &self,
        repo: &str,
        id: Option<String>,
        method: &Method,
        query: &str,
        body: Bytes,
    ) -> Result<Response<Body>, BoxError> {
        use Misbehaviour as M;
        let m = self.misbehaviour;
        let evil = repo == EVIL;
        let mut store = self.store.lock().unwrap();
        let location = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}");
        let Some(id) = id else {
            if *method != Method::POST {
                return empty(StatusCode::METHOD_NOT_ALLOWED);
            }
            // Mounts are declined: every blob is uploaded.
            let id = format!("u{}", self.next());
            store.uploads.insert(id.clone(), (repo.into(), Vec::new()));
            let mut b = respond(StatusCode::ACCEPTED)
                .header("docker-upload-uuid", &id)
                .header(header::RANGE, "0-0");
            b = match m {
                M::UploadElsewhere if evil => b.header(
                    header::LOCATION,
                    format!("{}{}", self.elsewhere_base, location(&id)),
                ),
                _ => b.header(header::LOCATION, location(&id)),
            };
            if evil && m == M::HugeChunkMinLength {
                b = b.header("oci-chunk-min-length", u64::MAX.to_string());
            }
            return Ok(b.body(server::full(Bytes::new()))?);
        };
        let Some((_, held)) = store.uploads.get_mut(&id) else {
            return not_found("BLOB_UPLOAD_UNKNOWN");
        };
        match *method {
            Method::PATCH => {
                held.extend_from_slice(&body);
                let end = held.len().saturating_sub(1);
                Ok(respond(StatusCode::ACCEPTED)
                    .header(header::LOCATION, location(&id))
                    .header(header::RANGE, format!("0-{end}"))
                    .body(server::full(Bytes::new()))?)
            }
            Method::GET => {
                let end = held.len().saturating_sub(1);
                Ok(respond(StatusCode::NO_CONTENT)
                    .header(header::LOCATION, location(&id))
                    .header(header::RANGE, format!("0-{end}"))
                    .body(server::full(Bytes::new()))?)
            }
            Method::PUT => {
                held.extend_from_slice(&body);
                let whole = Bytes::from(std::mem::take(held));
                store.uploads.remove(&id);
                let digest = digest_of(&whole);
                if query_value(query, "digest").as_deref() != Some(digest.as_str()) {
                    return Ok(respond(StatusCode::BAD_REQUEST).body(server::full(
                        r#"{"errors":[{"code":"DIGEST_INVALID","message":"digest invalid"}]}"#,
                    ))?);
                }
                store.blobs.insert((repo.into(), digest.clone()), whole);
                let announced = if evil && m == M::UploadDigestLies {
                    digest_of(b"another blob")
                } else {
                    digest.clone()
                };
                Ok(respond(StatusCode::CREATED)
                    .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
                    .header("docker-content-digest", announced)
                    .body(server::full(Bytes::new()))?)
            }
            Method::DELETE => {
                store.uploads.remove(&id);
                empty(StatusCode::NO_CONTENT)
            }
            _ => empty(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    fn tag_list(&self, repo: &str, query: &str) -> Result<Response<Body>, BoxError> {
        use Misbehaviour as M;
        let evil = repo == EVIL;
        let mut tags = self.tags_of(repo);
        let mut link = None;
        if evil {
            match self.misbehaviour {
                M::MillionTags => {
                    let page = self.million_tags.clone().unwrap_or_default();
                    return Ok(respond(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(server::full(page))?);
                }
                M::DuplicateTags => {
                    let page: u32 = query_value(query, "page")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    tags = vec![TAG.to_string(); 500];
                    if page == 0 {
                        link = Some(format!("</v2/{repo}/tags/list?page=1>; rel=\"next\""));
                    }
                }
                M::NewLinkEveryPage => {
                    let n = self.next();
                    tags = vec![format!("t{n}")];
                    link = Some(format!("</v2/{repo}/tags/list?last=t{n}>; rel=\"next\""));
                }
                _ => {}
            }
        }
        let body = serde_json::to_vec(&json!({"name": repo, "tags": tags}))?;
        let mut b = respond(StatusCode::OK).header(header::CONTENT_TYPE, "application/json");
        if let Some(l) = link {
            b = b.header(header::LINK, l);
        }
        Ok(b.body(server::full(body))?)
    }

    fn tags_of(&self, repo: &str) -> Vec<String> {
        let store = self.store.lock().unwrap();
        let mut tags: Vec<String> = store
            .tags
            .keys()
            .filter(|(r, _)| r == repo)
            .map(|(_, t)| t.clone())
            .collect();
        tags.sort();
        tags
    }
}

/// The raw TCP listener: HTTP itself goes wrong.
async fn raw_loop(listener: tokio::net::TcpListener, m: Misbehaviour) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = stream.read(&mut buf).await;
            match m {
                Misbehaviour::SlowHeaders => {
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if stream.write_all(b"a").await.is_err() {
                            return;
                        }
                    }
                }
                _ => {
                    let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                }
            }
        });
    }
}
