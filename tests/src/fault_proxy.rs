//! A scripted HTTP/1.1 reverse proxy for injecting faults between a client and a real
//! server: errors, throttling, redirects, delays, and connections dropped or bytes
//! corrupted mid-stream, none of which a real registry does on demand.
//!
//! Bodies stream through in both directions (never buffered whole), so it can sit in front
//! of multi-hundred-MiB blob transfers. Each request opens its own upstream connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::gauge::{Gauge, InFlight};
use crate::server::{self, Body, BoxError, Server};

/// What to do to a request that a [`Rule`] picked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward this many request body bytes upstream, then drop both connections: the
    /// client sees its connection closed without a response.
    CutRequestBodyAfter(u64),
    /// Answer without forwarding (after reading the request body, so the client sees the
    /// answer rather than a broken pipe).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Forward the response but close the connection after this many body bytes.
    CutResponseBodyAfter(u64),
    /// Forward the response with the body byte at this offset inverted.
    FlipResponseByte(u64),
    /// Forward this many response body bytes, then send nothing more and keep the
    /// connection open: a server that stalls mid-body (the client's read timeout ends it).
    StallResponseBodyAfter(u64),
    /// Forward the upstream's status and headers with this body instead of its own
    /// (`Content-Length` fixed to match): a server serving wrong, short or long content
    /// with clean HTTP framing.
    ReplaceResponseBody(Bytes),
    /// Wait, then forward normally.
    Delay(Duration),
    /// Answer `307 Temporary Redirect` to this base URL plus the original path and query
    /// (e.g. to a [`StorageHost`](crate::StorageHost)).
    RedirectTo(String),
}

impl Fault {
    /// An empty response with this status.
    pub fn status(status: u16) -> Self {
        Fault::Respond {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `429 Too Many Requests` with `Retry-After: seconds`.
    pub fn throttle(retry_after_seconds: u64) -> Self {
        Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_seconds.to_string())],
            body: Bytes::from_static(
                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"throttled by test proxy"}]}"#,
            ),
        }
    }
}

/// Which requests get a [`Fault`]. Unset filters match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub method: Option<Method>,
    /// Substring of the path and query.
    pub path_contains: Option<String>,
    /// 1-based occurrence among the requests this rule matches; `None` = every one.
    pub nth: Option<usize>,
    /// Only the first this many occurrences; `None` = no limit.
    pub first: Option<usize>,
    pub action: Fault,
}

impl Rule {
    /// A rule applying `action` to every request (narrow it with the builder methods).
    pub fn new(action: Fault) -> Self {
        Self {
            method: None,
            path_contains: None,
            nth: None,
            first: None,
            action,
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    pub fn path_contains(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.into());
        self
    }

    pub fn nth(mut self, occurrence: usize) -> Self {
        self.nth = Some(occurrence);
        self
    }

    /// Apply to the first `count` matching requests only (a storm that passes).
    pub fn first(mut self, count: usize) -> Self {
        self.first = Some(count);
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|f| path.contains(f))
    }
}

/// One request that reached the proxy.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub method: Method,
    /// Path and query as the client sent them.
    pub path: String,
    /// The client's request headers (including any `Authorization`).
    pub headers: HeaderMap,
    pub has_authorization: bool,
    /// The fault applied, if a rule picked this request.
    pub fault: Option<Fault>,
    /// Request body bytes read from the client (and forwarded, unless the fault answered).
    pub request_body_bytes: u64,
    /// Status sent to the client; `None` if no response was sent (yet, or ever).
    pub status: Option<u16>,
    /// Response body bytes sent to the client so far.
    pub response_body_bytes: u64,
    /// When the request reached the proxy.
    pub arrived: Instant,
}

/// A running proxy; stops on drop (open connections are aborted).
pub struct FaultProxy {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    upstream_addr: String,
    /// `http://host:port` of the upstream, as it appears in its absolute `Location`s.
    upstream_base: String,
    proxy_base: String,
    rules: Mutex<Vec<(Rule, usize)>>,
    records: Mutex<Vec<Arc<Record>>>,
    gauge: Arc<Gauge>,
}

