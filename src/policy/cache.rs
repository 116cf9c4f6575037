//! Response caching (Kong's `proxy-cache` with its memory strategy, and weir's HTTPRoute
//! extension `responseCache`): a response to a cacheable request (method, status and content
//! type listed) is kept for `ttl` and answered from memory meanwhile, with
//! `X-Cache-Status: Hit` (else `Miss`, or `Bypass` for requests that are not cacheable) and
//! `X-Cache-Key`. The key is the authority, the path (lower-cased with `ignore_uri_case`), the
//! query parameters named in `vary_query_params` (all when none are named) and the headers
//! named in `vary_headers`. Entries live in the same store as the stale-cache fallback.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};

/// A rule's response cache.
#[derive(Debug)]
pub struct ResponseCache {
    /// The store (an index into the snapshot's caches).
    pub store: usize,
    /// How long a response is served from the cache.
    pub ttl: Duration,
    /// Cacheable statuses.
    pub statuses: Vec<u16>,
    /// Cacheable methods.
    pub methods: Vec<Method>,
    /// Cacheable content types (the part before any `;`), lower case.
    pub content_types: Vec<String>,
    /// Query parameters in the key (`None`: all of them).
    pub vary_query: Option<Vec<String>>,
    /// Headers in the key.
    pub vary_headers: Vec<HeaderName>,
    /// Paths compared without case.
    pub ignore_uri_case: bool,
    /// Send `X-Cache-Status`, `X-Cache-Key` and `Age`.
    pub show_headers: bool,
}

/// `X-Cache-Status`.
pub const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");
/// `X-Cache-Key`.
pub const X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");

impl ResponseCache {
    /// The key of a request, if its method is cacheable.
    pub fn key(
        &self,
        method: &Method,
        authority: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<String> {
        if !self.methods.contains(method) {
            return None;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        method.as_str().hash(&mut hasher);
        authority.to_ascii_lowercase().hash(&mut hasher);
        if self.ignore_uri_case {
            path.to_ascii_lowercase().hash(&mut hasher);
        } else {
            path.hash(&mut hasher);
        }
        let mut params: Vec<&str> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split_once('=').map_or(*p, |(k, _)| k);
                self.vary_query
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n == name))
            })
            .collect();
        params.sort_unstable();
        params.hash(&mut hasher);
        for h in &self.vary_headers {
            for v in headers.get_all(h) {
                v.as_bytes().hash(&mut hasher);
            }
        }
        Some(format!("{:016x}", hasher.finish()))
    }

    /// Whether a response may be kept.
    pub fn cacheable(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        self.statuses.contains(&status.as_u16())
            && self
                .content_types
                .iter()
                .any(|c| *c == content_type || c == "*/*")
    }
}
