//! Every metric family weir exports, declared in one place.
//!
//! Request metrics use the seed's names so its PromQL works unchanged:
//! `http_requests_total{service,version,status,method,route}` and
//! `http_request_duration_seconds{service,version,route}`. Handles are resolved when a config is
//! built ([`DestStats`]); the request path only increments them.

mod families;
mod handles;
mod process;
mod version;

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use families::*;
pub(crate) use families::{
    BreakerState, EjectionReason, EndpointState, FallbackKind, Overflow, RetryResult,
};
pub(crate) use handles::{BreakerMetrics, ClusterMetrics, DestStats, EndpointMetrics};
pub(crate) use version::{VersionSample, VersionStats};

/// The registry and the families.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    reloads: Family<ReloadLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    fallbacks: Family<FaultLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    overflow: Family<OverflowLabels, Counter>,
    pending: Family<ClusterLabels, Counter>,
    endpoint_state: Family<EndpointStateLabels, Gauge>,
    breaker_state: Family<BreakerStateLabels, Gauge>,
    breaker_rejected: Family<ClusterLabels, Counter>,
    ejections: Family<EjectionLabels, Counter>,
    generation: Gauge,
    last_reload_ok: Gauge,
    canary_weight: Family<CanaryLabels, Gauge>,
    canary_status: Family<CanaryLabels, Gauge>,
    canary_checks: Family<CanaryCheckLabels, Counter>,
    experiment_users: Family<ExperimentLabels, Counter>,
    auth_requests: Family<AuthLabels, Counter>,
    jwks_keys: Family<JwksLabels, Gauge>,
    jwks_fetch_errors: Family<JwksLabels, Counter>,
    experiment_conversions: Family<ExperimentGoalLabels, Counter>,
    versions: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<VersionStats>>>,
    store_connected: Family<StoreLabels, Gauge>,
    store_revision: Family<StoreLabels, Gauge>,
    store_apply_errors: Family<StoreLabels, Counter>,
    store_apply_delay: Family<StoreLabels, Histogram>,
    access_log_dropped: Counter,
}