struct Record {
    method: Method,
    path: String,
    headers: HeaderMap,
    fault: Option<Fault>,
    request_bytes: Arc<AtomicU64>,
    response_bytes: Arc<AtomicU64>,
    /// 0 until a status is sent.
    status: AtomicU16,
    arrived: Instant,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream_base_url` (plain `http://` only).
    pub async fn start(upstream_base_url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(upstream_base_url).context("upstream base URL")?;
        if url.scheme() != "http" {
            bail!("the fault proxy forwards to http:// upstreams only, not {upstream_base_url}");
        }
        let host = url.host_str().context("upstream host")?;
        let port = url.port_or_known_default().context("upstream port")?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let listener = server::bind_loopback().await?;
        let shared = Arc::new(Shared {
            upstream_addr: format!("{host}:{port}"),
            upstream_base: format!("http://{authority}"),
            proxy_base: format!("http://{}", listener.local_addr()?),
            rules: Mutex::new(Vec::new()),
            records: Mutex::new(Vec::new()),
            gauge: Arc::default(),
        });
        let handler_shared = shared.clone();
        let server = Server::spawn(vec![listener], move |req| {
            let shared = handler_shared.clone();
            async move { shared.handle(req).await }
        })?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference through the proxy.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// Adds a rule. Rules are checked in order; each counts the requests it matches, and
    /// the first whose occurrence fits decides the request's fault.
    pub fn add_rule(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push((rule, 0));
    }

    pub fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request so far, oldest first, with byte counts as of now.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        let records = self.shared.records.lock().unwrap();
        records
            .iter()
            .map(|r| {
                let status = r.status.load(Ordering::SeqCst);
                ProxyRequest {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    has_authorization: r.headers.contains_key(header::AUTHORIZATION),
                    headers: r.headers.clone(),
                    fault: r.fault.clone(),
                    request_body_bytes: r.request_bytes.load(Ordering::SeqCst),
                    status: (status != 0).then_some(status),
                    response_body_bytes: r.response_bytes.load(Ordering::SeqCst),
                    arrived: r.arrived,
                }
            })
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.records.lock().unwrap().clear();
    }

    /// The most requests in flight at once since the start (or the last reset): each
    /// counted from its arrival until its response body was fully handed on.
    pub fn max_in_flight(&self) -> usize {
        self.shared.gauge.max()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.gauge.now()
    }

    /// Start counting [`max_in_flight`](Self::max_in_flight) again from now.
    pub fn reset_max_in_flight(&self) {
        self.shared.gauge.reset_max();
    }

    /// How many requests with this method whose path and query contain `path_substring`.
    pub fn count(&self, method: &Method, path_substring: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == *method && r.path.contains(path_substring))
            .count()
    }

    /// When each of those requests arrived, earliest first.
    pub fn arrivals(&self, method: &Method, path_substring: &str) -> Vec<Instant> {
        let mut at: Vec<Instant> = self
            .requests()
            .iter()
            .filter(|r| r.method == *method && r.path.contains(path_substring))
            .map(|r| r.arrived)
            .collect();
        at.sort();
        at
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

impl Shared {
    fn pick_fault(&self, method: &Method, path: &str) -> Option<Fault> {
        let mut picked = None;
        for (rule, seen) in self.rules.lock().unwrap().iter_mut() {
            if rule.matches(method, path) {
                *seen += 1;
                if picked.is_none()
                    && rule.nth.is_none_or(|n| n == *seen)
                    && rule.first.is_none_or(|n| *seen <= n)
                {
                    picked = Some(rule.action.clone());
                }
            }
        }
        picked
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
        let in_flight = InFlight::enter(&self.gauge);
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let fault = self.pick_fault(&method, &path);
        let record = Arc::new(Record {
            method,
            path: path.clone(),
            headers: req.headers().clone(),
            fault: fault.clone(),
            request_bytes: Arc::default(),
            response_bytes: Arc::default(),
            status: AtomicU16::new(0),
            arrived: Instant::now(),
        });
        self.records.lock().unwrap().push(record.clone());
        if fault.is_some() {
            tracing::debug!(?fault, method = %record.method, %path, "fault proxy applying fault");
        }

        let local = match fault {
            Some(Fault::Respond {
                status,
                headers,
                body,
            }) => {
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                Some(response.body(body)?)
            }
            Some(Fault::RedirectTo(base)) => Some(
                Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(
                        header::LOCATION,
                        format!("{}{path}", base.trim_end_matches('/')),
                    )
                    .body(Bytes::new())?,
            ),
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                None
            }
            _ => None,
        };
        if let Some(response) = local {
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    record
                        .request_bytes
                        .fetch_add(data.len() as u64, Ordering::SeqCst);
                }
            }
            record
                .status
                .store(response.status().as_u16(), Ordering::SeqCst);
            let (parts, body) = response.into_parts();
            let body =
                Tap::new(server::full(body), record.response_bytes.clone()).in_flight(in_flight);
            return Ok(Response::from_parts(parts, body.boxed()));
        }
        self.forward(req, &path, record, in_flight).await
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        path: &str,
        record: Arc<Record>,
        in_flight: InFlight,
    ) -> Result<Response<Body>, BoxError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = path.parse()?;
        strip_hop_by_hop(&mut parts.headers);
        // The registry builds absolute upload URLs from Host: name the upstream.
        let upstream_host = self.upstream_base.trim_start_matches("http://");
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_str(upstream_host)?);

        let mut request_body = Tap::new(
            body.map_err(BoxError::from).boxed(),
            record.request_bytes.clone(),
        );
        let (cut_tx, mut cut_rx) = oneshot::channel();
        if let Some(Fault::CutRequestBodyAfter(n)) = record.fault {
            request_body = request_body.cut_after(n, AfterCut::Stall(Some(cut_tx)));
        }
        let upstream_request = Request::from_parts(parts, request_body);

        let stream = match TcpStream::connect(&self.upstream_addr).await {
            Ok(s) => s,
            Err(e) => {
                record.status.store(502, Ordering::SeqCst);
                let body = format!(
                    "fault proxy: upstream {} unreachable: {e}",
                    self.upstream_addr
                );
                return Ok(Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(server::full(body))?);
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Detached: it ends when the response body is done or dropped.
        let connection = tokio::spawn(connection);
        let response = sender.send_request(upstream_request);
        let response = tokio::select! {
            Ok(()) = &mut cut_rx => {
                // Give the forwarded bytes a moment to reach the upstream, then drop it and
                // (by returning an error) the client connection.
                tokio::time::sleep(Duration::from_millis(100)).await;
                connection.abort();
                return Err("fault proxy: request body cut".into());
            }
            response = response => response?,
        };

        let (mut parts, body) = response.into_parts();
        record.status.store(parts.status.as_u16(), Ordering::SeqCst);
        strip_hop_by_hop(&mut parts.headers);
        self.rewrite_location(&mut parts.headers);
        let mut body = body.map_err(BoxError::from).boxed();
        if let Some(Fault::ReplaceResponseBody(replacement)) = &record.fault {
            parts.headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(replacement.len() as u64),
            );
            body = server::full(replacement.clone());
        }
        let mut body = Tap::new(body, record.response_bytes.clone()).in_flight(in_flight);
        match record.fault {
            Some(Fault::CutResponseBodyAfter(n)) => {
                body = body.cut_after(n, AfterCut::Fail(None));
            }
            Some(Fault::StallResponseBodyAfter(n)) => {
                body = body.cut_after(n, AfterCut::Hang);
            }
            Some(Fault::FlipResponseByte(at)) => body.flip_at = Some(at),
            _ => {}
        }
        Ok(Response::from_parts(parts, body.boxed()))
    }

    /// Upload session URLs come back absolute (`http://127.0.0.1:UPSTREAM/v2/…`): point
    /// them at the proxy so the client's next request comes through here too.
    fn rewrite_location(&self, headers: &mut HeaderMap) {
        let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
            return;
        };
        if let Some(rest) = location.strip_prefix(&self.upstream_base) {
            if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
                let rewritten = format!("{}{rest}", self.proxy_base);
                if let Ok(value) = HeaderValue::from_str(&rewritten) {
                    headers.insert(header::LOCATION, value);
                }
            }
        }
    }
}

