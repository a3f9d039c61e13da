//! How many requests may be in flight to one host: a cap that halves when
//! the host throttles (429, 503) and grows back by one after a run of
//! successes (additive increase, multiplicative decrease, as TCP does).
//!
//! Reads (GET, HEAD) and writes (uploads, manifest pushes) have separate
//! limits per host. Azure Container Registry budgets them separately, and it
//! keeps a copy within one registry free of deadlock: a download holds a
//! read permit while its bytes feed an upload, which needs a write permit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which budget of a host a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Read,
    Write,
}

/// One limiter per host and lane.
type Lanes = HashMap<(String, Lane), Arc<Limiter>>;

/// The limiters of every host one client talks to. Cheap to clone; clones
/// share the limits.
#[derive(Debug, Clone)]
pub struct HostLimits {
    /// `None`: no cap and no backoff beyond the retry pauses.
    cap: Option<usize>,
    /// Caps for particular hosts, in place of `cap`.
    per_host: Arc<HashMap<String, usize>>,
    lanes: Arc<Mutex<Lanes>>,
}

impl HostLimits {
    #[cfg(test)]
    pub fn new(cap: Option<usize>) -> Self {
        Self::with_hosts(cap, HashMap::new())
    }

    /// `cap` for every host but those in `per_host`, which get their own.
    pub fn with_hosts(cap: Option<usize>, per_host: HashMap<String, usize>) -> Self {
        HostLimits {
            cap: cap.map(|c| c.max(1)),
            per_host: Arc::new(per_host),
            lanes: Arc::default(),
        }
    }

    /// The limiter for `host`'s `lane`, made on first use.
    pub fn limiter(&self, host: &str, lane: Lane) -> Option<Arc<Limiter>> {
        let cap = self.per_host.get(host).copied().or(self.cap)?.max(1);
        let mut lanes = self.lanes.lock().expect("host limit lock");
        Some(
            lanes
                .entry((host.to_string(), lane))
                .or_insert_with(|| Arc::new(Limiter::new(cap)))
                .clone(),
        )
    }

    /// Wait for a permit to send one request to `host`.
    pub async fn acquire(&self, host: &str, lane: Lane) -> Option<HostPermit> {
        match self.limiter(host, lane) {
            Some(l) => Some(l.acquire().await),
            None => None,
        }
    }
}

/// One host lane's limit. Permits are semaphore permits; lowering the limit
/// takes permits out of circulation (at once if they are free, else as
/// they come back), raising it puts them back.
#[derive(Debug)]
pub struct Limiter {
    cap: usize,
    permits: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits still to withdraw as holders return them.
    debt: usize,
    /// Successes since the limit last changed.
    successes: usize,
    /// Bumped at every cut: requests sent before it were sent under the
    /// old limit, and their throttled answers do not cut again.
    epoch: u64,
}

impl Limiter {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Limiter {
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            state: Mutex::new(State {
                limit: cap,
                debt: 0,
                successes: 0,
                epoch: 0,
            }),
        }
    }

    /// Requests allowed in flight now.
    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.state.lock().expect("limiter lock").limit
    }

    pub async fn acquire(self: &Arc<Self>) -> HostPermit {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter's semaphore is never closed");
        let epoch = self.state.lock().expect("limiter lock").epoch;
        HostPermit {
            limiter: self.clone(),
            epoch,
            permit: Some(permit),
        }
    }

    /// The host throttled a request sent under `permit`: halve the limit
    /// (never below one), unless it was already cut since that request went.
    pub fn throttled(&self, permit: &HostPermit) {
        let mut st = self.state.lock().expect("limiter lock");
        st.successes = 0;
        if permit.epoch != st.epoch || st.limit == 1 {
            return;
        }
        let next = (st.limit / 2).max(1);
        let cut = st.limit - next;
        st.limit = next;
        st.epoch += 1;
        for _ in 0..cut {
            match self.permits.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => st.debt += 1,
            }
        }
        tracing::info!(limit = next, "host throttled: fewer requests in flight");
    }

    /// A request succeeded: after as many successes in a row as the limit,
    /// allow one more request in flight, up to the cap.
    pub fn succeeded(&self) {
        let mut st = self.state.lock().expect("limiter lock");
        if st.limit >= self.cap {
            return;
        }
        st.successes += 1;
        if st.successes < st.limit {
            return;
        }
        st.successes = 0;
        st.limit += 1;
        if st.debt > 0 {
            st.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
        tracing::debug!(
            limit = st.limit,
            "host recovering: one more request in flight"
        );
    }

    fn release(&self, permit: OwnedSemaphorePermit) {
        let mut st = self.state.lock().expect("limiter lock");
        if st.debt > 0 {
            st.debt -= 1;
            permit.forget();
        }
        // Otherwise dropping `permit` returns it.
    }
}

