//! Clusters (the DestinationRule level): a service host, optionally one subset, its endpoints and
//! its backend policies. [`ClusterSpec`] is the pure description built by config validation;
//! [`Cluster`] adds the runtime parts kept across reloads: connection pools, counters, outlier
//! states, limit counters and the retry budget. Picking an endpoint (balancer, consistent hash,
//! warmup, ejections, panic mode) is here too.

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod hash;
pub mod health;
pub mod limits;
pub mod outlier;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{ClusterMetrics, EndpointMetrics, Metrics};
use crate::policy::fallback::{CacheSpec, StaleCache};
use crate::policy::ratelimit::{RateLimitSpec, RateLimiter};
use crate::tls::UpstreamTls;
use crate::upstream::Pool;
pub use balance::{Lb, Warmup};
use breaker::{Breaker, BreakerSpec};
use budget::{BudgetSpec, RetryBudget};
use hash::{HashPolicy, HashTable};
pub use health::{ClusterHealth, HealthSpec};
use health::{Observed, TargetHealth};
use limits::{Gate, PoolLimits};
use outlier::{Claim, EndpointHealth, Event, OutlierPolicy, State, Transition};

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
    /// Load-balancing weight (at least 1).
    pub weight: u32,
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
    /// Longest wait for a read of an HTTP/1.1 upstream connection to make progress (weir's
    /// `tcp.readTimeout`; Kong's `read_timeout`).
    pub read_timeout: Option<Duration>,
    /// Longest wait for a write to make progress (weir's `tcp.writeTimeout`; Kong's
    /// `write_timeout`).
    pub write_timeout: Option<Duration>,
    /// Connection-pool limits.
    pub limits: PoolLimits,
    /// Outlier detection, if configured.
    pub outlier: Option<OutlierPolicy>,
    /// Retry budget.
    pub budget: BudgetSpec,
    /// Consistent hashing, instead of `lb`.
    pub hash: Option<HashPolicy>,
    /// Slow start for new endpoints.
    pub warmup: Option<Warmup>,
    /// TLS to the endpoints (DestinationRule `tls`), if any.
    pub tls: Option<UpstreamTls>,
    /// Health checks (Kong's `healthchecks`, weir's `healthChecks`), if any.
    pub health: Option<HealthSpec>,
    /// A circuit breaker over the whole cluster, if any.
    pub breaker: Option<BreakerSpec>,
}

/// Live counters of one endpoint within one cluster, kept across reloads.
#[derive(Debug)]
pub struct EndpointStats {
    /// When a reload added this endpoint to the cluster (for slow start); `None` for endpoints
    /// the cluster had from its start.
    pub since: Option<Instant>,
    /// Requests in flight.
    pub active: AtomicI64,
    /// Requests sent.
    pub total: AtomicU64,
    /// Requests that failed (no response, or 5xx).
    pub failures: AtomicU64,
    /// Outlier-detection state.
    pub health: EndpointHealth,
    /// Health-check state (Kong's health checks).
    pub checks: TargetHealth,
}

impl EndpointStats {
    fn new(since: Option<Instant>) -> Self {
        EndpointStats {
            since,
            active: AtomicI64::new(0),
            total: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health: EndpointHealth::default(),
            checks: TargetHealth::default(),
        }
    }
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
    /// Counters and outlier state.
    pub stats: Arc<EndpointStats>,
    /// Metric handles, with outlier detection.
    metrics: Option<EndpointMetrics>,
}

/// A runtime cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Its configuration.
    pub spec: ClusterSpec,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Connection-pool limits, when any is set.
    pub gate: Option<Arc<Gate>>,
    /// Retry budget.
    pub budget: Arc<RetryBudget>,
    /// Metric handles.
    pub metrics: ClusterMetrics,
    /// Endpoints that are not closed (kept across reloads).
    ejected: Arc<AtomicUsize>,
    /// The consistent-hash table over the endpoints.
    table: Option<HashTable>,
    /// When the last endpoint in slow start leaves it.
    warm_until: Instant,
    /// Whether the endpoints' weights differ.
    weighted: bool,
    /// Health-check state, with health checks.
    pub health: Option<Arc<ClusterHealth>>,
    /// The circuit breaker, with one.
    pub breaker: Option<Arc<Breaker>>,
    next: AtomicUsize,
}

