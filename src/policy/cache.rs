//! Response caching (Kong's `proxy-cache` with its memory strategy, and weir's HTTPRoute
//! extension `responseCache`): a response to a cacheable request (method, status and content
//! type listed) is kept for `ttl` and answered from memory meanwhile, with
//! `X-Cache-Status: Hit` (else `Miss`, or `Bypass` for requests that are not cacheable) and
//! `X-Cache-Key`. The key is the authority, the path (lower-cased with `ignore_uri_case`), the
//! query parameters named in `vary_query_params` (all when none are named) and the headers
//! named in `vary_headers`. Entries live in the same store as the stale-cache fallback.
//!
//! With `cache_control` (RFC 9111, as Kong reads it) a request with `no-store`, `no-cache` or
//! `Authorization` bypasses the cache; one with `max-age` or `min-fresh` that the kept copy
//! does not meet is sent upstream (`Refresh`); `only-if-cached` without a copy gets 504. A
//! response with `private`, `no-store` or `no-cache` is not kept, and one is kept for its own
//! `s-maxage`, `max-age` or `Expires`, and only when that is above zero.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tokio::time::Instant;

use crate::policy::fallback::{Cached, StaleCache};

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
    /// Follow `Cache-Control` (Kong's `cache_control`).
    pub cache_control: bool,
}