/// The right to have one request (and its response body) in flight to a
/// host; returned on drop.
#[derive(Debug)]
pub struct HostPermit {
    limiter: Arc<Limiter>,
    epoch: u64,
    permit: Option<OwnedSemaphorePermit>,
}

impl HostPermit {
    pub fn throttled(&self) {
        self.limiter.throttled(self);
    }

    pub fn succeeded(&self) {
        self.limiter.succeeded();
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.limiter.release(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn available(l: &Limiter) -> usize {
        l.permits.available_permits()
    }

    #[tokio::test]
    async fn a_throttle_halves_the_limit_down_to_one() {
        let l = Arc::new(Limiter::new(8));
        for want in [4, 2, 1, 1] {
            let p = l.acquire().await;
            p.throttled();
            drop(p);
            assert_eq!(l.limit(), want);
            assert_eq!(available(&l), want);
        }
    }

    #[tokio::test]
    async fn answers_to_requests_sent_before_a_cut_do_not_cut_again() {
        let l = Arc::new(Limiter::new(8));
        let burst: Vec<HostPermit> = futures::future::join_all((0..8).map(|_| l.acquire())).await;
        // Eight requests in flight all come back 429: one cut, not three.
        for p in &burst {
            p.throttled();
        }
        assert_eq!(l.limit(), 4);
        drop(burst);
        assert_eq!(available(&l), 4, "the four extra permits were withdrawn");
        // A request sent under the new limit may cut again.
        let p = l.acquire().await;
        p.throttled();
        assert_eq!(l.limit(), 2);
    }

    #[tokio::test]
    async fn the_limit_grows_by_one_after_as_many_successes_up_to_the_cap() {
        let l = Arc::new(Limiter::new(4));
        let p = l.acquire().await;
        p.throttled();
        p.throttled();
        drop(p);
        assert_eq!(l.limit(), 2, "the second answer shares the first's epoch");
        let p = l.acquire().await;
        p.throttled();
        drop(p);
        assert_eq!(l.limit(), 1);
        let ok = l.acquire().await;
        ok.succeeded();
        drop(ok);
        assert_eq!(l.limit(), 2, "one success at limit 1");
        for _ in 0..2 {
            let ok = l.acquire().await;
            ok.succeeded();
        }
        assert_eq!(l.limit(), 3);
        for _ in 0..20 {
            let ok = l.acquire().await;
            ok.succeeded();
        }
        assert_eq!(l.limit(), 4, "never above the cap");
        assert_eq!(available(&l), 4);
    }

    #[tokio::test]
    async fn a_throttle_while_all_permits_are_out_holds_back_returned_ones() {
        let l = Arc::new(Limiter::new(4));
        let mut out: Vec<HostPermit> = Vec::new();
        for _ in 0..4 {
            out.push(l.acquire().await);
        }
        out[0].throttled();
        assert_eq!(l.limit(), 2);
        out.truncate(2);
        assert_eq!(available(&l), 0, "two still out: the limit is reached");
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a third request waits");
        out.pop();
        let third = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("a returned permit lets the waiter go")
            .unwrap();
        drop(third);
        drop(out);
        assert_eq!(available(&l), 2);
    }

    #[tokio::test]
    async fn lanes_and_hosts_are_separate_and_no_cap_means_no_limiter() {
        let limits = HostLimits::new(Some(1));
        let a = limits.acquire("a:1", Lane::Read).await.unwrap();
        let w = tokio::time::timeout(Duration::from_secs(1), limits.acquire("a:1", Lane::Write))
            .await
            .expect("a write is not held up by a read");
        let b = tokio::time::timeout(Duration::from_secs(1), limits.acquire("b:1", Lane::Read))
            .await
            .expect("another host is not held up");
        drop((a, w, b));
        assert!(HostLimits::new(None)
            .acquire("a:1", Lane::Read)
            .await
            .is_none());
    }
}