/// An endpoint taken for one try. A half-open endpoint's probe is given back if the try is
/// abandoned before its outcome is recorded.
#[derive(Debug)]
pub struct Picked<'c> {
    /// The endpoint.
    pub endpoint: &'c Endpoint,
    /// Its index in the cluster.
    pub index: usize,
    claim: Claim,
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        if self.claim == Claim::Probe {
            self.endpoint.stats.health.release();
        }
    }
}

impl Cluster {
    /// Builds the runtime cluster, reusing pools, counters, outlier states, budgets and limit
    /// counters from `state`.
    pub fn new(spec: ClusterSpec, state: &BackendState, metrics: &Metrics) -> Cluster {
        let version = spec.subset.as_deref().unwrap_or("");
        let now = Instant::now();
        let (ejected, first_build) = state
            .ejected
            .get_or_make(&spec.name, || AtomicUsize::new(0));
        // Endpoints a reload adds are new (slow start); those of a new cluster are not.
        let since = (!first_build).then_some(now);
        let endpoints: Vec<Endpoint> = spec
            .endpoints
            .iter()
            .map(|e| Endpoint {
                spec: e.clone(),
                h1: state.pool(&e.addr, false, &spec.tls),
                h2: state.pool(&e.addr, true, &spec.tls),
                stats: state
                    .endpoint_stats
                    .get(&(spec.name.clone(), e.addr.clone()), || {
                        EndpointStats::new(since)
                    }),
                metrics: spec
                    .outlier
                    .as_ref()
                    .map(|_| metrics.endpoint(&spec.service, version, &e.addr.to_string())),
            })
            .collect();
        // Endpoints may have come or gone: count again. Without outlier detection (a reload may
        // have removed it) ejections are ignored.
        let not_closed = match spec.outlier {
            Some(_) => endpoints
                .iter()
                .filter(|e| !e.stats.health.is_closed())
                .count(),
            None => 0,
        };
        ejected.store(not_closed, Ordering::Relaxed);
        for e in &endpoints {
            e.show_state(e.stats.health.view(now).state);
        }
        let table = spec.hash.as_ref().and_then(|h| {
            let names: Vec<String> = endpoints.iter().map(|e| e.spec.addr.to_string()).collect();
            HashTable::build(h.algo, &names)
        });
        let warm_until = match &spec.warmup {
            Some(w) => endpoints
                .iter()
                .filter_map(|e| e.stats.since)
                .map(|since| since + w.duration)
                .max()
                .unwrap_or(now),
            None => now,
        };
        let weighted = spec
            .endpoints
            .windows(2)
            .any(|w| w[0].weight != w[1].weight);
        let health = spec.health.as_ref().map(|h| {
            let key = (spec.name.clone(), format!("{h:?}"));
            let health = state
                .healths
                .get(&key, || ClusterHealth::new(&spec.name, h.clone()));
            health.set_targets(
                endpoints
                    .iter()
                    .map(|e| health::Target {
                        addr: e.spec.addr.clone(),
                        weight: e.spec.weight,
                        stats: e.stats.clone(),
                    })
                    .collect(),
            );
            health
        });
        Cluster {
            table,
            warm_until,
            weighted,
            health,
            breaker: spec.breaker.as_ref().map(|b| {
                state.breakers.get(&(spec.name.clone(), b.clone()), || {
                    Breaker::new(b.clone(), metrics.breaker(&spec.service, version))
                })
            }),
            gate: spec.limits.any().then(|| {
                state
                    .gates
                    .get(&(spec.name.clone(), spec.limits), || Gate::new(spec.limits))
            }),
            budget: state
                .budgets
                .get(&(spec.name.clone(), spec.budget.clone()), || {
                    RetryBudget::new(spec.budget.clone())
                }),
            metrics: metrics.cluster(&spec.service, version),
            spec,
            endpoints,
            ejected,
            next: AtomicUsize::new(fastrand::usize(..1024)),
        }
    }

