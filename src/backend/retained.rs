//! What outlives a snapshot.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::backend::breaker::{Breaker, BreakerSpec};
use crate::backend::budget::{BudgetSpec, RetryBudget};
use crate::backend::endpoint::EndpointStats;
use crate::backend::health::ClusterHealth;
use crate::backend::limits::{Gate, PoolLimits};
use crate::backend::spec::EndpointAddr;
use crate::policy::access::authn::{Jwks, KeySource};
use crate::policy::experiment::Live;
use crate::policy::fallback::{CacheSpec, StaleCache};
use crate::policy::ratelimit::{RateLimitSpec, RateLimiter};
use crate::tls::UpstreamTls;
use crate::upstream::Pool;

/// What a reload keeps of the backends: pools by address, protocol and TLS settings;
/// counters, outlier states, limits, budgets, health, breakers by cluster and address; and the
/// stale caches and rate limiters of the routes. A new snapshot takes what it still uses.
#[derive(Default)]
pub(crate) struct Retained {
    pub(super) pools: Registry<(EndpointAddr, bool, Option<UpstreamTls>), Pool>,
    pub(super) endpoint_stats: Registry<(String, EndpointAddr), EndpointStats>,
    pub(super) ejected: Registry<String, AtomicUsize>,
    pub(super) gates: Registry<(String, PoolLimits), Gate>,
    pub(super) budgets: Registry<(String, BudgetSpec), RetryBudget>,
    pub(super) healths: Registry<(String, String), ClusterHealth>,
    pub(super) breakers: Registry<(String, BreakerSpec), Breaker>,
    pub(super) caches: Registry<(String, CacheSpec), StaleCache>,
    pub(super) limiters: Registry<(String, RateLimitSpec), RateLimiter>,
    pub(super) experiments: Registry<String, Live>,
    pub(super) key_sources: Registry<(Jwks, Duration), KeySource>,
}

impl Retained {
    pub(super) fn pool(
        &self,
        addr: &EndpointAddr,
        h2: bool,
        tls: &Option<UpstreamTls>,
    ) -> Arc<Pool> {
        self.pools.get(&(addr.clone(), h2, tls.clone()), || {
            Pool::new(addr.clone(), h2, tls.clone())
        })
    }

    /// The rate limiter of `scope`, kept (with its counts) while its spec stays the same.
    pub(crate) fn limiter(&self, scope: &str, spec: &RateLimitSpec) -> Arc<RateLimiter> {
        self.limiters.get(&(scope.to_owned(), spec.clone()), || {
            RateLimiter::new(spec.clone())
        })
    }

    /// The counts of the experiment with `identity` (its name, variants and goals), kept
    /// while the identity stays the same.
    pub(crate) fn experiment(&self, identity: &str, make: impl FnOnce() -> Live) -> Arc<Live> {
        self.experiments.get(&identity.to_owned(), make)
    }

    /// The key set of `jwks`, kept (with the keys fetched) while some rule names it.
    pub(crate) fn key_source(
        &self,
        jwks: &Jwks,
        timeout: Duration,
        make: impl FnOnce() -> KeySource,
    ) -> Arc<KeySource> {
        self.key_sources.get(&(jwks.clone(), timeout), make)
    }

    /// The stale cache named `name`, kept while its spec stays the same.
    pub(crate) fn cache(&self, name: &str, spec: &CacheSpec) -> Arc<StaleCache> {
        self.caches.get(&(name.to_owned(), spec.clone()), || {
            StaleCache::new(spec.clone())
        })
    }
}

/// Objects shared by key for as long as some snapshot uses them.
pub(crate) struct Registry<K, V> {
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
    pub(crate) fn get(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        self.get_or_make(key, make).0
    }

    /// The live object for `key`, or a new one; true if it is new.
    pub(crate) fn get_or_make(&self, key: &K, make: impl FnOnce() -> V) -> (Arc<V>, bool) {
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
