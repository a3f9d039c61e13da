//! The client: one pooled HTTP client, the auth handshake, retries with
//! per-host pauses, and redirects that never carry credentials to another host.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use url::Url;

use crate::auth::{Authenticator, Challenge, CredentialStore, Scopes, StaticCredentials};
use crate::error::{redact_url, ApiErrors, Error};
use crate::host_limit::{HostLimits, HostPermit, Lane};
use crate::proxy::Proxy;
use crate::retry::{parse_retry_after, HostGates, RetryPolicy};
use crate::watchdog::{answer_within, Activity, Answer, Watched};

use crate::limits::{MAX_ERROR_BODY as ERROR_BODY_LIMIT, MAX_REDIRECTS};

/// How the client connects: timeouts, retries, TLS and plain-HTTP hosts,
/// per-host request caps, the proxy, and where credentials come from.
///
/// Built with [`ClientConfig::builder`]; every setting not given keeps its
/// default ([`ClientConfig::default`]). The fields can be read, not set:
///
/// ```
/// use std::time::Duration;
/// use registry_client::{Client, ClientConfig, Proxy, ProxyUrl};
///
/// # fn run() -> Result<(), registry_client::Error> {
/// let config = ClientConfig::builder()
///     .user_agent("my-tool/1.0")
///     .read_timeout(Duration::from_secs(30))
///     .proxy(Proxy::all(ProxyUrl::parse("http://proxy.corp:3128")?))
///     .build();
/// assert_eq!(config.read_timeout, Duration::from_secs(30));
/// let client = Client::new(config)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The `User-Agent` of every request (default `mirror/VERSION`).
    pub user_agent: String,
    /// Registries (host or host:port) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Loopback registries use plain HTTP unless they are listed in
    /// `tls_registries`, as docker does (default true).
    pub plain_http_loopback: bool,
    /// Loopback registries that do speak TLS.
    pub tls_registries: Vec<String>,
    /// Extra CA certificates (PEM) trusted besides the OS roots, for
    /// registries and an `https://` proxy alike.
    pub ca_files: Vec<PathBuf>,
    /// How long connecting (TCP and TLS) may take (default 15s).
    pub connect_timeout: Duration,
    /// Longest silence from a server: no answer, no body byte taken or
    /// given (default 120s). A blob stream has no total timeout, only this
    /// one, and an upload waiting on its own source is not silence.
    pub read_timeout: Duration,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Requests in flight at once to one host, reads and writes counted
    /// separately; a download's permit is held until its body ends. The
    /// limit halves when the host answers 429 or 503 and grows back by one
    /// after as many successes as the limit. `None`: no cap and no such
    /// backoff. Default 16.
    pub max_requests_per_host: Option<usize>,
    /// Caps for particular registry hosts (`host` or `host:port`), in place
    /// of `max_requests_per_host`.
    pub host_requests: std::collections::HashMap<String, usize>,
    /// Where each registry's credentials come from (default: none).
    pub credentials: Arc<dyn CredentialStore>,
    /// Which HTTP versions to speak.
    pub http: HttpVersion,
    /// The bounds a user may change (listings).
    pub limits: crate::limits::Limits,
    /// The proxy requests go through; `None` (the default): the one the
    /// environment names when the client is made ([`Proxy::from_env`]).
    pub proxy: Option<Proxy>,
}

/// Which HTTP versions the client speaks. HTTP/1.1 by default: blobs then
/// stream over several connections, where HTTP/2 multiplexes them over one
/// (flow-controlled, its TLS on one core); measured on a TLS registry,
/// HTTP/2 took 1.3× the time and 1.4× the CPU (README, Performance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/2 where a TLS server offers it (ALPN), else HTTP/1.1.
    Auto,
    /// HTTP/1.1 only: one request at a time per connection, several
    /// connections per host.
    #[default]
    Http1,
}

impl std::str::FromStr for HttpVersion {
    type Err = String;
    /// `auto`, or `1.1` (also `1`, `http1`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(HttpVersion::Auto),
            "1.1" | "1" | "http1" => Ok(HttpVersion::Http1),
            _ => Err(format!("{s:?}: use auto or 1.1")),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            user_agent: format!("mirror/{}", env!("CARGO_PKG_VERSION")),
            insecure_registries: Vec::new(),
            plain_http_loopback: true,
            tls_registries: Vec::new(),
            ca_files: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_requests_per_host: Some(16),
            host_requests: std::collections::HashMap::new(),
            credentials: Arc::new(StaticCredentials::new()),
            http: HttpVersion::default(),
            limits: crate::limits::Limits::default(),
            proxy: None,
        }
    }
}