/// The `Cache-Control` directives the cache acts on.
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`.
    pub no_cache: bool,
    /// `private`.
    pub private: bool,
    /// `only-if-cached`.
    pub only_if_cached: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds.
    pub s_maxage: Option<u64>,
    /// `min-fresh`, seconds.
    pub min_fresh: Option<u64>,
}

impl Directives {
    /// The directives of every `Cache-Control` field of `headers`; unknown ones are ignored.
    pub fn of(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let (name, arg) = match item.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (item.trim(), None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "only-if-cached" => d.only_if_cached = true,
                    "max-age" => d.max_age = secs(),
                    "s-maxage" => d.s_maxage = secs(),
                    "min-fresh" => d.min_fresh = secs(),
                    _ => {}
                }
            }
        }
        d
    }
}

/// What the cache makes of a request.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// Answer with the kept copy (`Hit`).
    Hit(Cached),
    /// Go upstream and keep the answer (`Miss`, or `Refresh` when the client refused the copy).
    Fetch(&'static str),
    /// The client asked for a kept copy only and there is none: 504.
    OnlyIfCached,
}

/// What the cache made of a request it was consulted for.
#[derive(Debug)]
pub enum Consulted {
    /// A fresh copy, kept under this key: the answer.
    Hit(Cached, String),
    /// The client asked for a kept copy only and there is none.
    NotCached,
    /// Go upstream; the answer is kept under the key, if there is one (and it may be kept).
    /// The status is the request's `X-Cache-Status`.
    Fetch(Option<String>, &'static str),
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

    /// Consults `store` for a request: its key (none for methods not cached, or when the
    /// request's `Cache-Control` refuses the cache), then the copy kept under it.
    pub fn consult(
        &self,
        store: &StaleCache,
        method: &Method,
        authority: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Consulted {
        let directives = self.directives(headers);
        let key = self
            .key(method, authority, path, query, headers)
            .filter(|_| self.admits(directives.as_ref(), headers));
        let Some(key) = key else {
            return Consulted::Fetch(None, "Bypass");
        };
        let now = Instant::now();
        match self.lookup(store.get(&key, now), directives.as_ref(), now) {
            Lookup::Hit(hit) => Consulted::Hit(hit, key),
            Lookup::OnlyIfCached => Consulted::NotCached,
            Lookup::Fetch(status) => Consulted::Fetch(Some(key), status),
        }
    }

    /// Adds `X-Cache-Status` and `X-Cache-Key` to `headers`, when the cache shows them.
    pub fn show(&self, headers: &mut HeaderMap, status: &'static str, key: Option<&str>) {
        if !self.show_headers {
            return;
        }
        headers.insert(X_CACHE_STATUS, HeaderValue::from_static(status));
        if let Some(v) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.insert(X_CACHE_KEY, v);
        }
    }

    /// A request's directives, read once, when the cache follows them.
    pub fn directives(&self, headers: &HeaderMap) -> Option<Directives> {
        self.cache_control.then(|| Directives::of(headers))
    }

    /// Whether a request with these directives (see [`Self::directives`]) may use the cache:
    /// not with `no-store`, `no-cache` or credentials.
    pub fn admits(&self, d: Option<&Directives>, headers: &HeaderMap) -> bool {
        d.is_none_or(|d| !(d.no_store || d.no_cache || headers.contains_key(header::AUTHORIZATION)))
    }

    /// What to do with a cacheable request, given the copy kept for it (fresh or not).
    pub fn lookup(&self, kept: Option<Cached>, d: Option<&Directives>, now: Instant) -> Lookup {
        let Some(kept) = kept else {
            return match d {
                Some(d) if d.only_if_cached => Lookup::OnlyIfCached,
                _ => Lookup::Fetch("Miss"),
            };
        };
        if let Some(d) = d {
            let age = now.saturating_duration_since(kept.stored).as_secs();
            let ttl = kept.ttl.unwrap_or(self.ttl).as_secs();
            if d.max_age.is_some_and(|m| age > m)
                || d.min_fresh.is_some_and(|m| ttl.saturating_sub(age) < m)
            {
                return Lookup::Fetch("Refresh");
            }
        }
        Lookup::Hit(kept)
    }

    /// How long a response may be kept: `None` when it may not be.
    pub fn keep_for(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        if !self.cacheable(status, headers) {
            return None;
        }
        if !self.cache_control {
            return Some(self.ttl);
        }
        let d = Directives::of(headers);
        if d.private || d.no_store || d.no_cache {
            return None;
        }
        let secs = match d.s_maxage.or(d.max_age) {
            Some(s) => s,
            None => {
                let expires = headers.get(header::EXPIRES)?.to_str().ok()?;
                let at = httpdate::parse_http_date(expires).ok()?;
                at.duration_since(std::time::SystemTime::now())
                    .ok()?
                    .as_secs()
            }
        };
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// Whether a response's status and content type may be kept.
    fn cacheable(&self, status: StatusCode, headers: &HeaderMap) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cache() -> ResponseCache {
        ResponseCache {
            store: 0,
            ttl: Duration::from_secs(300),
            statuses: vec![200],
            methods: vec![Method::GET],
            content_types: vec!["application/json".into()],
            vary_query: None,
            vary_headers: Vec::new(),
            ignore_uri_case: false,
            show_headers: true,
            cache_control: true,
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn directives_are_read_across_fields_and_case() {
        let h = headers(&[
            ("cache-control", "Public, MAX-AGE=\"30\"".into()),
            ("cache-control", "s-maxage=60,no-cache".into()),
        ]);
        let d = Directives::of(&h);
        assert_eq!(d.max_age, Some(30));
        assert_eq!(d.s_maxage, Some(60));
        assert!(d.no_cache && !d.no_store && !d.private);
    }

    #[test]
    fn lifetimes_come_from_s_maxage_max_age_or_expires() {
        let c = cache();
        let ok = StatusCode::OK;
        let keep = |pairs: &[(&'static str, String)]| c.keep_for(ok, &headers(pairs));
        assert_eq!(
            keep(&[("cache-control", "max-age=10, s-maxage=20".into())]),
            Some(Duration::from_secs(20))
        );
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let kept = keep(&[("expires", httpdate::fmt_http_date(soon))]).unwrap();
        assert!((118..=120).contains(&kept.as_secs()), "{kept:?}");
        let past = std::time::SystemTime::now() - Duration::from_secs(120);
        assert_eq!(keep(&[("expires", httpdate::fmt_http_date(past))]), None);
        assert_eq!(keep(&[("expires", "0".into())]), None);
        assert_eq!(keep(&[]), None);
        // Without cache_control the configured ttl applies whatever the upstream says.
        let plain = ResponseCache {
            cache_control: false,
            ..cache()
        };
        assert_eq!(
            plain.keep_for(ok, &headers(&[("cache-control", "no-store".into())])),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn consult_misses_then_hits_and_bypasses_what_it_may_not_serve() {
        let c = cache();
        let store = StaleCache::new(crate::policy::fallback::CacheSpec::default());
        let get = Method::GET;
        let h = HeaderMap::new();
        let Consulted::Fetch(Some(key), "Miss") = c.consult(&store, &get, "shop", "/a", None, &h)
        else {
            panic!("a first request misses");
        };
        store.put(
            key.clone(),
            Cached {
                status: StatusCode::OK,
                headers: headers(&[]),
                body: bytes::Bytes::from_static(b"[]"),
                stored: Instant::now(),
                ttl: None,
            },
        );
        assert!(matches!(
            c.consult(&store, &get, "shop", "/a", None, &h),
            Consulted::Hit(_, k) if k == key
        ));
        // Methods not cached, and requests that refuse the cache, bypass it.
        let post = c.consult(&store, &Method::POST, "shop", "/a", None, &h);
        assert!(matches!(post, Consulted::Fetch(None, "Bypass")));
        let no_store = headers(&[("cache-control", "no-store".into())]);
        let refused = c.consult(&store, &get, "shop", "/a", None, &no_store);
        assert!(matches!(refused, Consulted::Fetch(None, "Bypass")));
        // only-if-cached with nothing kept: not cached.
        let only = headers(&[("cache-control", "only-if-cached".into())]);
        let b = c.consult(&store, &get, "shop", "/b", None, &only);
        assert!(matches!(b, Consulted::NotCached));
        // The status headers are shown only when the cache shows them.
        let mut shown = HeaderMap::new();
        c.show(&mut shown, "Miss", Some(&key));
        assert_eq!(shown[X_CACHE_STATUS], "Miss");
        assert_eq!(shown[X_CACHE_KEY], key.as_str());
        let hidden = ResponseCache {
            show_headers: false,
            ..cache()
        };
        let mut none = HeaderMap::new();
        hidden.show(&mut none, "Miss", Some(&key));
        assert!(none.is_empty());
    }
}
