//! The read timeout: how long a request may hear nothing from its server.
//!
//! reqwest's own `read_timeout` runs from the start of a request until its
//! answer's headers and is not reset while the request body uploads, so a
//! blob upload longer than the timeout would fail however fast it moves.
//! Here the clock is reset by every chunk sent or received, and it stops
//! while an upload waits for its own source (a stalled source has its own
//! timeout, and the upload should outlive it while the read continues).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::host_limit::HostPermit;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// When a request last moved, and whether it is waiting on its own body's
/// source rather than on the server.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    /// Milliseconds after `base`.
    last: AtomicU64,
    waiting_on_source: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
            waiting_on_source: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = self.base + Duration::from_millis(self.last.load(Ordering::Relaxed));
        last.elapsed()
    }
}

/// Wait for `send` to answer, failing with `Err(())` once the server has
/// been silent for `limit`: no body byte taken and no answer.
pub(crate) async fn answer_within<F, T>(
    send: F,
    activity: &Activity,
    limit: Duration,
) -> Result<T, ()>
where
    F: Future<Output = T>,
{
    let mut send = std::pin::pin!(send);
    loop {
        let wait = if activity.waiting_on_source.load(Ordering::Relaxed) {
            limit
        } else {
            limit.saturating_sub(activity.idle())
        };
        if wait.is_zero() {
            return Err(());
        }
        tokio::select! {
            out = &mut send => return Ok(out),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A request body that reports its progress to an [`Activity`].
pub(crate) struct Watched {
    inner: reqwest::Body,
    activity: Arc<Activity>,
}

impl Watched {
    pub fn new(inner: reqwest::Body, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Polled at all: the server is taking bytes.
        self.activity.touch();
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.activity
            .waiting_on_source
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type BodyBytes = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A response body that fails after `limit` of silence and holds the host
/// permit (if any) until it ends, fails or is dropped.
pub(crate) struct Answer {
    inner: BodyBytes,
    permit: Option<HostPermit>,
    limit: Duration,
    last: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl Answer {
    pub fn new(resp: reqwest::Response, permit: Option<HostPermit>, limit: Duration) -> Self {
        Answer {
            inner: Box::pin(resp.bytes_stream()),
            permit,
            limit,
            last: Instant::now(),
            timer: None,
            done: false,
        }
    }
}

impl Stream for Answer {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.last = Instant::now();
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(other) => {
                self.done = true;
                self.permit = None;
                return Poll::Ready(other.map(|r| r.map_err(Into::into)));
            }
            Poll::Pending => {}
        }
        loop {
            let deadline = self.last + self.limit;
            if Instant::now() >= deadline {
                self.done = true;
                self.permit = None;
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data for {:?}", self.limit),
                );
                return Poll::Ready(Some(Err(e.into())));
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            if timer.deadline() != deadline.into() {
                timer.as_mut().reset(deadline.into());
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => continue,
            }
        }
    }
}