impl ClientConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder(ClientConfig::default())
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> ClientConfigBuilder {
        ClientConfigBuilder(self.clone())
    }
}

/// Builds a [`ClientConfig`]; each method sets the field of its name.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientConfigBuilder(ClientConfig);

impl ClientConfigBuilder {
    /// The `User-Agent` of every request.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.0.user_agent = user_agent.into();
        self
    }

    /// Registries (host or host:port) reached over plain HTTP.
    pub fn insecure_registries<S: Into<String>>(
        mut self,
        hosts: impl IntoIterator<Item = S>,
    ) -> Self {
        self.0.insecure_registries = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Whether loopback registries use plain HTTP unless listed in
    /// [`tls_registries`](Self::tls_registries).
    pub fn plain_http_loopback(mut self, plain: bool) -> Self {
        self.0.plain_http_loopback = plain;
        self
    }

    /// Loopback registries that do speak TLS.
    pub fn tls_registries<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        self.0.tls_registries = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Extra CA certificates (PEM files) trusted besides the OS roots.
    pub fn ca_files<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.0.ca_files = paths.into_iter().map(Into::into).collect();
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// The longest silence from a server.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.0.read_timeout = timeout;
        self
    }

    /// How transient failures are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.0.retry = retry;
        self
    }

    /// Requests in flight at once to one host (`None`: no cap).
    pub fn max_requests_per_host(mut self, max: Option<usize>) -> Self {
        self.0.max_requests_per_host = max;
        self
    }

    /// Caps for particular hosts, in place of `max_requests_per_host`.
    pub fn host_requests<S: Into<String>>(
        mut self,
        caps: impl IntoIterator<Item = (S, usize)>,
    ) -> Self {
        self.0.host_requests = caps.into_iter().map(|(h, n)| (h.into(), n)).collect();
        self
    }

    /// Where each registry's credentials come from.
    pub fn credentials(mut self, credentials: Arc<dyn CredentialStore>) -> Self {
        self.0.credentials = credentials;
        self
    }

    /// Which HTTP versions to speak.
    pub fn http(mut self, http: HttpVersion) -> Self {
        self.0.http = http;
        self
    }

    /// The bounds a user may change.
    pub fn limits(mut self, limits: crate::limits::Limits) -> Self {
        self.0.limits = limits;
        self
    }

    /// The proxy requests go through ([`Proxy::none`]: direct, the
    /// environment unread). Without it, the environment's.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.0.proxy = Some(proxy);
        self
    }

    /// The configuration.
    pub fn build(self) -> ClientConfig {
        self.0
    }
}

/// An OCI Distribution API client. Cheap to clone; clones share the
/// connection pool, tokens and host pauses.
///
/// Every call answers a registry's challenge (basic or bearer, scopes
/// upgraded when a token lacks one) with the [`ClientConfig::credentials`]
/// of that registry, retries transient failures as the
/// [`RetryPolicy`] says, and follows redirects for GET and HEAD without
/// sending credentials to another host.
///
/// The calls, by what they touch: manifests ([`Client::get_manifest`],
/// [`Client::head_manifest`], [`Client::put_manifest`],
/// [`Client::delete_manifest`]), blobs ([`Client::head_blob`],
/// [`Client::get_blob`], [`Client::start_upload`], [`Client::mount_blob`],
/// [`Client::resume_upload`]), listings ([`Client::list_tags`],
/// [`Client::tags_page`], [`Client::list_repositories`]), referrers
/// ([`Client::referrers`], [`Client::add_to_referrers_index`]), and
/// [`Client::ping`].
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// For API calls: the read timeout is ours (see `watchdog`).
    http: reqwest::Client,
    /// For token endpoints: small answers, reqwest's read timeout suffices.
    auth_http: reqwest::Client,
    /// For API calls forwarded through a plain-HTTP proxy: a connection
    /// per request (see [`Client::new`]).
    forward_http: Option<reqwest::Client>,
    /// The proxy decided when the client was made.
    proxy: Proxy,
    config: ClientConfig,
    auth: Authenticator,
    gates: HostGates,
    limits: HostLimits,
    /// What each registry answers for referrers, and the tag-schema writers.
    referrers: crate::referrers::ReferrersState,
}

