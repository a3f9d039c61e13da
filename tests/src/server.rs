//! Serving a hyper service on loopback: the plumbing the harness's own servers share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response and request body type used by the harness servers (streams or buffers alike).
pub(crate) type Body = BoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A running accept loop. Dropping it stops accepting and aborts every open connection
/// (each loop owns its connections in a `JoinSet`), so nothing outlives the test.
pub(crate) struct Server {
    addr: SocketAddr,
    loops: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves HTTP/1.1 with `handler` on each listener; the first listener's address is the
    /// server's address. An `Err` from the handler closes the connection without a response
    /// (how the fault proxy drops connections).
    pub(crate) fn spawn<H, F>(listeners: Vec<TcpListener>, handler: H) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
    {
        let addr = listeners
            .first()
            .ok_or_else(|| std::io::Error::other("no listener"))?
            .local_addr()?;
        let handler = Arc::new(handler);
        let loops = listeners
            .into_iter()
            .map(|listener| tokio::spawn(accept_loop(listener, handler.clone())))
            .collect();
        Ok(Self { addr, loops })
    }

    /// [`Server::spawn`] over TLS: each connection is accepted by `tls`
    /// first (a failed handshake just closes it).
    pub(crate) fn spawn_tls<H, F>(
        listeners: Vec<TcpListener>,
        tls: tokio_rustls::TlsAcceptor,
        handler: H,
    ) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
    {
        let addr = listeners
            .first()
            .ok_or_else(|| std::io::Error::other("no listener"))?
            .local_addr()?;
        let handler = Arc::new(handler);
        let loops = listeners
            .into_iter()
            .map(|listener| tokio::spawn(accept_loop_tls(listener, tls.clone(), handler.clone())))
            .collect();
        Ok(Self { addr, loops })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for l in &self.loops {
            l.abort();
        }
    }
}

async fn accept_loop<H, F>(listener: TcpListener, handler: Arc<H>)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // E.g. EMFILE under load: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handler(req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn accept_loop_tls<H, F>(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    handler: Arc<H>,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = service_fn(move |req| handler(req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds 127.0.0.1 on an OS-chosen port.
pub(crate) async fn bind_loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").await
}

/// Which distribution endpoint a request path names, for the purpose-built
/// registries: `(repository, reference)` as the path spells them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`
    Base,
    Manifest(String, String),
    Referrers(String, String),
    Blob(String, String),
    /// `/v2/<name>/blobs/uploads/[<id>]`
    Uploads(String, Option<String>),
    Tags(String),
    /// `/token`: a token endpoint served beside the registry.
    Token,
    Other,
}

pub(crate) fn route(path: &str) -> Route {
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Other;
    };
    if rest.is_empty() {
        return Route::Base;
    }
    if let Some((repo, id)) = rest.split_once("/blobs/uploads") {
        let id = id.trim_start_matches('/');
        return Route::Uploads(repo.into(), (!id.is_empty()).then(|| id.to_string()));
    }
    if let Some((repo, r)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest(repo.into(), r.into());
    }
    if let Some((repo, d)) = rest.rsplit_once("/referrers/") {
        return Route::Referrers(repo.into(), d.into());
    }
    if let Some((repo, d)) = rest.rsplit_once("/blobs/") {
        return Route::Blob(repo.into(), d.into());
    }
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Route::Tags(repo.into());
    }
    Route::Other
}
