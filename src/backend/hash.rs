//! Consistent hashing (`loadBalancer.consistentHash`): a request key (a header, a cookie, the
//! client's address, a query parameter, the path or a capture of the route's regex path, with
//! a second key when the request lacks the first) picks the same endpoint while the endpoints
//! stay the same, and moves only about 1/n of the keys when one comes or goes. Two tables, as
//! Envoy has: a ring (`ringHash`, the default) and Maglev (`maglev`).

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Envoy's default smallest ring.
pub(crate) const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's default Maglev table size (a prime).
pub(crate) const DEFAULT_MAGLEV_SIZE: u64 = 65537;
/// The largest table weir builds (Envoy's ring limit).
pub(crate) const MAX_TABLE_SIZE: u64 = 8 * 1024 * 1024;

/// What a request is hashed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HashKey {
    /// A header's value (`httpHeaderName`).
    Header(HeaderName),
    /// A cookie (`httpCookie`), generated when absent if it has a `ttl`.
    Cookie {
        /// Cookie name.
        name: String,
        /// `Path` of a generated cookie.
        path: Option<String>,
        /// Lifetime of a generated cookie (0: a session cookie); `None`: never generated.
        ttl: Option<Duration>,
    },
    /// The client's IP address (`useSourceIp`).
    SourceIp,
    /// A query parameter (`httpQueryParameterName`).
    Query(String),
    /// The request path, without the query (weir's `usePath`; Kong's `hash_on: path`).
    Path,
    /// A named capture group of the matched route's regex path (weir's `uriCapture`; Kong's
    /// `hash_on: uri_capture`).
    UriCapture(String),
}

/// Which table maps hashes to endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlgo {
    /// A ring with at least this many points.
    Ring(u64),
    /// A Maglev table of this (prime) size.
    Maglev(u64),
}

/// `consistentHash` as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HashPolicy {
    /// The request key.
    pub(crate) key: HashKey,
    /// The key used when the request has no `key` (weir's `fallback`; Kong's `hash_fallback`).
    pub(crate) fallback: Option<HashKey>,
    /// The table.
    pub(crate) algo: HashAlgo,
}

/// A built table, for one cluster's endpoints.
#[derive(Debug)]
pub(crate) enum HashTable {
    /// Sorted (point, endpoint index).
    Ring(Vec<(u64, u32)>),
    /// Slot to endpoint index.
    Maglev(Vec<u32>),
}

impl HashTable {
    /// Builds the table for endpoints named `names` (their addresses).
    pub(crate) fn build(algo: HashAlgo, names: &[String]) -> Option<HashTable> {
        if names.is_empty() {
            return None;
        }
        Some(match algo {
            HashAlgo::Ring(min) => ring(names, min),
            HashAlgo::Maglev(size) => maglev(names, size),
        })
    }

    /// The endpoint for a hash.
    pub(crate) fn get(&self, hash: u64) -> usize {
        match self {
            HashTable::Ring(points) => {
                let at = points.partition_point(|&(p, _)| p < hash);
                points.get(at).unwrap_or(&points[0]).1 as usize
            }
            HashTable::Maglev(table) => table[(hash % table.len() as u64) as usize] as usize,
        }
    }

    /// The endpoints after the one for `hash`, in the order the table offers them (the ring
    /// walks on; Maglev rehashes), for when that one cannot take the request.
    pub(crate) fn fallbacks(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        (1..=16u64).map(move |k| match self {
            HashTable::Ring(points) => {
                let at = points.partition_point(|&(p, _)| p < hash);
                points[(at + k as usize) % points.len()].1 as usize
            }
            HashTable::Maglev(_) => self.get(mix(hash ^ k)),
        })
    }
}

fn ring(names: &[String], min: u64) -> HashTable {
    let n = names.len() as u64;
    let per = min.clamp(1, MAX_TABLE_SIZE).div_ceil(n);
    let mut points = Vec::with_capacity((per * n) as usize);
    for (i, name) in names.iter().enumerate() {
        for r in 0..per {
            points.push((hash_str(&format!("{name}_{r}")), i as u32));
        }
    }
    points.sort_unstable();
    HashTable::Ring(points)
}

