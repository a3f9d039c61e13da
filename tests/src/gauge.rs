//! Requests in flight at a purpose-built server, and the most at once: how
//! tests see a client's concurrency without timing it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Requests in flight: from arrival until the answer is handed on (or the
/// exchange fails). The end is counted before the client can see it, so a
/// client that waits for one answer before sending the next request is
/// never counted twice.
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    /// The most in flight at once since the start (or the last reset).
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// Start counting the most at once again from now.
    pub fn reset_max(&self) {
        self.max.store(self.now(), Ordering::SeqCst);
    }
}

/// One request's place in the [`Gauge`]; leaves it once, at the end or on drop.
pub struct InFlight {
    gauge: Arc<Gauge>,
    done: AtomicBool,
}

impl InFlight {
    pub fn enter(gauge: &Arc<Gauge>) -> Self {
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.max.fetch_max(now, Ordering::SeqCst);
        InFlight {
            gauge: gauge.clone(),
            done: AtomicBool::new(false),
        }
    }

    pub fn leave(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.gauge.now.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.leave();
    }
}
