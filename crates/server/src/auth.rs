//! Who is calling: the API key from `Authorization` (Basic with the key as user name, as
//! Segment SDKs send it, or Bearer) or from a Segment body's `writeKey`, checked against the
//! metadata database through the app.
//!
//! Answers are cached for a short time (default 2 s) keyed by the key's SHA-256, so a busy
//! collector does not query SQLite on every request; a key made by `omnitrail keys create`
//! works at once (unknown keys are never cached) and a revoked key stops working within
//! the cache time.

use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use base64::Engine;
use omnitrail_app::keys::{key_hash, Authenticated, KeyKind};
use omnitrail_app::App;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key a request presents in its headers, if any.
pub fn header_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string()).filter(|k| !k.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        // Segment SDKs send `writeKey:` (empty password); some clients put it as password.
        let (user, password) = text.split_once(':').unwrap_or((&text, ""));
        let key = if user.is_empty() { password } else { user };
        return Some(key.to_string()).filter(|k| !k.is_empty());
    }
    None
}

pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Authenticated, Instant)>>,
}

/// Most keys a cache holds; past it, expired entries are dropped, then all of them.
const MAX_ENTRIES: usize = 10_000;

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Authenticated, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller a key stands for; 401 when it is unknown or revoked.
    pub async fn authenticate(&self, app: &Arc<App>, key: &str) -> Result<Authenticated, ApiError> {
        let hash = key_hash(key);
        let now = Instant::now();
        if let Some((auth, at)) = self.lock().get(&hash) {
            if now.duration_since(*at) < self.ttl {
                return Ok(*auth);
            }
        }
        let app = app.clone();
        let key = key.to_string();
        let found = tokio::task::spawn_blocking(move || app.authenticate(&key)).await??;
        match found {
            Some(auth) => {
                let mut entries = self.lock();
                if entries.len() >= MAX_ENTRIES {
                    let ttl = self.ttl;
                    entries.retain(|_, (_, at)| now.duration_since(*at) < ttl);
                    if entries.len() >= MAX_ENTRIES {
                        entries.clear();
                    }
                }
                entries.insert(hash, (auth, now));
                Ok(auth)
            }
            None => Err(ApiError::unauthorized("the API key is unknown or revoked")),
        }
    }
}

/// A caller allowed to read and administer: a secret key only. (Any valid key may send
/// events: secret keys can do everything a write key can.)
pub fn require_secret(auth: Authenticated) -> Result<Authenticated, ApiError> {
    match auth.kind {
        KeyKind::Secret => Ok(auth),
        KeyKind::Write => Err(ApiError::forbidden(
            "a write key can only send events; the query API needs a secret key (Authorization: Bearer ots_…)",
        )),
    }
}

pub fn missing_key(for_segment: bool) -> ApiError {
    if for_segment {
        ApiError::unauthorized(
            "no API key: send the write key as the Basic-auth user name or as writeKey in the body",
        )
    } else {
        ApiError::unauthorized("no API key: send Authorization: Bearer <key>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn reads_basic_and_bearer_keys() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            header_key(&with(&format!("Basic {}", b64("otw_abc:")))),
            Some("otw_abc".into())
        );
        assert_eq!(
            header_key(&with(&format!("basic {}", b64(":otw_abc")))),
            Some("otw_abc".into())
        );
        assert_eq!(header_key(&with("Bearer ots_x")), Some("ots_x".into()));
        assert_eq!(header_key(&with("Bearer ")), None);
        assert_eq!(header_key(&with("Basic !!!")), None);
        assert_eq!(header_key(&with("Digest x")), None);
        assert_eq!(header_key(&HeaderMap::new()), None);
    }
}
