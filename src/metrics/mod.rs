//! Every metric family weir exports, declared in one place.
//!
//! Request metrics use the seed's names so its PromQL works unchanged:
//! `http_requests_total{service,version,status,method,route}` and
//! `http_request_duration_seconds{service,version,route}`. Handles are resolved when a config is
//! built ([`DestStats`]); the request path only increments them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::limits::Overflow;
use crate::backend::outlier::{Reason, State};

/// Name of the request counter (exported with `_total`).
pub const HTTP_REQUESTS: &str = "http_requests";
/// Name of the request duration histogram.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Name of the reload counter (exported with `_total`).
pub const CONFIG_RELOADS: &str = "weir_config_reloads";

/// Histogram buckets, seconds: fine enough for a p99 in milliseconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Labels of `http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Destination host.
    pub service: String,
    /// Subset name, empty without one.
    pub version: String,
    /// Status sent to the client.
    pub status: u16,
    /// Request method (unknown methods are `OTHER`).
    pub method: MethodLabel,
    /// Rule name.
    pub route: String,
}

/// Labels of `http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
    /// Rule name.
    pub route: String,
}

/// Labels of `weir_faults_injected_total` and `weir_fallbacks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    /// Destination host.
    pub service: String,
    /// `delay` or `abort`; for fallbacks, which one answered.
    pub kind: &'static str,
}

/// Labels of `weir_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
    /// `success`, `failure` (the retry was sent, and how it ended), `budget_exhausted` or
    /// `overflow` (it was not sent).
    pub result: &'static str,
}

/// Labels of `weir_upstream_overflow_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
    /// `pending`, `requests` or `retries`.
    pub limit: &'static str,
}

/// Labels of `weir_upstream_pending_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
}

/// Labels of `weir_endpoint_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointStateLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
    /// Endpoint address.
    pub endpoint: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
}

/// Labels of `weir_circuit_breaker_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerStateLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
}

/// Labels of `weir_outlier_ejections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EjectionLabels {
    /// Destination host.
    pub service: String,
    /// Subset name.
    pub version: String,
    /// Endpoint address.
    pub endpoint: String,
    /// Why it was ejected.
    pub reason: &'static str,
}

/// Labels of `weir_canary_weight` and `weir_canary_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    /// Canary name.
    pub name: String,
}

/// Labels of `weir_canary_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryCheckLabels {
    /// Canary name.
    pub name: String,
    /// Metric name.
    pub metric: String,
    /// `pass`, `fail` or `inconclusive`.
    pub result: &'static str,
}

/// Labels of `weir_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// A bounded set of method label values.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, missing_docs)]
pub enum MethodLabel {
    GET,
    POST,
    PUT,
    DELETE,
    PATCH,
    HEAD,
    OPTIONS,
    CONNECT,
    TRACE,
    OTHER,
}

const METHODS: usize = 10;

impl MethodLabel {
    fn of(m: &Method) -> MethodLabel {
        match *m {
            Method::GET => MethodLabel::GET,
            Method::POST => MethodLabel::POST,
            Method::PUT => MethodLabel::PUT,
            Method::DELETE => MethodLabel::DELETE,
            Method::PATCH => MethodLabel::PATCH,
            Method::HEAD => MethodLabel::HEAD,
            Method::OPTIONS => MethodLabel::OPTIONS,
            Method::CONNECT => MethodLabel::CONNECT,
            Method::TRACE => MethodLabel::TRACE,
            _ => MethodLabel::OTHER,
        }
    }
}

/// The registry and the families.
pub struct Metrics {
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
    canary_weight: Family<CanaryLabels, Gauge>,
    canary_status: Family<CanaryLabels, Gauge>,
    canary_checks: Family<CanaryCheckLabels, Counter>,
    versions: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<VersionStats>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Metrics {
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
        let generation = Gauge::default();
        registry.register(
            "weir_config_generation",
            "Generation of the configuration being served",
            generation.clone(),
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
            canary_weight,
            canary_status,
            canary_checks,
            versions: Default::default(),
        }
    }