/// What a body does once its cut point is reached.
enum AfterCut {
    /// Stay pending forever (the request side: the upstream keeps waiting for bytes until
    /// the proxy drops the connection) and say so on the channel.
    Stall(Option<oneshot::Sender<()>>),
    /// Fail after a moment (the response side: hyper then closes the client connection;
    /// the delay lets the bytes already sent get flushed first).
    Fail(Option<Pin<Box<tokio::time::Sleep>>>),
    /// Send nothing more, ever, and keep the connection open (a stalled server).
    Hang,
}

/// A body wrapper that counts bytes and applies cut and flip faults as they stream.
struct Tap {
    inner: Body,
    offset: u64,
    counter: Arc<AtomicU64>,
    cut: Option<(u64, AfterCut)>,
    flip_at: Option<u64>,
    /// The request's place in the in-flight gauge, left when the body ends.
    in_flight: Option<InFlight>,
}

impl Tap {
    fn new(inner: Body, counter: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            offset: 0,
            counter,
            cut: None,
            flip_at: None,
            in_flight: None,
        }
    }

    fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    fn leave(&self) {
        if let Some(f) = &self.in_flight {
            f.leave();
        }
    }

    fn cut_after(mut self, limit: u64, then: AfterCut) -> Self {
        self.cut = Some((limit, then));
        self
    }

    fn boxed(self) -> Body {
        BodyExt::boxed(self)
    }
}

impl hyper::body::Body for Tap {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some((limit, then)) = &mut this.cut {
            if this.offset >= *limit {
                return match then {
                    AfterCut::Stall(tx) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                        Poll::Pending
                    }
                    AfterCut::Fail(sleep) => {
                        let sleep = sleep.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep(Duration::from_millis(50)))
                        });
                        ready!(sleep.as_mut().poll(cx));
                        this.leave();
                        Poll::Ready(Some(Err("fault proxy: response body cut".into())))
                    }
                    AfterCut::Hang => Poll::Pending,
                };
            }
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => {
                this.leave();
                return Poll::Ready(other);
            }
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
        };
        if let Some((limit, _)) = &this.cut {
            let room = (*limit - this.offset) as usize;
            if data.len() > room {
                data.truncate(room);
            }
        }
        if let Some(at) = this.flip_at {
            if (this.offset..this.offset + data.len() as u64).contains(&at) {
                let mut owned = BytesMut::from(&data[..]);
                owned[(at - this.offset) as usize] ^= 0xFF;
                data = owned.freeze();
            }
        }
        this.offset += data.len() as u64;
        this.counter.fetch_add(data.len() as u64, Ordering::SeqCst);
        if this.cut.is_none() && this.inner.is_end_stream() {
            // The last bytes: the exchange ends before the client can see them.
            this.leave();
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        // A body that is to be cut never ends cleanly.
        let end = self.cut.is_none() && self.inner.is_end_stream();
        if end {
            self.leave();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
