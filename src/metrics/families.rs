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

/// Labels of the `weir_store_*` families (a fleet's store only).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreLabels {
    /// The store's URL.
    pub(crate) store: String,
}

/// Labels of `weir_canary_weight` and `weir_canary_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CanaryLabels {
    /// Canary name.
    pub(crate) name: String,
}

/// Labels of `weir_auth_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthLabels {
    /// The policy that decided (`NAMESPACE/NAME`, a Kong plugin, or `none`).
    pub(crate) policy: String,
    /// allowed, denied, unauthenticated or invalid_token.
    pub(crate) result: String,
}

/// Labels of the JWKS metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct JwksLabels {
    /// Where the keys come from (a URL, or `inline`).
    pub(crate) source: String,
}

/// Labels of `weir_experiment_users_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExperimentLabels {
    /// Experiment name.
    pub(crate) experiment: String,
    /// Variant name.
    pub(crate) variant: String,
}

/// Labels of `weir_experiment_conversions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExperimentGoalLabels {
    /// Experiment name.
    pub(crate) experiment: String,
    /// Variant name.
    pub(crate) variant: String,
    /// Goal name.
    pub(crate) goal: String,
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

/// Declares an enum whose variants are the values of a metric label: `ALL` lists them in
/// label order (the order of the metric slots picked by them), `label` gives each one's text.
macro_rules! label_values {
    (
        $(#[$doc:meta])*
        enum $name:ident {
            $($(#[$vdoc:meta])* $variant:ident => $label:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in label order.
            pub(crate) const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            /// The label's text (also what `/clusters` and headers show).
            pub(crate) fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }
    };
}

label_values! {
    /// Which limit turned a request away (the `limit` label of `weir_upstream_overflow_total`).
    enum Overflow {
        /// Every connection busy and the pending queue full.
        Pending => "pending",
        /// Too many requests in flight.
        Requests => "requests",
        /// Too many retries in flight.
        Retries => "retries",
    }
}

label_values! {
    /// An endpoint's outlier-detection state (the `state` label of `weir_endpoint_state`).
    enum EndpointState {
        /// Takes traffic.
        Closed => "closed",
        /// Ejected until the ejection time is over.
        Open => "open",
        /// Ejection over; admitting probes.
        HalfOpen => "half_open",
    }
}

label_values! {
    /// Why an endpoint was ejected (the `reason` label of `weir_outlier_ejections_total`).
    enum EjectionReason {
        /// `consecutive5xxErrors`.
        Consecutive5xx => "consecutive_5xx",
        /// `consecutiveGatewayErrors`.
        ConsecutiveGateway => "consecutive_gateway_errors",
        /// `consecutiveLocalOriginFailures`.
        ConsecutiveLocalOrigin => "consecutive_local_origin_failures",
        /// A half-open probe failed.
        ProbeFailed => "half_open_probe_failed",
    }
}

label_values! {
    /// A circuit breaker's state (the `state` label of `weir_circuit_breaker_state`).
    enum BreakerState {
        /// Requests pass.
        Closed => "closed",
        /// Requests are refused.
        Open => "open",
        /// Trial requests pass.
        HalfOpen => "half_open",
    }
}

label_values! {
    /// Which fallback answered a failed request (the `kind` label of `weir_fallbacks_total`,
    /// also sent in `x-weir-fallback`).
    enum FallbackKind {
        /// A kept copy of an earlier good response.
        StaleCache => "stale-cache",
        /// The backup service.
        Backup => "backup",
        /// The configured fixed response.
        Static => "static",
    }
}

label_values! {
    /// How a retry ended, or why none was made (the `result` label of `weir_retries_total`).
    enum RetryResult {
        /// The retry's response was good and no further retry followed.
        Success => "success",
        /// The retry failed too, or another retry followed it.
        Failure => "failure",
        /// No retry: the cluster's retry budget was spent.
        BudgetExhausted => "budget_exhausted",
        /// No retry: `maxRetries` retries were already in flight.
        Overflow => "overflow",
    }
}
