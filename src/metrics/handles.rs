//! Metric handles resolved when a config is built, which the request path and the backends
//! only increment: per destination, per cluster, per circuit breaker, per endpoint.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::families::{
    BreakerState, DurationLabels, EjectionReason, EndpointState, FallbackKind, METHODS,
    MethodLabel, Overflow, RequestLabels, RetryResult,
};
use crate::metrics::version::VersionStats;

/// Status codes with a counter slot; others are looked up in the family when they occur.
const STATUSES: [u16; 32] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409,
    410, 413, 414, 415, 422, 429, 431, 500, 501, 502, 503, 504, 505,
];

/// Metric handles of one (service, version, route), resolved when the config is built.
pub(crate) struct DestStats {
    /// The destination's service, version and route, for the access log.
    pub(crate) names: Arc<crate::access_log::DestNames>,
    /// Running totals for canary analysis.
    pub(crate) version: Arc<VersionStats>,
    /// Delays injected on requests to this destination.
    pub(crate) fault_delays: Counter,
    /// Aborts injected instead of requests to this destination.
    pub(crate) fault_aborts: Counter,
    /// Failed requests answered by a fallback, by [`FallbackKind::ALL`].
    pub(super) fallbacks: [Counter; 3],
    pub(super) duration: Histogram,
    pub(super) counters: OnceLock<Box<[OnceLock<Counter>]>>,
    pub(super) family: Family<RequestLabels, Counter>,
    pub(super) labels: DurationLabels,
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
    pub(crate) fn count(&self, method: &Method, status: u16) {
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

    /// Counts a failed request that `kind` of fallback answered.
    pub(crate) fn fell_back(&self, kind: FallbackKind) {
        self.fallbacks[kind as usize].inc();
    }

    /// Records how long a response took.
    pub(crate) fn observe(&self, elapsed: Duration) {
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

/// Metric handles of one cluster.
#[derive(Debug)]
pub(crate) struct ClusterMetrics {
    /// `weir_retries_total`, by [`RetryResult::ALL`].
    pub(super) retries: [Counter; 4],
    /// `weir_upstream_overflow_total`, by [`Overflow::ALL`].
    pub(super) overflow: [Counter; 3],
    /// `weir_upstream_pending_total`.
    pub(crate) pending: Counter,
}

impl ClusterMetrics {
    /// Counts a retry's result, or why none was made.
    pub(crate) fn retried(&self, result: RetryResult) {
        self.retries[result as usize].inc();
    }

    /// Counts a request or retry turned away by `limit`.
    pub(crate) fn overflowed(&self, limit: Overflow) {
        self.overflow[limit as usize].inc();
    }
}

/// Metric handles of a cluster's circuit breaker.
#[derive(Debug)]
pub(crate) struct BreakerMetrics {
    /// `weir_circuit_breaker_state`, by [`BreakerState::ALL`].
    pub(super) state: [Gauge; 3],
    /// `weir_circuit_breaker_rejected_total`.
    pub(crate) rejected: Counter,
}

/// Metric handles of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointMetrics {
    /// `weir_endpoint_state`, by [`EndpointState::ALL`].
    pub(super) state: [Gauge; 3],
    /// `weir_outlier_ejections_total`, by [`EjectionReason::ALL`].
    pub(super) ejections: [Counter; 4],
}

impl BreakerMetrics {
    /// Shows `now` as the breaker's state (1 for it, 0 for the others).
    pub(crate) fn show(&self, now: BreakerState) {
        for s in BreakerState::ALL {
            self.state[s as usize].set(i64::from(s == now));
        }
    }
}

impl EndpointMetrics {
    /// Shows `now` as the endpoint's state (1 for it, 0 for the others).
    pub(crate) fn show(&self, now: EndpointState) {
        for s in EndpointState::ALL {
            self.state[s as usize].set(i64::from(s == now));
        }
    }

    /// Counts an ejection for `reason`.
    pub(crate) fn ejected(&self, reason: EjectionReason) {
        self.ejections[reason as usize].inc();
    }
}