/// A request body: replayable bytes, or a one-shot stream that is never
/// blindly resent.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    Stream(Option<reqwest::Body>),
}

impl Body {
    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }

    fn take(&mut self) -> Result<Option<reqwest::Body>, ()> {
        match self {
            Body::Empty => Ok(None),
            Body::Bytes(b) => Ok(Some(reqwest::Body::from(b.clone()))),
            Body::Stream(s) => s.take().map(Some).ok_or(()),
        }
    }
}

/// One API call: what to send, to which registry, needing which scopes.
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    /// The registry name credentials are looked up under.
    pub registry: String,
    pub scopes: Scopes,
    /// Whether the call waits for a host permit. A resumed read continues
    /// a request that already held one: making it wait could deadlock an
    /// upload its bytes feed.
    pub limited: bool,
    /// A 404 is returned as an answer, not an error (the referrers probe
    /// reads its body).
    pub not_found_answers: bool,
}

impl Call {
    pub fn new(method: Method, url: Url, registry: &str, scopes: Scopes) -> Self {
        Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            registry: registry.to_string(),
            scopes,
            limited: true,
            not_found_answers: false,
        }
    }

    /// Return a 404 as an answer (see [`Call::not_found_answers`]).
    pub fn not_found_answers(mut self) -> Self {
        self.not_found_answers = true;
        self
    }

    /// Send without waiting for a host permit (see [`Call::limited`]).
    pub fn unlimited(mut self) -> Self {
        self.limited = false;
        self
    }

    pub fn header(mut self, name: http::header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

impl Client {
    /// A client with this configuration: its proxy (or the environment's)
    /// decided, its CA files read.
    ///
    /// Requests forwarded through a plain-HTTP proxy (to plain-HTTP
    /// registries) each get a connection of their own: a proxy may close
    /// a connection after any answer without saying so (tinyproxy does),
    /// and a request sent on it at that moment fails once written — a
    /// streamed upload could then not be sent again. Requests tunnelled
    /// through `CONNECT` (to TLS registries) keep their connections.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a CA file that is not PEM certificates or a
    /// proxy variable in the environment that is not a proxy URL;
    /// [`Error::Io`] for a CA file that cannot be read.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let proxy = match &config.proxy {
            Some(p) => p.clone(),
            None => Proxy::from_env()?,
        };
        let mut certs = Vec::new();
        for path in config
            .ca_files
            .iter()
            .map(PathBuf::as_path)
            .chain(proxy.ca_files())
        {
            certs.extend(load_ca_file(path)?);
        }
        let builder = || {
            let mut b = reqwest::Client::builder()
                .user_agent(config.user_agent.clone())
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(config.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .use_rustls_tls();
            if config.http == HttpVersion::Http1 {
                b = b.http1_only();
            }
            for cert in &certs {
                b = b.add_root_certificate(cert.clone());
            }
            // Ours decides, not reqwest's own reading of the environment.
            if proxy.is_none() {
                b.no_proxy()
            } else {
                let p = proxy.clone();
                b.proxy(reqwest::Proxy::custom(move |url| p.route(url)))
            }
        };
        let build = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| Error::config("building the HTTP client", e.to_string()))
        };
        let http = build(builder())?;
        let forwarding = proxy.forwards_plain_http();
        let forward_http = if forwarding {
            Some(build(builder().pool_max_idle_per_host(0))?)
        } else {
            None
        };
        // A token answer is small: all of it must arrive within the read
        // timeout, so a token endpoint that trickles bytes cannot hold a run.
        let mut auth_builder = builder()
            .read_timeout(config.read_timeout)
            .timeout(config.read_timeout);
        if forwarding {
            // Token endpoints may be plain HTTP too; tokens are asked for
            // rarely, so none keeps a connection.
            auth_builder = auth_builder.pool_max_idle_per_host(0);
        }
        let auth_http = build(auth_builder)?;
        let auth = Authenticator::new(config.credentials.clone());
        let limits =
            HostLimits::with_hosts(config.max_requests_per_host, config.host_requests.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                auth_http,
                forward_http,
                proxy,
                config,
                auth,
                gates: HostGates::default(),
                limits,
                referrers: Default::default(),
            }),
        })
    }

    /// The proxy it uses (decided when it was made).
    pub fn proxy(&self) -> &Proxy {
        &self.inner.proxy
    }

    /// The HTTP client for an API request to `url`.
    fn http_for(&self, url: &Url) -> &reqwest::Client {
        match &self.inner.forward_http {
            Some(forward) if url.scheme() == "http" && self.inner.proxy.for_url(url).is_some() => {
                forward
            }
            _ => &self.inner.http,
        }
    }

    /// A failed request as an error. Through a proxy, the error names it:
    /// a tunnel the proxy refused (credentials wanted, or the destination
    /// denied) is not retried; other failures keep their kind, so a
    /// dropped connection is retried as it is without a proxy.
    fn transport_error(&self, method: &str, url: &Url, e: reqwest::Error) -> Error {
        let Some(p) = self.inner.proxy.for_url(url) else {
            return Error::transport(method, url, e);
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut refused = None;
        while let Some(c) = cause {
            match c.to_string().as_str() {
                "tunnel error: proxy authorization required" => {
                    refused = Some(proxy_auth_refused(p));
                    break;
                }
                "tunnel error: unsuccessful" => {
                    refused = Some(format!(
                        "the proxy {p} refused to open a tunnel (CONNECT) to {}",
                        host_key(url)
                    ));
                    break;
                }
                _ => cause = c.source(),
            }
        }
        match refused {
            Some(reason) => Error::Protocol {
                method: method.to_string(),
                url: redact_url(url),
                reason,
            },
            None => Error::Transport {
                method: method.to_string(),
                url: self.shown(url),
                source: crate::error::TransportError::new(e),
            },
        }
    }

    /// An auth error for a request that went through a proxy with
    /// credentials says so: tinyproxy answers wrong proxy credentials
    /// with 401 and a Basic challenge, as if it were the registry.
    fn note_proxy(&self, e: Error, url: &Url) -> Error {
        match (e, self.inner.proxy.for_url(url)) {
            (Error::Auth { registry, method, url, reason }, Some(p)) if p.has_credentials() => {
                Error::Auth {
                    registry,
                    method,
                    url,
                    reason: format!(
                        "{reason}; the request went through the proxy {p}, which may have refused the credentials in its URL (some proxies answer those with 401)"
                    ),
                }
            }
            (e, _) => e,
        }
    }

    /// `url` redacted, and the proxy it goes through (redacted too), for
    /// errors.
    fn shown(&self, url: &Url) -> String {
        match self.inner.proxy.for_url(url) {
            Some(p) => format!("{} (through the proxy {p})", redact_url(url)),
            None => redact_url(url),
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The bounds a user may change.
    pub fn limits(&self) -> crate::limits::Limits {
        self.inner.config.limits
    }

    pub(crate) fn referrers_state(&self) -> &crate::referrers::ReferrersState {
        &self.inner.referrers
    }

    /// `https://host/` or, for insecure and loopback hosts, `http://host/`.
    pub(crate) fn base_url(&self, api_host: &str) -> Result<Url, Error> {
        let scheme = if self.plain_http(api_host) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| Error::InvalidReference {
            input: api_host.to_string(),
            reason: format!("not a usable host: {e}"),
        })
    }

    fn plain_http(&self, host: &str) -> bool {
        let c = &self.inner.config;
        if c.insecure_registries.iter().any(|h| h == host) {
            return true;
        }
        if c.tls_registries.iter().any(|h| h == host) {
            return false;
        }
        c.plain_http_loopback && is_loopback(host)
    }

    /// `/v2/<name>/<rest>` on the registry's API host.
    pub(crate) fn api_url(&self, repo: &crate::Repository, rest: &str) -> Result<Url, Error> {
        let base = self.base_url(repo.api_host())?;
        base.join(&format!("v2/{}/{rest}", repo.name()))
            .map_err(|e| Error::InvalidReference {
                input: repo.to_string(),
                reason: format!("cannot form an API URL: {e}"),
            })
    }

    /// Check that the registry speaks the API and our credentials work,
    /// by `GET /v2/`.
    ///
    /// # Errors
    ///
    /// [`Error::Auth`] for credentials the registry refuses (or none where
    /// it wants some), [`Error::Transport`] when it cannot be reached,
    /// [`Error::Status`] for a server that is not a registry.
    pub async fn ping(&self, registry: &str) -> Result<(), Error> {
        let host = crate::reference::api_host(registry);
        let url = self.base_url(host)?.join("v2/").expect("static path");
        self.send(Call::new(Method::GET, url, registry, Scopes::new()))
            .await
            .map(|_| ())
    }

    /// Send a call: auth on challenge, retries on transient failures,
    /// redirects for GET and HEAD. Any status >= 400 is an error.
    pub(crate) async fn send(&self, mut call: Call) -> Result<reqwest::Response, Error> {
        let inner = &self.inner;
        let policy = &inner.config.retry;
        // Credentials belong to the registry's own origin: URLs the server
        // hands out (redirects, upload Locations, Link pages) may point
        // elsewhere, and there nothing is sent or answered.
        let base = self.base_url(crate::reference::api_host(&call.registry))?;
        // Secrets for a registry reached over TLS never go out in clear.
        let tls = base.scheme() == "https";
        let origin = base.origin();
        let mut url = call.url.clone();
        let mut attempt = 1u32;
        let mut answered = 0u32;
        let mut redirects = 0usize;
        // The header a 401 was just answered with, for the very next try.
        let mut fresh: Option<HeaderValue> = None;
        let method_name = call.method.to_string();
        loop {
            let host = host_key(&url);
            inner.gates.wait(&host).await;
            let permit = if call.limited {
                let permit = inner.limits.acquire(&host, lane(&call.method, &url)).await;
                // A pause may have begun while this request waited its turn.
                inner.gates.wait(&host).await;
                permit
            } else {
                None
            };
            let foreign = url.origin() != origin;
            let mut rb = self
                .http_for(&url)
                .request(call.method.clone(), url.clone())
                .headers(call.headers.clone());
            let mut sent_auth = None;
            if !foreign {
                let header = match fresh.take() {
                    Some(h) => Some(h),
                    None => {
                        inner
                            .auth
                            .header(&inner.auth_http, &host, &call.registry, &call.scopes, tls)
                            .await?
                    }
                };
                if let Some(h) = header {
                    rb = rb.header(http::header::AUTHORIZATION, h.clone());
                    sent_auth = Some(h);
                }
            }
            let body = call.body.take().map_err(|_| Error::Protocol {
                method: method_name.clone(),
                url: redact_url(&url),
                reason: "a streamed body cannot be sent twice".into(),
            })?;
            let activity = Activity::new();
            if let Some(b) = body {
                let b = if call.body.replayable() {
                    b
                } else {
                    reqwest::Body::wrap(Watched::new(b, activity.clone()))
                };
                rb = rb.body(b);
            }
            let read_timeout = inner.config.read_timeout;
            let result = answer_within(rb.send(), &activity, read_timeout).await;
            let resp = match result {
                Ok(Ok(r)) => r,
                failed => {
                    let err = match failed {
                        Ok(Err(e)) => self.transport_error(&method_name, &url, e),
                        _ => Error::Timeout {
                            method: method_name.clone(),
                            url: self.shown(&url),
                            after: read_timeout,
                        },
                    };
                    if err.is_retryable() && call.body.replayable() && attempt < policy.max_attempts
                    {
                        tracing::debug!(error = %err, attempt, "retrying after a transport error");
                        // The backoff is the host's: every request to it waits.
                        inner
                            .gates
                            .pause_until(&host, Instant::now() + policy.backoff(attempt));
                        attempt += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status();
            if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                if let Some(p) = inner.proxy.for_url(&url) {
                    // Not retried: the same credentials get the same answer.
                    return Err(Error::Protocol {
                        method: method_name,
                        url: redact_url(&url),
                        reason: proxy_auth_refused(p),
                    });
                }
            }
            if status == StatusCode::UNAUTHORIZED && !foreign {
                let challenge = resp
                    .headers()
                    .get(http::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                let codes = read_error_body(resp, read_timeout).await;
                let refused = |reason: String| Error::Auth {
                    registry: call.registry.clone(),
                    method: method_name.clone(),
                    url: redact_url(&url),
                    reason,
                };
                let refused = |reason: String| self.note_proxy(refused(reason), &url);
                let Some(challenge) = challenge else {
                    return Err(refused(format!(
                        "HTTP 401 without a challenge we can answer{}",
                        fmt_codes(&codes)
                    )));
                };
                let scope_upgrade = matches!(&challenge, Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope");
                if answered >= 2 || (answered == 1 && !scope_upgrade) {
                    inner.auth.forget_tokens(&host);
                    let who = inner
                        .auth
                        .describe_credential(&call.registry)
                        .unwrap_or_else(|| "the configured credentials".into());
                    return Err(refused(format!(
                        "the registry refused {who}{}",
                        fmt_codes(&codes)
                    )));
                }
                answered += 1;
                fresh = Some(
                    inner
                        .auth
                        .answer(
                            &inner.auth_http,
                            &host,
                            &call.registry,
                            challenge,
                            &call.scopes,
                            sent_auth.as_ref(),
                            tls,
                        )
                        .await
                        .map_err(|e| self.note_proxy(e, &url))?,
                );
                if !call.body.replayable() {
                    return Err(refused(
                        "the registry asked for new credentials in the middle of a streamed upload"
                            .into(),
                    ));
                }
                continue;
            }
            if status.is_redirection()
                && (call.method == Method::GET || call.method == Method::HEAD)
            {
                if let Some(next) = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                {
                    if url.scheme() == "https" && next.scheme() != "https" {
                        // Whatever follows would cross the network in
                        // clear: refused, not silently downgraded.
                        return Err(Error::Protocol {
                            method: method_name,
                            url: redact_url(&url),
                            reason: format!(
                                "refused a redirect from https to plain {} ({})",
                                next.scheme(),
                                redact_url(&next)
                            ),
                        });
                    }
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(Error::Protocol {
                            method: method_name,
                            url: redact_url(&url),
                            reason: format!("more than {MAX_REDIRECTS} redirects"),
                        });
                    }
                    tracing::debug!(to = %redact_url(&next), "following a redirect");
                    url = next;
                    continue;
                }
            }
            if status.is_redirection() {
                // Only GET and HEAD follow redirects; anything else (or a
                // redirect without a usable Location) is not a success.
                return Err(Error::Protocol {
                    method: method_name,
                    url: redact_url(&url),
                    reason: format!("unexpected redirect (HTTP {status})"),
                });
            }
            let passed = call.not_found_answers && status == StatusCode::NOT_FOUND;
            if status.as_u16() >= 400 && !passed {
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let transient = matches!(status.as_u16(), 408 | 429 | 500..=599);
                if let Some(p) = &permit {
                    match status.as_u16() {
                        429 | 503 => p.throttled(),
                        500..=599 => {}
                        _ => p.succeeded(),
                    }
                }
                let obeyable = retry_after.is_none_or(|ra| ra <= policy.max_retry_after);
                if let Some(ra) = retry_after.filter(|_| transient) {
                    if !obeyable {
                        // Waiting that long would hold the run (and every
                        // other request to the host): fail this one now.
                        return Err(Error::Protocol {
                            method: method_name,
                            url: redact_url(&url),
                            reason: format!(
                                "HTTP {}: the registry asks to wait {}s (Retry-After), longer than the {}s bound mirror waits",
                                status.as_u16(),
                                ra.as_secs(),
                                policy.max_retry_after.as_secs()
                            ),
                        });
                    }
                    inner.gates.pause_until(&host, Instant::now() + ra);
                }
                let codes = read_error_body(resp, read_timeout).await;
                let err = Error::Status {
                    method: method_name.clone(),
                    url: self.shown(&url),
                    status: status.as_u16(),
                    codes,
                    retry_after,
                };
                if transient && call.body.replayable() && attempt < policy.max_attempts {
                    tracing::debug!(error = %err, attempt, "retrying");
                    if retry_after.is_none() {
                        inner
                            .gates
                            .pause_until(&host, Instant::now() + policy.backoff(attempt));
                    }
                    attempt += 1;
                    continue;
                }
                return Err(err);
            }
            if let Some(p) = &permit {
                p.succeeded();
            }
            return Ok(watch_answer(resp, &call.method, permit, read_timeout));
        }
    }
}

/// What a 407 from the proxy means for the user.
fn proxy_auth_refused(p: &crate::proxy::ProxyUrl) -> String {
    if p.has_credentials() {
        format!("the proxy {p} refused the credentials in its URL (HTTP 407)")
    } else {
        format!(
            "the proxy {p} asked for credentials (HTTP 407): give them in the proxy URL, http://USER:PASSWORD@HOST:PORT"
        )
    }
}

/// Reads draw on a host's read budget; uploads (the whole upload session,
/// its status requests included) and manifest pushes on its write budget.
fn lane(method: &Method, url: &Url) -> Lane {
    let read = *method == Method::GET || *method == Method::HEAD;
    if read && !url.path().contains("/blobs/uploads/") {
        Lane::Read
    } else {
        Lane::Write
    }
}

/// The answer's body, failing after `read_timeout` of silence and keeping
/// the host permit until it ends, fails or is dropped: a body still
/// streaming loads the host as much as a request waiting for its answer.
/// Answers without a body return the permit at once.
fn watch_answer(
    resp: reqwest::Response,
    method: &Method,
    permit: Option<HostPermit>,
    read_timeout: Duration,
) -> reqwest::Response {
    let empty = *method == Method::HEAD
        || resp.status() == StatusCode::NO_CONTENT
        || resp.status() == StatusCode::NOT_MODIFIED
        || header_len(resp.headers()) == Some(0);
    if empty {
        return resp;
    }
    let mut held = http::Response::builder()
        .status(resp.status())
        .version(resp.version());
    if let Some(h) = held.headers_mut() {
        *h = resp.headers().clone();
    }
    let body = Answer::new(resp, permit, read_timeout);
    match held.body(reqwest::Body::wrap_stream(body)) {
        Ok(r) => reqwest::Response::from(r),
        Err(_) => unreachable!("status, version and headers come from a valid response"),
    }
}

fn header_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The host and port a URL goes to: the key for pauses and auth state.
pub(crate) fn host_key(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn load_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let ctx = || format!("CA file {}", path.display());
    let pem = std::fs::read(path).map_err(|e| Error::io(ctx(), e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Error::config(ctx(), format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(ctx(), "holds no certificate"));
    }
    Ok(certs)
}

/// The error codes of an error answer, if it arrives whole within `within`.
async fn read_error_body(resp: reqwest::Response, within: Duration) -> ApiErrors {
    match tokio::time::timeout(within, read_capped(resp, ERROR_BODY_LIMIT)).await {
        Ok(Ok(Some(b))) => ApiErrors::parse(&b),
        _ => ApiErrors::default(),
    }
}

fn fmt_codes(codes: &ApiErrors) -> String {
    if codes.is_empty() {
        String::new()
    } else {
        format!(" ({codes})")
    }
}

impl Client {
    /// A small body (a manifest, a listing page) read whole, within the read
    /// timeout — a server trickling a byte at a time, never silent long
    /// enough for the watchdog, would otherwise hold the run — and at most
    /// `limit` bytes. `what` names it in the errors.
    pub(crate) async fn read_whole(
        &self,
        resp: reqwest::Response,
        limit: u64,
        what: &str,
        url: &Url,
    ) -> Result<Bytes, Error> {
        let within = self.config().read_timeout;
        tokio::time::timeout(within, read_capped(resp, limit))
            .await
            .map_err(|_| Error::Protocol {
                method: "GET".into(),
                url: redact_url(url),
                reason: format!(
                    "the {what} did not arrive whole within {within:?} (the read timeout, --read-timeout)"
                ),
            })?
            .map_err(|e| Error::transport("GET", url, e))?
            .ok_or_else(|| Error::TooLarge {
                what: what.to_string(),
                url: redact_url(url),
                limit,
            })
    }
}

/// Read a body of at most `limit` bytes; `None` when it is larger.
pub(crate) async fn read_capped(
    resp: reqwest::Response,
    limit: u64,
) -> Result<Option<Bytes>, reqwest::Error> {
    if header_len(resp.headers()).is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut out = bytes::BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_plain_http_by_default() {
        let c = Client::new(ClientConfig::default()).unwrap();
        assert_eq!(c.base_url("127.0.0.1:5000").unwrap().scheme(), "http");
        assert_eq!(c.base_url("localhost:5000").unwrap().scheme(), "http");
        assert_eq!(c.base_url("[::1]:5000").unwrap().scheme(), "http");
        assert_eq!(c.base_url("myacr.azurecr.io").unwrap().scheme(), "https");
        let c = Client::new(ClientConfig {
            insecure_registries: vec!["reg.lan:5000".into()],
            tls_registries: vec!["127.0.0.1:5443".into()],
            ..ClientConfig::default()
        })
        .unwrap();
        assert_eq!(c.base_url("reg.lan:5000").unwrap().scheme(), "http");
        assert_eq!(c.base_url("127.0.0.1:5443").unwrap().scheme(), "https");
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let err = Client::new(ClientConfig {
            ca_files: vec![p.clone()],
            ..ClientConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }
}
