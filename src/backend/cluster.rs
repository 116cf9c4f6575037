//! A runtime cluster, and picking an endpoint of it for a try: balancer, consistent hash,
//! warmup, ejections, panic mode; and recording how a try went.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::backend::balance::{self, Lb};
use crate::backend::breaker::Breaker;
use crate::backend::budget::RetryBudget;
use crate::backend::endpoint::{Endpoint, EndpointStats};
use crate::backend::hash::HashTable;
use crate::backend::health::{self, ClusterHealth};
use crate::backend::limits::Gate;
use crate::backend::outlier::{Claim, Event, Transition};
use crate::backend::retained::Retained;
use crate::backend::spec::ClusterSpec;
use crate::backend::target_health::Observed;
use crate::metrics::{ClusterMetrics, Metrics};

/// A runtime cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Its configuration.
    pub(crate) spec: ClusterSpec,
    /// Its endpoints.
    pub(crate) endpoints: Vec<Endpoint>,
    /// Connection-pool limits, when any is set.
    pub(crate) gate: Option<Arc<Gate>>,
    /// Retry budget.
    pub(crate) budget: Arc<RetryBudget>,
    /// Metric handles.
    pub(crate) metrics: ClusterMetrics,
    /// Endpoints that are not closed (kept across reloads).
    ejected: Arc<AtomicUsize>,
    /// The consistent-hash table over the endpoints.
    table: Option<HashTable>,
    /// When the last endpoint in slow start leaves it.
    warm_until: Instant,
    /// Whether the endpoints' weights differ.
    weighted: bool,
    /// Health-check state, with health checks.
    pub(crate) health: Option<Arc<ClusterHealth>>,
    /// The circuit breaker, with one.
    pub(crate) breaker: Option<Arc<Breaker>>,
    next: AtomicUsize,
}

/// An endpoint taken for one try. A half-open endpoint's probe is given back if the try is
/// abandoned before its outcome is recorded.
#[derive(Debug)]
pub(crate) struct Picked<'c> {
    /// The endpoint.
    pub(crate) endpoint: &'c Endpoint,
    /// Its index in the cluster.
    pub(crate) index: usize,
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
    pub(crate) fn new(spec: ClusterSpec, state: &Retained, metrics: &Metrics) -> Cluster {
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
    pub(crate) fn pick(&self, tried: u64, key: Option<u64>) -> Option<Picked<'_>> {
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
                    balance::weighted_least_request(n, weight, |k| self.active(index(k)))
                }
            });
        }
        match self.spec.lb {
            Lb::RoundRobin => index(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Lb::Random => index(fastrand::usize(..n)),
            Lb::LeastRequest => index(balance::least_request(n, |k| self.active(index(k)))),
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
    pub(crate) fn record(&self, picked: &mut Picked<'_>, event: Event) {
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
                    m.ejected(reason);
                }
                tracing::warn!(cluster = %self.spec.name, endpoint = %e.spec.addr, reason = reason.label(), "Endpoint ejected.");
            }
            None => {
                tracing::info!(cluster = %self.spec.name, endpoint = %e.spec.addr, state = t.to.label(), "Endpoint state changed.")
            }
        }
    }

    /// Requests in flight to endpoint `i`.
    fn active(&self, i: usize) -> i64 {
        self.endpoints[i].stats.active.load(Ordering::Relaxed)
    }

    /// Requests in flight to this cluster.
    pub(crate) fn in_flight(&self) -> u64 {
        self.endpoints
            .iter()
            .map(|e| e.stats.active.load(Ordering::Relaxed).max(0) as u64)
            .sum()
    }
}
