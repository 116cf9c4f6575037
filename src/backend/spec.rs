//! Clusters and endpoints as configured: the pure description that config validation builds.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;

use crate::backend::balance::{Lb, Warmup};
use crate::backend::breaker::BreakerSpec;
use crate::backend::budget::BudgetSpec;
use crate::backend::hash::HashPolicy;
use crate::backend::limits::PoolLimits;
use crate::backend::outlier::OutlierPolicy;
use crate::backend::target_health::HealthSpec;
use crate::tls::UpstreamTls;

/// Where an endpoint is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum EndpointAddr {
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
pub(crate) enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
    /// Whatever the client spoke (`useClientProtocol`).
    Client,
}

impl Protocol {
    /// Whether a request to this cluster is sent over HTTP/2, the client's being if `client_h2`.
    pub(crate) fn h2(self, client_h2: bool) -> bool {
        match self {
            Protocol::Http1 => false,
            Protocol::Http2 => true,
            Protocol::Client => client_h2,
        }
    }
}

/// One endpoint of a cluster, as configured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EndpointSpec {
    /// Address.
    pub(crate) addr: EndpointAddr,
    /// Labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// Load-balancing weight (at least 1).
    pub(crate) weight: u32,
}

/// A cluster as configured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClusterSpec {
    /// Stable name: `host|subset|port`.
    pub(crate) name: String,
    /// Service host (the `service` metrics label).
    pub(crate) service: String,
    /// Subset (the `version` metrics label), if any.
    pub(crate) subset: Option<String>,
    /// Service port.
    pub(crate) port: u16,
    /// Endpoints.
    pub(crate) endpoints: Vec<EndpointSpec>,
    /// Load-balancing algorithm.
    pub(crate) lb: Lb,
    /// Upstream protocol.
    pub(crate) protocol: Protocol,
    /// TCP connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Requests one upstream connection carries before it is closed (`None`: no limit).
    pub(crate) max_requests_per_connection: Option<u32>,
    /// Upstream connections idle this long are closed instead of reused.
    pub(crate) idle_timeout: Duration,
    /// Longest wait for a read of an HTTP/1.1 upstream connection to make progress (weir's
    /// `tcp.readTimeout`; Kong's `read_timeout`).
    pub(crate) read_timeout: Option<Duration>,
    /// Longest wait for a write to make progress (weir's `tcp.writeTimeout`; Kong's
    /// `write_timeout`).
    pub(crate) write_timeout: Option<Duration>,
    /// Connection-pool limits.
    pub(crate) limits: PoolLimits,
    /// Outlier detection, if configured.
    pub(crate) outlier: Option<OutlierPolicy>,
    /// Retry budget.
    pub(crate) budget: BudgetSpec,
    /// Consistent hashing, instead of `lb`.
    pub(crate) hash: Option<HashPolicy>,
    /// Slow start for new endpoints.
    pub(crate) warmup: Option<Warmup>,
    /// TLS to the endpoints (DestinationRule `tls`), if any.
    pub(crate) tls: Option<UpstreamTls>,
    /// Health checks (Kong's `healthchecks`, weir's `healthChecks`), if any.
    pub(crate) health: Option<HealthSpec>,
    /// A circuit breaker over the whole cluster, if any.
    pub(crate) breaker: Option<BreakerSpec>,
}