    /// Sets a canary's weight and status.
    pub fn canary_state(&self, name: &str, weight: u32, status: i64) {
        let labels = CanaryLabels {
            name: name.to_owned(),
        };
        self.canary_weight
            .get_or_create(&labels)
            .set(i64::from(weight));
        self.canary_status.get_or_create(&labels).set(status);
    }

    /// Counts a canary check.
    pub fn canary_check(&self, name: &str, metric: &str, result: &'static str) {
        self.canary_checks
            .get_or_create(&CanaryCheckLabels {
                name: name.to_owned(),
                metric: metric.to_owned(),
                result,
            })
            .inc();
    }

    /// The running totals of one (service, version), kept for the life of the process.
    pub fn version(&self, service: &str, version: &str) -> Arc<VersionStats> {
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((service.to_owned(), version.to_owned()))
            .or_default()
            .clone()
    }

    /// Handles for one cluster.
    pub fn cluster(&self, service: &str, version: &str) -> ClusterMetrics {
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
            retries: RETRY_RESULTS.map(retry),
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
    pub fn breaker(&self, service: &str, version: &str) -> BreakerMetrics {
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
            state: crate::backend::breaker::BreakerState::ALL.map(|s| state(s.name())),
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
    pub fn endpoint(&self, service: &str, version: &str, endpoint: &str) -> EndpointMetrics {
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
            state: State::ALL.map(|s| state(s.name())),
            ejections: Reason::ALL.map(|r| ejection(r.name())),
        }
    }

    /// Handles for one (service, version, route).
    pub fn dest_stats(&self, service: &str, version: &str, route: &str) -> DestStats {
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
            version: self.version(service, version),
            fault_delays: fault("delay"),
            fault_aborts: fault("abort"),
            fallbacks: FALLBACK_KINDS.map(fallback),
            duration: self.duration.get_or_create(&labels).clone(),
            counters: OnceLock::new(),
            family: self.requests.clone(),
            labels,
        }
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool, generation: u64) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        if ok {
            self.generation.set(generation as i64);
        }
    }

    /// The exposition: OpenMetrics when asked for, else Prometheus text 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
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

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Status codes with a counter slot; others are looked up in the family when they occur.
const STATUSES: [u16; 32] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409,
    410, 413, 414, 415, 422, 429, 431, 500, 501, 502, 503, 504, 505,
];

/// Running totals of one (service, version) for canary analysis: responses, server errors,
/// and a duration histogram (the buckets of `http_request_duration_seconds`). Read as
/// [`VersionSample`]s; differences between two samples describe the time between them.
#[derive(Debug, Default)]
pub struct VersionStats {
    requests: AtomicU64,
    errors: AtomicU64,
    durations: [AtomicU64; BUCKETS.len() + 1],
}

/// A reading of [`VersionStats`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionSample {
    /// Responses.
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    /// Durations per bucket of [`BUCKETS`] (the last: above every bucket).
    pub durations: Vec<u64>,
}

impl VersionStats {
    /// Reads the totals.
    pub fn sample(&self) -> VersionSample {
        VersionSample {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            durations: self
                .durations
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Counts responses and durations directly (tests, and traffic weir does not proxy).
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.count(status);
        self.observe(elapsed);
    }

    fn count(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.durations[i].fetch_add(1, Ordering::Relaxed);
    }
}

impl VersionSample {
    /// What happened between `earlier` and this sample.
    pub fn since(&self, earlier: &VersionSample) -> VersionSample {
        VersionSample {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            durations: self
                .durations
                .iter()
                .zip(earlier.durations.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// The share of responses that were not server errors, in percent.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0)
            .then(|| (self.requests - self.errors) as f64 * 100.0 / self.requests as f64)
    }

    /// The `q` quantile of durations, in milliseconds (the upper bound of its bucket, as
    /// Prometheus' `histogram_quantile` interpolates within it).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.durations.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.durations.iter().enumerate() {
            let below = seen as f64;
            seen += n;
            if seen as f64 >= rank && n > 0 {
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let Some(&upper) = BUCKETS.get(i) else {
                    return Some(lower * 1000.0);
                };
                let within = (rank - below) / n as f64;
                return Some((lower + (upper - lower) * within) * 1000.0);
            }
        }
        None
    }
}

/// Metric handles of one (service, version, route), resolved when the config is built.
pub struct DestStats {
    /// Running totals for canary analysis.
    pub version: Arc<VersionStats>,
    /// Delays injected on requests to this destination.
    pub fault_delays: Counter,
    /// Aborts injected instead of requests to this destination.
    pub fault_aborts: Counter,
    /// Failed requests answered by a fallback, by [`FALLBACK_KINDS`].
    pub fallbacks: [Counter; 3],
    duration: Histogram,
    counters: OnceLock<Box<[OnceLock<Counter>]>>,
    family: Family<RequestLabels, Counter>,
    labels: DurationLabels,
}

impl std::fmt::Debug for DestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestStats")
            .field("labels", &self.labels)
            .finish()
    }
}

