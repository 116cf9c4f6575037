//! Cohort stickiness for weighted splits (weir's `sessionAffinity` on an HTTP route, which a
//! Canary's `analysis.sessionAffinity` sets while weights move).
//!
//! Each user carries a bucket (`0..10000`) in a cookie, and the bucket, not a fresh draw, picks
//! the destination along the split's cumulative weights. A user without the cookie gets a
//! random bucket and the cookie. So a user stays on one version, the share of users on each
//! version is its weight, and as the last destination's weight grows (the canary's, listed
//! after the primary) its range of buckets only widens: users move toward the canary, never
//! back. (Flagger's cookie scheme lets the canary's share drift above its weight, fluxcd/flagger
//! #1532; Istio cannot be sticky across weighted subsets at all, istio/istio#9764.)

use http::HeaderMap;
use http::header::{self, HeaderValue};

use crate::backend::hash::cookie;

/// Buckets a user can fall in: basis points of the split.
pub const BUCKETS: u32 = 10_000;

/// Flagger's default cookie lifetime, seconds.
const DEFAULT_MAX_AGE: u32 = 86_400;

/// The cohort cookie.
#[derive(Clone, Debug, PartialEq)]
pub struct Affinity {
    /// Cookie name.
    pub name: String,
    /// The rest of `Set-Cookie` after the value: `; Max-Age=...; Path=...` and flags.
    pub attributes: String,
}

impl Affinity {
    /// A cookie `name` with Flagger's attributes (`maxAge` default 86400 s).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        max_age: Option<u32>,
        domain: Option<&str>,
        path: Option<&str>,
        http_only: bool,
        secure: bool,
        same_site: Option<&str>,
        partitioned: bool,
    ) -> Affinity {
        let mut attributes = format!("; Max-Age={}", max_age.unwrap_or(DEFAULT_MAX_AGE));
        if let Some(d) = domain {
            attributes.push_str(&format!("; Domain={d}"));
        }
        attributes.push_str(&format!("; Path={}", path.unwrap_or("/")));
        if http_only {
            attributes.push_str("; HttpOnly");
        }
        if secure {
            attributes.push_str("; Secure");
        }
        if let Some(s) = same_site {
            attributes.push_str(&format!("; SameSite={s}"));
        }
        if partitioned {
            attributes.push_str("; Partitioned");
        }
        Affinity {
            name: name.to_owned(),
            attributes,
        }
    }

    /// The bucket a request's cookie carries, if it carries a valid one.
    pub fn bucket(&self, headers: &HeaderMap) -> Option<u32> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| cookie(v, &self.name))
            .and_then(|v| v.parse().ok())
            .filter(|&b| b < BUCKETS)
    }

    /// A new user's bucket, and the cookie that keeps it.
    pub fn assign(&self) -> (u32, Option<HeaderValue>) {
        let bucket = fastrand::u32(..BUCKETS);
        let set = format!("{}={bucket}{}", self.name, self.attributes);
        (bucket, HeaderValue::from_str(&set).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_the_cookie_or_are_assigned() {
        let a = Affinity::new("canary", None, None, None, true, false, Some("Lax"), false);
        let mut h = HeaderMap::new();
        assert_eq!(a.bucket(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; canary=4711"));
        assert_eq!(a.bucket(&h), Some(4711));
        h.insert(header::COOKIE, HeaderValue::from_static("canary=10000"));
        assert_eq!(a.bucket(&h), None);
        let (b, set) = a.assign();
        assert!(b < BUCKETS);
        assert_eq!(
            set.unwrap().to_str().unwrap(),
            format!("canary={b}; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax")
        );
    }
}