/// Maglev's table population (Eisenbud et al. 2016, section 3.4): each endpoint in turn takes
/// the next free slot of its own permutation of the table.
fn maglev(names: &[String], size: u64) -> HashTable {
    let m = size.clamp(2, MAX_TABLE_SIZE);
    let perms: Vec<(u64, u64)> = names
        .iter()
        .map(|name| {
            let offset = hash_str(name) % m;
            let skip = mix(hash_str(name) ^ 0x9e37_79b9_7f4a_7c15) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; names.len()];
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut slot = (offset + next[i] * skip) % m;
            while table[slot as usize] != u32::MAX {
                next[i] += 1;
                slot = (offset + next[i] * skip) % m;
            }
            table[slot as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    HashTable::Maglev(table)
}

/// FNV-1a over the bytes, then a 64-bit finaliser: stable across runs and builds, so every weir
/// of a fleet maps a key to the same endpoint.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn hash_str(s: &str) -> u64 {
    hash_bytes(s.as_bytes())
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a request offers to hash.
pub(crate) struct HashInput<'a> {
    /// Request headers.
    pub(crate) headers: &'a HeaderMap,
    /// Path, without the query.
    pub(crate) path: &'a str,
    /// Query string, without `?`.
    pub(crate) query: Option<&'a str>,
    /// The client's address.
    pub(crate) peer: IpAddr,
    /// The matched route's regex path, for `UriCapture`.
    pub(crate) uri_regex: Option<&'a regex::Regex>,
}

/// A request's hash under the policy's key, else its fallback, and the `Set-Cookie` to send
/// when the key used is a cookie that was absent and is generated. `None` when the request has
/// neither (the cluster's simple balancer then picks).
pub(crate) fn request_hash(
    policy: &HashPolicy,
    input: &HashInput<'_>,
) -> (Option<u64>, Option<HeaderValue>) {
    match key_hash(&policy.key, input) {
        (None, None) => match &policy.fallback {
            Some(fallback) => key_hash(fallback, input),
            None => (None, None),
        },
        found => found,
    }
}

fn key_hash(key: &HashKey, input: &HashInput<'_>) -> (Option<u64>, Option<HeaderValue>) {
    let found = match key {
        HashKey::Header(name) => input.headers.get(name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::SourceIp => Some(match input.peer {
            IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        }),
        HashKey::Query(name) => input
            .query
            .and_then(|q| query_param(q, name))
            .map(|v| hash_bytes(v.as_bytes())),
        HashKey::Path => Some(hash_bytes(input.path.as_bytes())),
        HashKey::UriCapture(name) => input
            .uri_regex
            .and_then(|re| re.captures(input.path))
            .and_then(|c| c.name(name))
            .map(|m| hash_bytes(m.as_str().as_bytes())),
        HashKey::Cookie { name, path, ttl } => {
            let sent = input
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| cookie(v, name));
            match (sent, ttl) {
                (Some(v), _) => Some(hash_bytes(v.as_bytes())),
                (None, Some(ttl)) => {
                    let value = format!("{:016x}", fastrand::u64(..));
                    let mut set = format!("{name}={value}");
                    if !ttl.is_zero() {
                        set.push_str(&format!("; Max-Age={}", ttl.as_secs().max(1)));
                    }
                    if let Some(p) = path {
                        set.push_str(&format!("; Path={p}"));
                    }
                    set.push_str("; HttpOnly");
                    let hash = hash_bytes(value.as_bytes());
                    return (Some(hash), HeaderValue::from_str(&set).ok());
                }
                (None, None) => None,
            }
        }
    };
    (found, None)
}

/// The value of cookie `name` in a `Cookie` header value.
pub(crate) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The value of query parameter `name`.
pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    /// Share of 20,000 keys that map to a different endpoint when the last of `n` is removed.
    fn moved(algo: HashAlgo, n: usize) -> (f64, Vec<usize>) {
        let all = HashTable::build(algo, &names(n)).unwrap();
        let fewer = HashTable::build(algo, &names(n - 1)).unwrap();
        let mut counts = vec![0; n];
        let mut moved = 0;
        for k in 0..20_000u64 {
            let h = hash_bytes(&k.to_le_bytes());
            let (a, b) = (all.get(h), fewer.get(h));
            counts[a] += 1;
            if a != b && a != n - 1 {
                moved += 1;
            }
        }
        (f64::from(moved) / 20_000.0, counts)
    }

    #[test]
    fn keys_spread_evenly_and_few_move() {
        for algo in [
            HashAlgo::Ring(DEFAULT_RING_SIZE),
            HashAlgo::Maglev(DEFAULT_MAGLEV_SIZE),
        ] {
            let (moved, counts) = moved(algo, 5);
            // Each of 5 gets 4,000 +- 25 % (a ring of 1024 points is that lumpy; Maglev is
            // within 1 %).
            for c in &counts {
                assert!((3_000..=5_000).contains(c), "{algo:?} {counts:?}");
            }
            // Keys of the endpoints that stay mostly stay. Maglev moves a few percent; a ring
            // more, as its points per endpoint grow when one leaves (as Envoy's do).
            let bound = if matches!(algo, HashAlgo::Maglev(_)) {
                0.06
            } else {
                0.15
            };
            assert!(moved < bound, "{algo:?} moved {moved}");
        }
    }

    #[test]
    fn the_same_key_gets_the_same_endpoint() {
        let t = HashTable::build(HashAlgo::Maglev(DEFAULT_MAGLEV_SIZE), &names(3)).unwrap();
        let h = hash_bytes(b"user-42");
        assert!((0..100).all(|_| t.get(h) == t.get(hash_bytes(b"user-42"))));
        assert_eq!(hash_bytes(b"user-42"), hash_bytes(b"user-42"));
        let fallbacks: Vec<usize> = t.fallbacks(h).collect();
        assert_eq!(fallbacks.len(), 16);
        assert!(fallbacks.iter().any(|&i| i != t.get(h)));
    }

    #[test]
    fn maglev_tables_are_full_and_balanced() {
        let HashTable::Maglev(table) =
            HashTable::build(HashAlgo::Maglev(65537), &names(7)).unwrap()
        else {
            panic!()
        };
        let mut counts = [0usize; 7];
        for &e in &table {
            counts[e as usize] += 1;
        }
        // 65537 / 7 = 9362.4: Maglev gives each n or n + 1 slots.
        assert!(
            counts.iter().all(|&c| (9362..=9363).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn cookies_and_query_parameters() {
        assert_eq!(cookie("a=1; user=bob; b=2", "user"), Some("bob"));
        assert_eq!(cookie("a=1", "user"), None);
        assert_eq!(query_param("x=1&user=bob", "user"), Some("bob"));
        assert_eq!(query_param("x=1&user", "user"), Some(""));
        assert_eq!(query_param("username=bob", "user"), None);
    }
}