/// The metrics of a fleet's store, for one store URL.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    /// 1 while the store answers.
    pub(crate) connected: Gauge,
    /// The store revision whose resources are served.
    pub(crate) revision: Gauge,
    /// Store contents rejected by validation.
    pub(crate) apply_errors: Counter,
    /// From a write (`weir apply`, a rollout step) to this instance applying it.
    pub(crate) apply_delay: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            HTTP_REQUESTS,
            "HTTP requests answered, by destination, status, method and route",
            requests.clone(),
        );
        let duration =
            Family::<DurationLabels, Histogram>::new_with_constructor(new_histogram as fn() -> _);
        registry.register(
            HTTP_REQUEST_DURATION,
            "Time from request to the end of the response, by destination and route",
            duration.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            CONFIG_RELOADS,
            "Configuration reloads, by result",
            reloads.clone(),
        );
        let faults = Family::<FaultLabels, Counter>::default();
        registry.register(
            "weir_faults_injected",
            "Faults injected, by destination and kind (delay, abort)",
            faults.clone(),
        );
        let fallbacks = Family::<FaultLabels, Counter>::default();
        registry.register(
            "weir_fallbacks",
            "Failed requests answered by a fallback, by destination and kind (stale-cache, backup, static)",
            fallbacks.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "weir_retries",
            "Retries, by destination and result (success, failure, budget_exhausted, overflow)",
            retries.clone(),
        );
        let overflow = Family::<OverflowLabels, Counter>::default();
        registry.register(
            "weir_upstream_overflow",
            "Requests and retries turned away by connection-pool limits, by limit",
            overflow.clone(),
        );
        let pending = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "weir_upstream_pending",
            "Requests that waited for an upstream connection",
            pending.clone(),
        );
        let endpoint_state = Family::<EndpointStateLabels, Gauge>::default();
        registry.register(
            "weir_endpoint_state",
            "Outlier-detection state of each endpoint (1 for its current state)",
            endpoint_state.clone(),
        );
        let breaker_state = Family::<BreakerStateLabels, Gauge>::default();
        registry.register(
            "weir_circuit_breaker_state",
            "Circuit-breaker state of each cluster with one (1 for its current state)",
            breaker_state.clone(),
        );
        let breaker_rejected = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "weir_circuit_breaker_rejected",
            "Requests answered 503 by an open circuit breaker",
            breaker_rejected.clone(),
        );
        let ejections = Family::<EjectionLabels, Counter>::default();
        registry.register(
            "weir_outlier_ejections",
            "Endpoints ejected by outlier detection, by reason",
            ejections.clone(),
        );
        let canary_weight = Family::<CanaryLabels, Gauge>::default();
        registry.register(
            "weir_canary_weight",
            "Share of traffic on each canary, in percent",
            canary_weight.clone(),
        );
        let canary_status = Family::<CanaryLabels, Gauge>::default();
        registry.register(
            "weir_canary_status",
            "Rollout state of each canary: 0 running, 1 succeeded, 2 failed",
            canary_status.clone(),
        );
        let canary_checks = Family::<CanaryCheckLabels, Counter>::default();
        registry.register(
            "weir_canary_checks",
            "Canary analysis checks, by metric and result (pass, fail, inconclusive)",
            canary_checks.clone(),
        );
        let experiment_users = Family::<ExperimentLabels, Counter>::default();
        registry.register(
            "weir_experiment_users",
            "Participants of each A/B experiment, by variant (counted at first exposure)",
            experiment_users.clone(),
        );
        let experiment_conversions = Family::<ExperimentGoalLabels, Counter>::default();
        registry.register(
            "weir_experiment_conversions",
            "Participants of each A/B experiment who met a goal, by variant and goal (once per participant)",
            experiment_conversions.clone(),
        );
        let auth_requests = Family::<AuthLabels, Counter>::default();
        registry.register(
            "weir_auth_requests",
            "Requests checked by access control, by the policy that decided and the result (allowed, denied, unauthenticated, invalid_token)",
            auth_requests.clone(),
        );
        let jwks_keys = Family::<JwksLabels, Gauge>::default();
        registry.register(
            "weir_auth_jwks_keys",
            "Keys held from each JWKS source; 0: none was ever fetched, and its tokens are refused",
            jwks_keys.clone(),
        );
        let jwks_fetch_errors = Family::<JwksLabels, Counter>::default();
        registry.register(
            "weir_auth_jwks_fetch_errors",
            "Failed fetches of a JWKS source (the keys fetched before keep working)",
            jwks_fetch_errors.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "weir_config_generation",
            "Generation of the configuration being served",
            generation.clone(),
        );
        registry.register_collector(Box::new(process::Process::new()));
        let last_reload_ok = Gauge::default();
        registry.register(
            "weir_config_last_reload_successful",
            "Whether the last configuration change (a reload, an admin call) was applied: 1, or 0 when it was rejected and the previous configuration kept serving",
            last_reload_ok.clone(),
        );
        let store_connected = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "weir_store_connected",
            "Whether the fleet's store answers this instance: 1, or 0 while it serves its last configuration without it",
            store_connected.clone(),
        );
        let store_revision = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "weir_store_revision",
            "The store revision whose resources this instance serves",
            store_revision.clone(),
        );
        let store_apply_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "weir_store_apply_errors",
            "Store contents this instance rejected (the previous configuration kept serving)",
            store_apply_errors.clone(),
        );
        let store_apply_delay =
            Family::<StoreLabels, Histogram>::new_with_constructor(new_histogram as fn() -> _);
        registry.register(
            "weir_store_apply_delay_seconds",
            "Time from a write to the store (weir apply, a rollout step) to this instance serving it",
            store_apply_delay.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "weir_access_log_dropped",
            "Access log lines dropped because the log's writer fell behind (a slow disk); requests never wait for it",
            access_log_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            reloads,
            faults,
            fallbacks,
            retries,
            overflow,
            pending,
            endpoint_state,
            breaker_state,
            breaker_rejected,
            ejections,
            generation,
            last_reload_ok,
            canary_weight,
            canary_status,
            canary_checks,
            experiment_users,
            experiment_conversions,
            auth_requests,
            jwks_keys,
            jwks_fetch_errors,
            versions: Default::default(),
            store_connected,
            store_revision,
            store_apply_errors,
            store_apply_delay,
            access_log_dropped,
        }
    }

    /// Access log lines dropped.
    pub(crate) fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    /// The handles of the store at `url`.
    pub(crate) fn store(&self, url: &str) -> StoreMetrics {
        let labels = StoreLabels {
            store: url.to_owned(),
        };
        StoreMetrics {
            connected: self.store_connected.get_or_create(&labels).clone(),
            revision: self.store_revision.get_or_create(&labels).clone(),
            apply_errors: self.store_apply_errors.get_or_create(&labels).clone(),
            apply_delay: self.store_apply_delay.get_or_create(&labels).clone(),
        }
    }

    /// Sets a canary's weight and status.
    pub(crate) fn canary_state(&self, name: &str, weight: u32, status: i64) {
        let labels = CanaryLabels {
            name: name.to_owned(),
        };
        self.canary_weight
            .get_or_create(&labels)
            .set(i64::from(weight));
        self.canary_status.get_or_create(&labels).set(status);
    }

    /// Counts a canary check.
    pub(crate) fn canary_check(&self, name: &str, metric: &str, result: &'static str) {
        self.canary_checks
            .get_or_create(&CanaryCheckLabels {
                name: name.to_owned(),
                metric: metric.to_owned(),
                result,
            })
            .inc();
    }

    /// The counters of `policy`'s decisions: allowed, denied, unauthenticated, invalid_token.
    pub(crate) fn auth(&self, policy: &str) -> [Counter; 4] {
        ["allowed", "denied", "unauthenticated", "invalid_token"].map(|result| {
            self.auth_requests
                .get_or_create(&AuthLabels {
                    policy: policy.to_owned(),
                    result: result.to_owned(),
                })
                .clone()
        })
    }

    /// The keys held from a JWKS source, and its failed fetches.
    pub(crate) fn jwks(&self, source: &str) -> (Gauge, Counter) {
        let l = JwksLabels {
            source: source.to_owned(),
        };
        (
            self.jwks_keys.get_or_create(&l).clone(),
            self.jwks_fetch_errors.get_or_create(&l).clone(),
        )
    }

    /// An experiment's counters: participants per variant, and conversions per variant and
    /// goal (variant-major).
    pub(crate) fn experiment(
        &self,
        experiment: &str,
        variants: &[String],
        goals: &[String],
    ) -> (Vec<Counter>, Vec<Counter>) {
        let users = variants
            .iter()
            .map(|v| {
                self.experiment_users
                    .get_or_create(&ExperimentLabels {
                        experiment: experiment.to_owned(),
                        variant: v.clone(),
                    })
                    .clone()
            })
            .collect();
        let conversions = variants
            .iter()
            .flat_map(|v| {
                goals.iter().map(move |g| {
                    self.experiment_conversions
                        .get_or_create(&ExperimentGoalLabels {
                            experiment: experiment.to_owned(),
                            variant: v.clone(),
                            goal: g.clone(),
                        })
                        .clone()
                })
            })
            .collect();
        (users, conversions)
    }

    /// The running totals of one (service, version), kept for the life of the process.
    pub(crate) fn version(&self, service: &str, version: &str) -> Arc<VersionStats> {
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((service.to_owned(), version.to_owned()))
            .or_default()
            .clone()
    }

    /// Every version's running totals, by (service, version).
    pub(crate) fn versions(&self) -> Vec<((String, String), VersionSample)> {
        let map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.sample())).collect()
    }

    /// Handles for one cluster.
    pub(crate) fn cluster(&self, service: &str, version: &str) -> ClusterMetrics {
        let retry = |result| {
            self.retries
                .get_or_create(&RetryLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                    result,
                })
                .clone()
        };
        let overflow = |limit| {
            self.overflow
                .get_or_create(&OverflowLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                    limit,
                })
                .clone()
        };
        ClusterMetrics {
            retries: RetryResult::ALL.map(|r| retry(r.label())),
            overflow: Overflow::ALL.map(|o| overflow(o.label())),
            pending: self
                .pending
                .get_or_create(&ClusterLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                })
                .clone(),
        }
    }

    /// Handles for the circuit breaker of one cluster.
    pub(crate) fn breaker(&self, service: &str, version: &str) -> BreakerMetrics {
        let state = |state| {
            self.breaker_state
                .get_or_create(&BreakerStateLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                    state,
                })
                .clone()
        };
        BreakerMetrics {
            state: BreakerState::ALL.map(|s| state(s.label())),
            rejected: self
                .breaker_rejected
                .get_or_create(&ClusterLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                })
                .clone(),
        }
    }

    /// Handles for one endpoint of a cluster with outlier detection.
    pub(crate) fn endpoint(&self, service: &str, version: &str, endpoint: &str) -> EndpointMetrics {
        let state = |state| {
            self.endpoint_state
                .get_or_create(&EndpointStateLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                    endpoint: endpoint.to_owned(),
                    state,
                })
                .clone()
        };
        let ejection = |reason| {
            self.ejections
                .get_or_create(&EjectionLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                    endpoint: endpoint.to_owned(),
                    reason,
                })
                .clone()
        };
        EndpointMetrics {
            state: EndpointState::ALL.map(|s| state(s.label())),
            ejections: EjectionReason::ALL.map(|r| ejection(r.label())),
        }
    }

    /// Handles for one (service, version, route).
    pub(crate) fn dest_stats(&self, service: &str, version: &str, route: &str) -> DestStats {
        let labels = DurationLabels {
            service: service.to_owned(),
            version: version.to_owned(),
            route: route.to_owned(),
        };
        let fault = |kind| {
            self.faults
                .get_or_create(&FaultLabels {
                    service: service.to_owned(),
                    kind,
                })
                .clone()
        };
        let fallback = |kind| {
            self.fallbacks
                .get_or_create(&FaultLabels {
                    service: service.to_owned(),
                    kind,
                })
                .clone()
        };
        DestStats {
            names: Arc::new(crate::access_log::DestNames {
                service: service.to_owned(),
                version: version.to_owned(),
                route: route.to_owned(),
            }),
            version: self.version(service, version),
            fault_delays: fault("delay"),
            fault_aborts: fault("abort"),
            fallbacks: FallbackKind::ALL.map(|k| fallback(k.label())),
            duration: self.duration.get_or_create(&labels).clone(),
            counters: OnceLock::new(),
            family: self.requests.clone(),
            labels,
        }
    }

    /// Counts a reload.
    pub(crate) fn reload(&self, ok: bool, generation: u64) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        if ok {
            self.generation.set(generation as i64);
        }
    }

    /// Shows whether the last change was applied, without counting one.
    pub(crate) fn show_last_reload(&self, ok: bool) {
        self.last_reload_ok.set(i64::from(ok));
    }

    /// The exposition: OpenMetrics when asked for, else Prometheus text 0.0.4.
    pub(crate) fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if encoded.is_err() {
            out.clear();
        }
        out
    }
}

/// The duration histograms' bucket bounds, in seconds.
pub(crate) fn duration_buckets() -> &'static [f64] {
    &BUCKETS
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}
