//! The shared store of a fleet: etcd, the store Kubernetes and Apache APISIX keep their
//! configuration in. weir talks to it through etcd's JSON gateway (`/v3/`, HTTP/1.1 with JSON
//! bodies, in etcd since 3.3 and served by Debian's 3.4): no gRPC stack to build, no `protoc`,
//! and the same API etcd's gRPC clients use (docs/fleet.md says why in full).
//!
//! - `etcd.rs`: unary calls (range, transactions, leases) with fail-over between endpoints;
//! - `watch.rs`: a watch stream from a revision;
//! - `keys.rs`: where weir keeps what under the prefix;
//! - `documents.rs`: config files split into the documents the store keeps, one per key;
//! - `resources.rs`: the resources read at one revision, and written in one transaction.
//!
//! Public: the store's address ([`StoreUrl`]) and how `weir run` joins a fleet
//! ([`FleetOptions`]).

pub(crate) mod documents;
pub(crate) mod etcd;
pub(crate) mod keys;
pub(crate) mod resources;
#[cfg(test)]
pub(crate) mod test_etcd;
#[cfg(test)]
mod tests;
pub(crate) mod watch;

use std::fmt;
use std::str::FromStr;

/// A store address: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (prefix `/weir` when absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    /// `host:port` of each etcd endpoint, tried in turn.
    pub endpoints: Vec<String>,
    /// The key prefix, starting with `/` and without a trailing one.
    pub prefix: String,
}

/// How `weir run` joins a fleet.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// The store.
    pub url: StoreUrl,
    /// This instance's name.
    pub instance_id: String,
    /// Seconds the instance's lease lives without renewal.
    pub lease_seconds: u64,
}

/// The prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "/weir";

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreUrl, String> {
        let rest = s
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("`{s}`: a store URL starts with etcd://"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let port_ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!("`{s}`: `{h}` is not HOST:PORT"));
            }
            endpoints.push(h.to_owned());
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.contains("//") || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{s}`: the prefix `{prefix}` is not a clean key path"
            ));
        }
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX.to_owned()
        } else {
            prefix.to_owned()
        };
        Ok(StoreUrl { endpoints, prefix })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

/// This machine's host name (for instance ids and write markers).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn urls() {
        let u: StoreUrl = "etcd://127.0.0.1:2379".parse().unwrap();
        assert_eq!(u.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(u.prefix, "/weir");
        let u: StoreUrl = "etcd://a:1,b:2/team/edge/".parse().unwrap();
        assert_eq!(u.endpoints, ["a:1", "b:2"]);
        assert_eq!(u.prefix, "/team/edge");
        assert_eq!(u.to_string(), "etcd://a:1,b:2/team/edge");
        assert!("http://a:1".parse::<StoreUrl>().is_err());
        assert!("etcd://a/x".parse::<StoreUrl>().is_err());
        assert!("etcd://a:1,/x".parse::<StoreUrl>().is_err());
        assert!("etcd://a:99999".parse::<StoreUrl>().is_err());
        assert!("etcd://a:1/x//y".parse::<StoreUrl>().is_err());
    }
}
