//! Fallbacks (weir's `fallback` extension of the VirtualService HTTP route): what a request
//! gets when it finally fails (a 5xx after retries, a timeout, an open circuit, no healthy
//! upstream), tried in this order, as the seed describes them:
//!
//! 1. `staleCache`: the last good response to the same GET, if it is recent enough;
//! 2. `destination`: one try at a backup service;
//! 3. `response`: a fixed response.
//!
//! Whatever answers says so in `x-weir-fallback` (`stale-cache`, `backup`, `static`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use tokio::time::Instant;

use crate::policy::split::WeightedDest;

/// The response header naming the fallback that answered.
pub const X_WEIR_FALLBACK: HeaderName = HeaderName::from_static("x-weir-fallback");

/// A rule's fallbacks.
#[derive(Debug)]
pub struct Fallback {
    /// The stale cache (an index into the snapshot's caches).
    pub cache: Option<usize>,
    /// The backup service.
    pub backup: Option<WeightedDest>,
    /// The fixed response.
    pub response: Option<StaticResponse>,
}

impl Fallback {
    /// The key a request's good response is kept under for the stale cache: GETs only, by
    /// authority and target; `None` without a stale cache.
    pub fn stale_key(&self, method: &Method, authority: &str, pq: &str) -> Option<Box<str>> {
        (self.cache.is_some() && method == Method::GET)
            .then(|| format!("{authority}{pq}").into_boxed_str())
    }
}

/// `fallback.response`.
#[derive(Debug)]
pub struct StaticResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// `fallback.staleCache` as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheSpec {
    /// Oldest response served.
    pub max_age: Duration,
    /// Most responses kept.
    pub max_entries: usize,
    /// Largest body kept.
    pub max_body: usize,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            max_age: Duration::from_secs(300),
            max_entries: 1000,
            max_body: 1024 * 1024,
        }
    }
}

/// A kept response.
#[derive(Clone, Debug, PartialEq)]
pub struct Cached {
    /// Status.
    pub status: StatusCode,
    /// Headers, as they were sent.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// When it was kept.
    pub stored: Instant,
    /// How long it stays fresh, when it says so itself (`Cache-Control`); else the store's
    /// `maxAge`.
    pub ttl: Option<Duration>,
}

/// The last good responses of one rule, by authority and target; kept across reloads.
#[derive(Debug)]
pub struct StaleCache {
    spec: CacheSpec,
    entries: Mutex<HashMap<String, Cached>>,
}

impl StaleCache {
    /// An empty cache.
    pub fn new(spec: CacheSpec) -> StaleCache {
        StaleCache {
            spec,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Its configuration.
    pub fn spec(&self) -> &CacheSpec {
        &self.spec
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a response, replacing the one kept for `key`; when full, the oldest goes.
    pub fn put(&self, key: String, entry: Cached) {
        let mut entries = self.lock();
        if entries.len() >= self.spec.max_entries && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.stored)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                entries.remove(&k);
            }
        }
        entries.insert(key, entry);
    }

    /// The response kept for `key`, if it is younger than its own lifetime or else `maxAge`
    /// at `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<Cached> {
        let entries = self.lock();
        entries
            .get(key)
            .filter(|e| {
                now.saturating_duration_since(e.stored) <= e.ttl.unwrap_or(self.spec.max_age)
            })
            .cloned()
    }

    /// Responses kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response body on its way to the client, copied until it ends, then kept.
#[derive(Debug)]
pub struct Tee {
    cache: std::sync::Arc<StaleCache>,
    key: String,
    status: StatusCode,
    headers: HeaderMap,
    ttl: Option<Duration>,
    body: BytesMut,
    too_large: bool,
}

impl Tee {
    /// Starts copying a response to be kept under `key` (for `ttl`, if it sets its own).
    pub fn new(
        cache: std::sync::Arc<StaleCache>,
        key: String,
        (status, mut headers): (StatusCode, HeaderMap),
        ttl: Option<Duration>,
    ) -> Tee {
        // A cookie set for one client is not replayed to others.
        headers.remove(http::header::SET_COOKIE);
        Tee {
            cache,
            key,
            status,
            headers,
            ttl,
            body: BytesMut::new(),
            too_large: false,
        }
    }

    /// Copies a piece of the body.
    pub fn data(&mut self, data: &Bytes) {
        if self.too_large || self.body.len() + data.len() > self.cache.spec.max_body {
            self.too_large = true;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(data);
    }

    /// The body ended whole: keeps the response.
    pub fn finish(self) {
        if self.too_large {
            return;
        }
        self.cache.put(
            self.key,
            Cached {
                status: self.status,
                headers: self.headers,
                body: self.body.freeze(),
                stored: Instant::now(),
                ttl: self.ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static str) -> Cached {
        Cached {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            stored: Instant::now(),
            ttl: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_max_age_and_the_oldest_goes_first() {
        let c = StaleCache::new(CacheSpec {
            max_age: Duration::from_secs(60),
            max_entries: 2,
            max_body: 100,
        });
        c.put("a".into(), entry("1"));
        tokio::time::advance(Duration::from_secs(10)).await;
        c.put("b".into(), entry("2"));
        assert_eq!(c.get("a", Instant::now()).unwrap().body, "1");
        c.put("c".into(), entry("3"));
        assert!(
            c.get("a", Instant::now()).is_none(),
            "the oldest was evicted"
        );
        assert_eq!(c.len(), 2);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(c.get("b", Instant::now()).is_none(), "too old to serve");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_not_kept() {
        let c = std::sync::Arc::new(StaleCache::new(CacheSpec {
            max_body: 4,
            ..CacheSpec::default()
        }));
        let mut t = Tee::new(
            c.clone(),
            "k".into(),
            (StatusCode::OK, HeaderMap::new()),
            None,
        );
        t.data(&Bytes::from_static(b"abc"));
        t.data(&Bytes::from_static(b"de"));
        t.finish();
        assert!(c.is_empty());
        let mut t = Tee::new(
            c.clone(),
            "k".into(),
            (StatusCode::OK, HeaderMap::new()),
            None,
        );
        t.data(&Bytes::from_static(b"ab"));
        t.data(&Bytes::from_static(b"cd"));
        t.finish();
        assert_eq!(c.get("k", Instant::now()).unwrap().body, "abcd");
    }

    #[test]
    fn only_gets_are_kept_for_the_stale_cache() {
        let with_cache = Fallback {
            cache: Some(0),
            backup: None,
            response: None,
        };
        assert_eq!(
            with_cache
                .stale_key(&Method::GET, "shop", "/items?page=2")
                .as_deref(),
            Some("shop/items?page=2")
        );
        assert_eq!(with_cache.stale_key(&Method::POST, "shop", "/items"), None);
        let without = Fallback {
            cache: None,
            ..with_cache
        };
        assert_eq!(without.stale_key(&Method::GET, "shop", "/items"), None);
    }
}
