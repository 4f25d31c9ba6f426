//! Per-key rate limits of the collectors and the request timeout of every endpoint.
//!
//! Rate limits are token buckets, one per API key: a key may send `burst` requests at
//! once and `per_sec` a second on average; past that it gets 429 with `Retry-After` (the
//! seconds until a token is back), before its body is read. Buckets live in memory, so a
//! restart refills them. Body, decompression and event size caps are in `body.rs` and the
//! collectors; this is the part that depends on time.

use crate::error::ApiError;
use crate::Shared;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use omnitrail_app::keys::Authenticated;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most buckets kept; past it, full ones (keys idle long enough to have refilled) go.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    /// `per_sec` of 0 (or less) means no limit.
    pub(crate) fn new(per_sec: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `key`'s bucket at `now`, or says in how many whole seconds one is
    /// back.
    pub(crate) fn take(&self, key: i64, now: Instant) -> Result<(), u64> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst
            });
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - b.tokens) / self.per_sec;
        Err((wait.ceil() as u64).max(1))
    }
}

/// The caller of a collector request: authenticated, then charged one token of its key's
/// bucket (429 with `Retry-After` when it has none).
pub(crate) async fn collector_caller(
    shared: &Arc<Shared>,
    key: &str,
) -> Result<Authenticated, ApiError> {
    let caller = shared.keys.authenticate(&shared.app, key).await?;
    shared
        .rate_limiter
        .take(caller.key_id, Instant::now())
        .map_err(|secs| ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this key sent more than {} requests a second (bursts up to {}); retry after {secs} s",
                    shared.config.rate_limit_per_sec, shared.config.rate_limit_burst
                ),
            )
        })?;
    Ok(caller)
}

/// Ends a request that takes longer than [`crate::ServerConfig::request_timeout`] with 408:
/// a client that sends its body too slowly, or work that did not finish in time. Blocking
/// work already started runs to its end (an ingest still stores its events, and a retry
/// with the same event ids is de-duplicated).
pub(crate) async fn timeout(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = shared.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request did not complete within {} s; send the body faster or retry",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(1, t0), Ok(()));
        }
        assert_eq!(limiter.take(1, t0), Err(1));
        // Another key has its own bucket.
        assert_eq!(limiter.take(2, t0), Ok(()));
        // Half a second later one token is back (2 a second), not two.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take(1, t1), Ok(()));
        assert_eq!(limiter.take(1, t1), Err(1));
        // Never more than the burst, however long the key was idle.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.take(1, t2), Ok(()));
        }
        assert!(limiter.take(1, t2).is_err());
    }

    #[test]
    fn a_slow_rate_says_how_long_to_wait() {
        let limiter = RateLimiter::new(0.1, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.take(7, t0), Ok(()));
        assert_eq!(limiter.take(7, t0), Err(10));
        assert_eq!(limiter.take(7, t0 + Duration::from_secs(4)), Err(6));
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limiter = RateLimiter::new(0.0, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.take(1, t0), Ok(()));
        }
    }
}
