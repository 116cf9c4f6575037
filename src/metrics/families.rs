//! What every metric family is called and labelled: names, label sets and the enums whose
//! values are label values (the metric slots the rest of weir picks by them).

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};

/// Name of the request counter (exported with `_total`).
pub(crate) const HTTP_REQUESTS: &str = "http_requests";
/// Name of the request duration histogram.
pub(crate) const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Name of the reload counter (exported with `_total`).
pub(crate) const CONFIG_RELOADS: &str = "weir_config_reloads";

/// Histogram buckets, seconds: fine enough for a p99 in milliseconds.
pub(crate) const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Labels of `http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name, empty without one.
    pub(crate) version: String,
    /// Status sent to the client.
    pub(crate) status: u16,
    /// Request method (unknown methods are `OTHER`).
    pub(crate) method: MethodLabel,
    /// Rule name.
    pub(crate) route: String,
}

/// Labels of `http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DurationLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
    /// Rule name.
    pub(crate) route: String,
}

/// Labels of `weir_faults_injected_total` and `weir_fallbacks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FaultLabels {
    /// Destination host.
    pub(crate) service: String,
    /// `delay` or `abort`; for fallbacks, which one answered.
    pub(crate) kind: &'static str,
}

/// Labels of `weir_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RetryLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
    /// `success`, `failure` (the retry was sent, and how it ended), `budget_exhausted` or
    /// `overflow` (it was not sent).
    pub(crate) result: &'static str,
}

/// Labels of `weir_upstream_overflow_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OverflowLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
    /// `pending`, `requests` or `retries`.
    pub(crate) limit: &'static str,
}

/// Labels of `weir_upstream_pending_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClusterLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
}

/// Labels of `weir_endpoint_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointStateLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
    /// Endpoint address.
    pub(crate) endpoint: String,
    /// `closed`, `open` or `half_open`.
    pub(crate) state: &'static str,
}

/// Labels of `weir_circuit_breaker_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BreakerStateLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
    /// `closed`, `open` or `half_open`.
    pub(crate) state: &'static str,
}

/// Labels of `weir_outlier_ejections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EjectionLabels {
    /// Destination host.
    pub(crate) service: String,
    /// Subset name.
    pub(crate) version: String,
    /// Endpoint address.
    pub(crate) endpoint: String,
    /// Why it was ejected.
    pub(crate) reason: &'static str,
}

/// Labels of `weir_canary_weight` and `weir_canary_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CanaryLabels {
    /// Canary name.
    pub(crate) name: String,
}

/// Labels of `weir_canary_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CanaryCheckLabels {
    /// Canary name.
    pub(crate) name: String,
    /// Metric name.
    pub(crate) metric: String,
    /// `pass`, `fail` or `inconclusive`.
    pub(crate) result: &'static str,
}

/// Labels of `weir_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    /// `success` or `failure`.
    pub(crate) result: &'static str,
}

/// A bounded set of method label values.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, missing_docs)]
pub(crate) enum MethodLabel {
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

pub(crate) const METHODS: usize = 10;

impl MethodLabel {
    pub(crate) fn of(m: &Method) -> MethodLabel {
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

/// Which limit turned a request away (the `limit` label of `weir_upstream_overflow_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Every connection busy and the pending queue full.
    Pending,
    /// Too many requests in flight.
    Requests,
    /// Too many retries in flight.
    Retries,
}

impl Overflow {
    /// All limits, in label order.
    pub(crate) const ALL: [Overflow; 3] =
        [Overflow::Pending, Overflow::Requests, Overflow::Retries];

    /// The metrics label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Overflow::Pending => "pending",
            Overflow::Requests => "requests",
            Overflow::Retries => "retries",
        }
    }
}

/// An endpoint's outlier-detection state (the `state` label of `weir_endpoint_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointState {
    /// Takes traffic.
    Closed,
    /// Ejected until the ejection time is over.
    Open,
    /// Ejection over; admitting probes.
    HalfOpen,
}

impl EndpointState {
    /// Every state, in label order.
    pub(crate) const ALL: [EndpointState; 3] = [
        EndpointState::Closed,
        EndpointState::Open,
        EndpointState::HalfOpen,
    ];

    /// The name shown in `/clusters` and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EndpointState::Closed => "closed",
            EndpointState::Open => "open",
            EndpointState::HalfOpen => "half_open",
        }
    }
}

/// Why an endpoint was ejected (the `reason` label of `weir_outlier_ejections_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EjectionReason {
    /// `consecutive5xxErrors`.
    Consecutive5xx,
    /// `consecutiveGatewayErrors`.
    ConsecutiveGateway,
    /// `consecutiveLocalOriginFailures`.
    ConsecutiveLocalOrigin,
    /// A half-open probe failed.
    ProbeFailed,
}

impl EjectionReason {
    /// Every reason, in label order.
    pub(crate) const ALL: [EjectionReason; 4] = [
        EjectionReason::Consecutive5xx,
        EjectionReason::ConsecutiveGateway,
        EjectionReason::ConsecutiveLocalOrigin,
        EjectionReason::ProbeFailed,
    ];

    /// The name shown in `/clusters` and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EjectionReason::Consecutive5xx => "consecutive_5xx",
            EjectionReason::ConsecutiveGateway => "consecutive_gateway_errors",
            EjectionReason::ConsecutiveLocalOrigin => "consecutive_local_origin_failures",
            EjectionReason::ProbeFailed => "half_open_probe_failed",
        }
    }
}

/// A circuit breaker's state (the `state` label of `weir_circuit_breaker_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests are refused.
    Open,
    /// Trial requests pass.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in label order.
    pub(crate) const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The label: `closed`, `open`, `half_open`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Which fallback answered a failed request (the `kind` label of `weir_fallbacks_total`, also
/// sent in `x-weir-fallback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FallbackKind {
    /// A kept copy of an earlier good response.
    StaleCache,
    /// The backup service.
    Backup,
    /// The configured fixed response.
    Static,
}

impl FallbackKind {
    /// Every kind, in label order.
    pub(crate) const ALL: [FallbackKind; 3] = [
        FallbackKind::StaleCache,
        FallbackKind::Backup,
        FallbackKind::Static,
    ];

    /// The label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FallbackKind::StaleCache => "stale-cache",
            FallbackKind::Backup => "backup",
            FallbackKind::Static => "static",
        }
    }
}

/// How a retry ended, or why none was made (the `result` label of `weir_retries_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryResult {
    /// The retry's response was good and no further retry followed.
    Success,
    /// The retry failed too, or another retry followed it.
    Failure,
    /// No retry: the cluster's retry budget was spent.
    BudgetExhausted,
    /// No retry: `maxRetries` retries were already in flight.
    Overflow,
}

impl RetryResult {
    /// Every result, in label order.
    pub(crate) const ALL: [RetryResult; 4] = [
        RetryResult::Success,
        RetryResult::Failure,
        RetryResult::BudgetExhausted,
        RetryResult::Overflow,
    ];

    /// The label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RetryResult::Success => "success",
            RetryResult::Failure => "failure",
            RetryResult::BudgetExhausted => "budget_exhausted",
            RetryResult::Overflow => "overflow",
        }
    }
}