    /// Picks an endpoint for a try, avoiding those in `tried` (a bit per endpoint index) when
    /// another is available; `key` is the request's consistent-hash key, if the cluster hashes.
    /// `None` when no endpoint can take a request: there are none, or every one is ejected and
    /// the cluster is not in panic mode.
    pub fn pick(&self, tried: u64, key: Option<u64>) -> Option<Picked<'_>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let hashed = self.table.as_ref().zip(key);
        let checked = self.health.as_deref();
        if tried == 0
            && self.ejected.load(Ordering::Relaxed) == 0
            && checked.is_none_or(ClusterHealth::all_healthy)
        {
            let index = match hashed {
                Some((table, h)) => table.get(h),
                None => self.choose(n, |i| i),
            };
            return Some(self.picked(index, Claim::Normal));
        }
        // Some endpoint is ejected, or this is a retry: the rare path.
        let now = Instant::now();
        let detecting = self.spec.outlier.is_some();
        if let Some(h) = checked {
            let weight = |i: usize| {
                let e = &self.endpoints[i];
                (e.spec.weight, e.stats.checks.is_healthy())
            };
            if !h.enough(weight, n) {
                return None;
            }
        }
        let mut healthy: Vec<usize> = (0..n)
            .filter(|&i| !detecting || self.endpoints[i].stats.health.available(now))
            .filter(|&i| checked.is_none() || self.endpoints[i].stats.checks.is_healthy())
            .collect();
        if let Some(p) = &self.spec.outlier
            && healthy.len() * 100 < p.min_health_percent as usize * n
        {
            // Panic mode: too few healthy endpoints to trust ejections (Envoy's panic threshold).
            let index = match hashed {
                Some((table, h)) => table.get(h),
                None => self.choose_among(&(0..n).collect::<Vec<_>>(), tried),
            };
            return Some(self.picked(index, Claim::Normal));
        }
        if let Some((table, h)) = hashed {
            // The key's endpoint, else the next ones the table offers.
            let fresh = |i: usize| tried & (1 << (i % 64)) == 0 && healthy.contains(&i);
            for i in std::iter::once(table.get(h)).chain(table.fallbacks(h)) {
                if fresh(i)
                    && let Some(p) = self.claim(i, now)
                {
                    return Some(p);
                }
            }
        }
        while !healthy.is_empty() {
            let at = self.choose_among(&healthy, tried);
            match self.claim(at, now) {
                Some(p) => return Some(p),
                // Taken meanwhile by another request's probe.
                None => healthy.retain(|&i| i != at),
            }
        }
        None
    }

    /// Takes endpoint `i` if its state lets it take a request.
    fn claim(&self, i: usize, now: Instant) -> Option<Picked<'_>> {
        if self.spec.outlier.is_none() {
            return Some(self.picked(i, Claim::Normal));
        }
        let e = &self.endpoints[i];
        let (claim, turned) = e.stats.health.claim(now)?;
        if let Some(t) = turned {
            self.transition(e, t);
        }
        Some(self.picked(i, claim))
    }

    /// Chooses among `candidates` (indices), avoiding `tried` when it can.
    fn choose_among(&self, candidates: &[usize], tried: u64) -> usize {
        let fresh: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| tried & (1 << (i % 64)) == 0)
            .collect();
        let pool = if fresh.is_empty() { candidates } else { &fresh };
        self.choose(pool.len(), |k| pool[k])
    }

    /// The load balancer over `n` candidates; `index` maps a candidate to its endpoint. With
    /// slow start, an endpoint still warming up is kept with the probability of its share, else
    /// another is drawn (at most four times).
    fn choose(&self, n: usize, index: impl Fn(usize) -> usize) -> usize {
        let mut pick = self.balance(n, &index);
        let Some(warmup) = &self.spec.warmup else {
            return pick;
        };
        let now = Instant::now();
        if now >= self.warm_until {
            return pick;
        }
        for _ in 0..4 {
            let share = match self.endpoints[pick].stats.since {
                Some(since) => warmup.factor(now.saturating_duration_since(since)),
                None => 1.0,
            };
            if share >= 1.0 || fastrand::f64() < share {
                break;
            }
            pick = self.balance(n, &index);
        }
        pick
    }

    fn balance(&self, n: usize, index: &impl Fn(usize) -> usize) -> usize {
        if n == 1 {
            return index(0);
        }
        if self.weighted {
            let weight = |k: usize| self.endpoints[index(k)].spec.weight;
            return index(match self.spec.lb {
                Lb::RoundRobin => {
                    balance::weighted_turn(n, weight, self.next.fetch_add(1, Ordering::Relaxed))
                }
                Lb::Random => balance::weighted_random(n, weight),
                Lb::LeastRequest => {
                    balance::weighted_least_request(n, weight, |k| &self.endpoints[index(k)])
                }
            });
        }
        match self.spec.lb {
            Lb::RoundRobin => index(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Lb::Random => index(fastrand::usize(..n)),
            Lb::LeastRequest => index(balance::least_request(n, |k| &self.endpoints[index(k)])),
        }
    }

    fn picked(&self, index: usize, claim: Claim) -> Picked<'_> {
        Picked {
            endpoint: &self.endpoints[index],
            index,
            claim,
        }
    }

    /// Records how a try on `picked` ended, for outlier detection (a probe is then spent).
    pub fn record(&self, picked: &mut Picked<'_>, event: Event) {
        if let Some(h) = &self.health {
            let seen = match event {
                Event::Status(s) => Observed::Status(s),
                Event::LocalFailure => Observed::TcpFailure,
                Event::Timeout => Observed::Timeout,
            };
            h.passive(&picked.endpoint.stats, &picked.endpoint.spec.addr, seen);
        }
        let Some(policy) = &self.spec.outlier else {
            return;
        };
        let claim = std::mem::replace(&mut picked.claim, Claim::Normal);
        let e = picked.endpoint;
        let now = Instant::now();
        let changed = e.stats.health.record(
            event,
            claim,
            now,
            policy,
            &self.ejected,
            self.endpoints.len(),
        );
        if let Some(t) = changed {
            self.transition(e, t);
        }
    }

    fn transition(&self, e: &Endpoint, t: Transition) {
        e.show_state(t.to);
        match t.reason {
            Some(reason) => {
                if let Some(m) = &e.metrics {
                    m.ejections[reason as usize].inc();
                }
                tracing::warn!(cluster = %self.spec.name, endpoint = %e.spec.addr, reason = reason.name(), "Endpoint ejected.");
            }
            None => {
                tracing::info!(cluster = %self.spec.name, endpoint = %e.spec.addr, state = t.to.name(), "Endpoint state changed.")
            }
        }
    }

    /// Requests in flight to this cluster.
    pub fn in_flight(&self) -> u64 {
        self.endpoints
            .iter()
            .map(|e| e.stats.active.load(Ordering::Relaxed).max(0) as u64)
            .sum()
    }
}