impl DestStats {
    /// Counts a response as sent.
    pub fn count(&self, method: &Method, status: u16) {
        self.version.count(status);
        let method = MethodLabel::of(method);
        let Some(slot) = STATUSES.iter().position(|&s| s == status) else {
            self.family
                .get_or_create(&self.request_labels(method, status))
                .inc();
            return;
        };
        let table = self.counters.get_or_init(|| {
            (0..METHODS * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect()
        });
        table[method as usize * STATUSES.len() + slot]
            .get_or_init(|| {
                self.family
                    .get_or_create(&self.request_labels(method, status))
                    .clone()
            })
            .inc();
    }

    /// Records how long a response took.
    pub fn observe(&self, elapsed: Duration) {
        self.version.observe(elapsed);
        self.duration.observe(elapsed.as_secs_f64());
    }

    fn request_labels(&self, method: MethodLabel, status: u16) -> RequestLabels {
        RequestLabels {
            service: self.labels.service.clone(),
            version: self.labels.version.clone(),
            status,
            method,
            route: self.labels.route.clone(),
        }
    }
}

/// `kind` values of `weir_fallbacks_total`, also sent in `x-weir-fallback`.
pub const FALLBACK_KINDS: [&str; 3] = ["stale-cache", "backup", "static"];

/// `result` values of `weir_retries_total`, in [`ClusterMetrics::retries`] order.
pub const RETRY_RESULTS: [&str; 4] = ["success", "failure", "budget_exhausted", "overflow"];

/// Metric handles of one cluster.
#[derive(Debug)]
pub struct ClusterMetrics {
    /// `weir_retries_total`, by [`RETRY_RESULTS`].
    pub retries: [Counter; 4],
    /// `weir_upstream_overflow_total`, by [`Overflow::ALL`].
    pub overflow: [Counter; 3],
    /// `weir_upstream_pending_total`.
    pub pending: Counter,
}

/// Metric handles of a cluster's circuit breaker.
#[derive(Debug)]
pub struct BreakerMetrics {
    /// `weir_circuit_breaker_state`, by `BreakerState::ALL`.
    pub state: [Gauge; 3],
    /// `weir_circuit_breaker_rejected_total`.
    pub rejected: Counter,
}

/// Metric handles of one endpoint.
#[derive(Debug)]
pub struct EndpointMetrics {
    /// `weir_endpoint_state`, by [`State::ALL`].
    pub state: [Gauge; 3],
    /// `weir_outlier_ejections_total`, by [`Reason::ALL`].
    pub ejections: [Counter; 4],
}

/// Shared handle to the metrics.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_samples_give_rates_and_quantiles_between_readings() {
        let v = VersionStats::default();
        v.record(200, Duration::from_millis(3));
        let first = v.sample();
        for i in 0..100 {
            let status = if i < 5 { 503 } else { 200 };
            v.record(status, Duration::from_millis(if i < 99 { 2 } else { 400 }));
        }
        let window = v.sample().since(&first);
        assert_eq!((window.requests, window.errors), (100, 5));
        assert_eq!(window.success_rate(), Some(95.0));
        // 99 of 100 in the 1-2.5 ms bucket: the p99 is within it; the p100 is the slow one.
        let p99 = window.quantile_ms(0.99).unwrap();
        assert!((1.0..=2.5).contains(&p99), "{p99}");
        let max = window.quantile_ms(1.0).unwrap();
        assert!((250.0..=500.0).contains(&max), "{max}");
        assert_eq!(VersionSample::default().success_rate(), None);
    }
}
