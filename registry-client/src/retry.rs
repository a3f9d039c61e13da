//! Retry policy: exponential backoff with jitter, `Retry-After` in both its
//! forms, and a pause per host that every request to that host respects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

/// How hard to retry transient failures: connection errors, resets,
/// timeouts, 408, 429 and 5xx, with full-jitter exponential backoff. The
/// wait belongs to the host: every request to it waits, not only the one
/// that failed. A streamed body (an upload from a stream) is never resent.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (5).
    pub max_attempts: u32,
    /// The wait after the first failure (200 ms); it doubles after each.
    pub base_delay: Duration,
    /// The longest wait between attempts (20 s).
    pub max_delay: Duration,
    /// The longest `Retry-After` obeyed; longer answers fail the request
    /// (default [`crate::limits::MAX_RETRY_AFTER`]).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_retry_after: crate::limits::MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff for the given failed attempt (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        cap.mul_f64(jitter)
    }
}

/// Parse a `Retry-After` value: delay-seconds, or an HTTP date (a date
/// already past is no wait). `None` for anything else.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// assert_eq!(
///     registry_client::parse_retry_after("7", SystemTime::now()),
///     Some(Duration::from_secs(7))
/// );
/// assert_eq!(registry_client::parse_retry_after("soon", SystemTime::now()), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Pauses shared by every request to one host: when a host says "wait"
/// (429/503 with Retry-After), no request to it goes out before that time.
#[derive(Debug, Default, Clone)]
pub(crate) struct HostGates {
    inner: Arc<Mutex<HashMap<String, Instant>>>,
}

impl HostGates {
    /// Hold requests to `host` until `until` (a later time wins).
    pub fn pause_until(&self, host: &str, until: Instant) {
        let mut map = self.inner.lock().expect("host gate lock");
        let slot = map.entry(host.to_string()).or_insert(until);
        if *slot < until {
            *slot = until;
        }
    }

    /// How long a request to `host` must still wait.
    pub fn wait_for(&self, host: &str) -> Option<Duration> {
        let map = self.inner.lock().expect("host gate lock");
        let until = *map.get(host)?;
        until.checked_duration_since(Instant::now())
    }

    pub async fn wait(&self, host: &str) {
        while let Some(d) = self.wait_for(host) {
            tracing::debug!(
                host,
                wait_ms = d.as_millis() as u64,
                "waiting for host pause"
            );
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert!(p.backoff(1) <= Duration::from_millis(100));
        assert!(p.backoff(1) >= Duration::from_millis(50));
        assert!(p.backoff(3) >= Duration::from_millis(200));
        assert!(p.backoff(30) <= Duration::from_secs(1));
    }

    #[test]
    fn a_pause_applies_to_its_host_only_and_later_wins() {
        let g = HostGates::default();
        g.pause_until("a", Instant::now() + Duration::from_secs(5));
        g.pause_until("a", Instant::now() + Duration::from_secs(1));
        assert!(g.wait_for("a").unwrap() > Duration::from_secs(4));
        assert!(g.wait_for("b").is_none());
    }
}
