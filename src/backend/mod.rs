//! Clusters (the DestinationRule level): a service host, optionally one subset, its endpoints and
//! its backend policies. [`ClusterSpec`] is the pure description built by config validation;
//! [`Cluster`] adds the runtime parts (connection pools, counters) kept across reloads.

pub mod balance;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::upstream::Pool;
pub use balance::Lb;

/// Where an endpoint is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddr {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A DNS name resolved at connect time, and a port.
    Dns(String, u16),
}

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddr::Ip(a) => write!(f, "{a}"),
            EndpointAddr::Dns(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Which HTTP version weir speaks to a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
    /// Whatever the client spoke (`useClientProtocol`).
    Client,
}

/// One endpoint of a cluster, as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSpec {
    /// Address.
    pub addr: EndpointAddr,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A cluster as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    /// Stable name: `host|subset|port`.
    pub name: String,
    /// Service host (the `service` metrics label).
    pub service: String,
    /// Subset (the `version` metrics label), if any.
    pub subset: Option<String>,
    /// Service port.
    pub port: u16,
    /// Endpoints.
    pub endpoints: Vec<EndpointSpec>,
    /// Load-balancing algorithm.
    pub lb: Lb,
    /// Upstream protocol.
    pub protocol: Protocol,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Requests one upstream connection carries before it is closed (`None`: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// Upstream connections idle this long are closed instead of reused.
    pub idle_timeout: Duration,
}

/// Live counters of one endpoint within one cluster, kept across reloads.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Requests in flight.
    pub active: AtomicI64,
    /// Requests sent.
    pub total: AtomicU64,
    /// Requests that failed (no response, or 5xx).
    pub failures: AtomicU64,
}

/// A runtime endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Its configuration.
    pub spec: EndpointSpec,
    /// HTTP/1.1 connection pool (shared by every cluster using this address).
    pub h1: Arc<Pool>,
    /// HTTP/2 connection pool.
    pub h2: Arc<Pool>,
    /// Counters.
    pub stats: Arc<EndpointStats>,
}

/// A runtime cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Its configuration.
    pub spec: ClusterSpec,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    next: AtomicUsize,
}

impl Cluster {
    /// Builds the runtime cluster, reusing pools and counters from `state`.
    pub fn new(spec: ClusterSpec, state: &BackendState) -> Cluster {
        let endpoints = spec
            .endpoints
            .iter()
            .map(|e| Endpoint {
                spec: e.clone(),
                h1: state.pools.get(&(e.addr.clone(), false), || {
                    Pool::new(e.addr.clone(), false)
                }),
                h2: state
                    .pools
                    .get(&(e.addr.clone(), true), || Pool::new(e.addr.clone(), true)),
                stats: state
                    .endpoint_stats
                    .get(&(spec.name.clone(), e.addr.clone()), EndpointStats::default),
            })
            .collect();
        Cluster {
            spec,
            endpoints,
            next: AtomicUsize::new(fastrand::usize(..1024)),
        }
    }

    /// Picks an endpoint, or `None` when the cluster has none.
    pub fn pick(&self) -> Option<&Endpoint> {
        match self.endpoints.len() {
            0 => None,
            1 => self.endpoints.first(),
            n => {
                let i = match self.spec.lb {
                    Lb::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % n,
                    Lb::Random => fastrand::usize(..n),
                    Lb::LeastRequest => balance::least_request(&self.endpoints),
                };
                self.endpoints.get(i)
            }
        }
    }
}

/// Runtime state that outlives a snapshot: pools by address, counters by cluster and address.
#[derive(Default)]
pub struct BackendState {
    pools: Registry<(EndpointAddr, bool), Pool>,
    endpoint_stats: Registry<(String, EndpointAddr), EndpointStats>,
}

/// Objects shared by key for as long as some snapshot uses them.
pub struct Registry<K, V> {
    map: Mutex<HashMap<K, Weak<V>>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V> Registry<K, V> {
    /// The live object for `key`, or a new one.
    pub fn get(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get(key).and_then(Weak::upgrade) {
            return v;
        }
        if map.len() > 64 && map.len().is_power_of_two() {
            map.retain(|_, v| v.strong_count() > 0);
        }
        let v = Arc::new(make());
        map.insert(key.clone(), Arc::downgrade(&v));
        v
    }
}