impl Endpoint {
    fn show_state(&self, state: State) {
        if let Some(m) = &self.metrics {
            for (i, g) in m.state.iter().enumerate() {
                g.set(i64::from(i == state as usize));
            }
        }
    }
}

/// Runtime state that outlives a snapshot: pools by address, protocol and TLS settings;
/// counters by cluster and address.
#[derive(Default)]
pub struct BackendState {
    pools: Registry<(EndpointAddr, bool, Option<UpstreamTls>), Pool>,
    endpoint_stats: Registry<(String, EndpointAddr), EndpointStats>,
    ejected: Registry<String, AtomicUsize>,
    gates: Registry<(String, PoolLimits), Gate>,
    budgets: Registry<(String, BudgetSpec), RetryBudget>,
    healths: Registry<(String, String), ClusterHealth>,
    breakers: Registry<(String, BreakerSpec), Breaker>,
    caches: Registry<(String, CacheSpec), StaleCache>,
    limiters: Registry<(String, RateLimitSpec), RateLimiter>,
}

impl BackendState {
    fn pool(&self, addr: &EndpointAddr, h2: bool, tls: &Option<UpstreamTls>) -> Arc<Pool> {
        self.pools.get(&(addr.clone(), h2, tls.clone()), || {
            Pool::new(addr.clone(), h2, tls.clone())
        })
    }

    /// The rate limiter of `scope`, kept (with its counts) while its spec stays the same.
    pub fn limiter(&self, scope: &str, spec: &RateLimitSpec) -> Arc<RateLimiter> {
        self.limiters.get(&(scope.to_owned(), spec.clone()), || {
            RateLimiter::new(spec.clone())
        })
    }

    /// The stale cache named `name`, kept while its spec stays the same.
    pub fn cache(&self, name: &str, spec: &CacheSpec) -> Arc<StaleCache> {
        self.caches.get(&(name.to_owned(), spec.clone()), || {
            StaleCache::new(spec.clone())
        })
    }
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
        self.get_or_make(key, make).0
    }

    /// The live object for `key`, or a new one; true if it is new.
    pub fn get_or_make(&self, key: &K, make: impl FnOnce() -> V) -> (Arc<V>, bool) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get(key).and_then(Weak::upgrade) {
            return (v, false);
        }
        if map.len() > 64 && map.len().is_power_of_two() {
            map.retain(|_, v| v.strong_count() > 0);
        }
        let v = Arc::new(make());
        map.insert(key.clone(), Arc::downgrade(&v));
        (v, true)
    }
}
