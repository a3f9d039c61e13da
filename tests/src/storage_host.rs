//! A stand-in for blob storage behind a registry redirect (ACR answers blob GETs with a
//! 307 to `*.blob.core.windows.net`). It serves registered bytes, honours `Range`, and
//! records every request's `Authorization` header so a test can prove no registry
//! credential followed the redirect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::server::{self, BoxError, Server};

/// One request the storage host answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// The `Authorization` header, if any arrived (it should not).
    pub authorization: Option<String>,
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes sent.
    pub body_bytes: u64,
}

#[derive(Default)]
struct Shared {
    blobs: Mutex<HashMap<String, Bytes>>,
    requests: Mutex<Vec<StorageRequest>>,
    /// Answer every GET with the whole blob and 200, as some servers do.
    ignore_range: std::sync::atomic::AtomicBool,
}

/// A running storage host; stops on drop.
pub struct StorageHost {
    shared: Arc<Shared>,
    server: Server,
}

impl StorageHost {
    /// Starts on a free port of 127.0.0.1 (and `[::1]` on the same port where possible,
    /// so `localhost` works whichever address a client tries first).
    pub async fn start() -> anyhow::Result<Self> {
        let v4 = server::bind_loopback().await?;
        let port = v4.local_addr()?.port();
        let mut listeners = vec![v4];
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
            listeners.push(v6);
        }
        let shared = Arc::new(Shared::default());
        let handler_shared = shared.clone();
        let server = Server::spawn(listeners, move |req| {
            let shared = handler_shared.clone();
            async move { shared.handle(req) }
        })?;
        Ok(Self { shared, server })
    }

    /// Serves `data` at `path` (e.g. `/v2/repo/blobs/sha256:…`), replacing what was there.
    pub fn put(&self, path: &str, data: impl Into<Bytes>) {
        self.shared
            .blobs
            .lock()
            .unwrap()
            .insert(path.to_string(), data.into());
    }

    /// `http://localhost:PORT`: a different host name from the registry's `127.0.0.1`, as
    /// a redirect to storage is in production.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `localhost:PORT`.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.server.addr().port())
    }

    /// `base_url()` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// From now on ignore `Range` and answer 200 with the whole blob.
    pub fn ignore_range(&self, ignore: bool) {
        self.shared
            .ignore_range
            .store(ignore, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<StorageRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Shared {
    fn handle(&self, req: Request<Incoming>) -> Result<Response<server::Body>, BoxError> {
        let header_string = |name| {
            req.headers()
                .get(name)
                .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut record = StorageRequest {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_owned),
            authorization: header_string(header::AUTHORIZATION),
            range: header_string(header::RANGE),
            status: 0,
            body_bytes: 0,
        };
        let blob = self.blobs.lock().unwrap().get(&record.path).cloned();
        let response = match (&record.method, blob) {
            (&Method::GET | &Method::HEAD, Some(blob)) => {
                let ignore = self.ignore_range.load(std::sync::atomic::Ordering::SeqCst);
                let range = record.range.as_deref().filter(|_| !ignore);
                serve(&blob, range, record.method == Method::HEAD)?
            }
            (&Method::GET | &Method::HEAD, None) => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Bytes::from_static(b"BlobNotFound"))?,
            _ => Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .body(Bytes::new())?,
        };
        record.status = response.status().as_u16();
        record.body_bytes = response.body().len() as u64;
        self.requests.lock().unwrap().push(record);
        Ok(response.map(server::full))
    }
}

/// The whole blob, or the range asked for (`bytes=N-` or `bytes=N-M`) as a 206.
fn serve(blob: &Bytes, range: Option<&str>, head: bool) -> Result<Response<Bytes>, BoxError> {
    let len = blob.len() as u64;
    let builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    let (builder, body) = match range.map(|r| parse_range(r, len)) {
        None | Some(RangeAsk::Ignored) => (builder.status(StatusCode::OK), blob.clone()),
        Some(RangeAsk::Unsatisfiable) => {
            let response = builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Bytes::new())?;
            return Ok(response);
        }
        Some(RangeAsk::Range(start, end)) => (
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            blob.slice(start as usize..=end as usize),
        ),
    };
    let builder = builder.header(header::CONTENT_LENGTH, body.len());
    Ok(builder.body(if head { Bytes::new() } else { body })?)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Not a single byte range we understand: serve the whole blob, as HTTP allows.
    Ignored,
    Unsatisfiable,
    /// Inclusive byte offsets.
    Range(u64, u64),
}

fn parse_range(value: &str, len: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignored;
    };
    let Some((start, end)) = spec.split_once('-') else {
        return RangeAsk::Ignored;
    };
    if spec.contains(',') {
        return RangeAsk::Ignored;
    }
    let Ok(start) = start.trim().parse::<u64>() else {
        return RangeAsk::Ignored;
    };
    let end = match end.trim() {
        "" => len.saturating_sub(1),
        e => match e.parse::<u64>() {
            Ok(e) => e.min(len.saturating_sub(1)),
            Err(_) => return RangeAsk::Ignored,
        },
    };
    if start >= len || end < start {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Range(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=3-", 7), RangeAsk::Range(3, 6));
        assert_eq!(parse_range("bytes=2-4", 7), RangeAsk::Range(2, 4));
        assert_eq!(parse_range("bytes=2-100", 7), RangeAsk::Range(2, 6));
        assert_eq!(parse_range("bytes=7-", 7), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-3", 7), RangeAsk::Ignored);
        assert_eq!(parse_range("items=1-", 7), RangeAsk::Ignored);
    }
}
