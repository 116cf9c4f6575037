//! `DestinationRule`: subsets and traffic policies (connection pools, outlier detection, TLS to
//! the upstream, and weir's extensions).

use super::common::{PercentValue, PortSelector};
use super::load_balancer::LoadBalancerSettings;
use crate::config::decode::{Dur, Opaque, Spanned};
use crate::{decode_enum, decode_struct};
use std::collections::BTreeMap;

decode_struct! {
    /// `DestinationRule.spec`.
    pub struct DestinationRule ("DestinationRule spec") {
        /// Service host.
        host: Spanned<String> = "host",
        /// Policy for the whole host.
        traffic_policy: Option<TrafficPolicy> = "trafficPolicy",
        /// Named subsets selected by endpoint labels.
        subsets: Vec<Subset> = "subsets",
        /// Visibility (no meaning without Kubernetes).
        export_to: Vec<String> = "exportTo",
        /// Workload selector (parsed only).
        workload_selector: Option<Opaque> = "workloadSelector",
    }
}

decode_struct! {
    /// A subset of a service's endpoints.
    pub struct Subset ("Subset") {
        /// Name.
        name: Spanned<String> = "name",
        /// Labels an endpoint must carry.
        labels: BTreeMap<String, String> = "labels",
        /// Overrides of the host's policy.
        traffic_policy: Option<TrafficPolicy> = "trafficPolicy",
    }
}

decode_struct! {
    /// `TrafficPolicy`.
    pub struct TrafficPolicy ("TrafficPolicy") {
        /// Load balancing.
        load_balancer: Option<LoadBalancerSettings> = "loadBalancer",
        /// Connection-pool limits.
        connection_pool: Option<ConnectionPoolSettings> = "connectionPool",
        /// Outlier detection.
        outlier_detection: Option<OutlierDetection> = "outlierDetection",
        /// Upstream TLS.
        tls: Option<ClientTlsSettings> = "tls",
        /// Per-port overrides.
        port_level_settings: Vec<PortTrafficPolicy> = "portLevelSettings",
        /// Tunnel settings (parsed only).
        tunnel: Option<Opaque> = "tunnel",
        /// PROXY protocol (parsed only).
        proxy_protocol: Option<Opaque> = "proxyProtocol",
        /// Retry budget.
        retry_budget: Option<RetryBudget> = "retryBudget",
        /// weir: health checks (Kong's `healthchecks` object, same fields).
        health_checks: Option<crate::config::kong::Healthchecks> = "healthChecks",
        /// weir: a circuit breaker over the whole destination.
        circuit_breaker: Option<CircuitBreakerSettings> = "circuitBreaker",
    }
}

decode_struct! {
    /// weir's `trafficPolicy.circuitBreaker`: closed, open, half-open over the destination.
    pub struct CircuitBreakerSettings ("circuitBreaker") {
        /// Failures within `windowSize` that open it (default 5).
        failure_threshold: Option<u32> = "failureThreshold",
        /// How long a failure counts (default 60s).
        window_size: Option<Dur> = "windowSize",
        /// How long it stays open before trial requests (default 60s).
        recovery_timeout: Option<Dur> = "recoveryTimeout",
        /// Trial requests at a time when half-open (default 1).
        half_open_requests: Option<u32> = "halfOpenRequests",
    }
}

decode_struct! {
    /// `TrafficPolicy.PortTrafficPolicy`.
    pub struct PortTrafficPolicy ("PortTrafficPolicy") {
        /// Port.
        port: Option<PortSelector> = "port",
        /// Load balancing.
        load_balancer: Option<LoadBalancerSettings> = "loadBalancer",
        /// Connection-pool limits.
        connection_pool: Option<ConnectionPoolSettings> = "connectionPool",
        /// Outlier detection.
        outlier_detection: Option<OutlierDetection> = "outlierDetection",
        /// Upstream TLS.
        tls: Option<ClientTlsSettings> = "tls",
    }
}

decode_struct! {
    /// `ConnectionPoolSettings`.
    pub struct ConnectionPoolSettings ("ConnectionPoolSettings") {
        /// TCP limits.
        tcp: Option<TcpSettings> = "tcp",
        /// HTTP limits.
        http: Option<HttpSettings> = "http",
    }
}

decode_struct! {
    /// `ConnectionPoolSettings.TCPSettings`.
    pub struct TcpSettings ("TCPSettings") {
        /// Most connections to the destination.
        max_connections: Option<u32> = "maxConnections",
        /// Connect timeout (default 10s).
        connect_timeout: Option<Dur> = "connectTimeout",
        /// TCP keepalive (parsed only).
        tcp_keepalive: Option<Opaque> = "tcpKeepalive",
        /// Longest life of a connection.
        max_connection_duration: Option<Dur> = "maxConnectionDuration",
        /// Idle timeout.
        idle_timeout: Option<Dur> = "idleTimeout",
        /// Longest time a read of an HTTP/1.1 upstream connection may wait for bytes (weir's
        /// extension; Kong's `read_timeout`).
        read_timeout: Option<Dur> = "readTimeout",
        /// Longest time a write may wait to make progress (weir's extension; Kong's
        /// `write_timeout`).
        write_timeout: Option<Dur> = "writeTimeout",
    }
}

decode_struct! {
    /// `ConnectionPoolSettings.HTTPSettings`.
    pub struct HttpSettings ("HTTPSettings") {
        /// Most pending requests.
        http1_max_pending_requests: Option<u32> = "http1MaxPendingRequests",
        /// Most active requests.
        http2_max_requests: Option<u32> = "http2MaxRequests",
        /// Requests per connection (0 = unlimited).
        max_requests_per_connection: Option<u32> = "maxRequestsPerConnection",
        /// Most concurrent retries.
        max_retries: Option<u32> = "maxRetries",
        /// Idle timeout.
        idle_timeout: Option<Dur> = "idleTimeout",
        /// HTTP/2 upgrade policy.
        h2_upgrade_policy: Option<H2UpgradePolicy> = "h2UpgradePolicy",
        /// Speak the client's protocol upstream.
        use_client_protocol: Option<bool> = "useClientProtocol",
        /// HTTP/2 stream limit.
        max_concurrent_streams: Option<u32> = "maxConcurrentStreams",
        /// HTTP/2 keepalive (parsed only).
        http2_keep_alive: Option<Opaque> = "http2KeepAlive",
    }
}

decode_enum! {
    /// `H2UpgradePolicy`.
    pub enum H2UpgradePolicy ("h2UpgradePolicy") {
        /// Mesh default.
        #[default]
        Default = "DEFAULT",
        /// Keep HTTP/1.1.
        DoNotUpgrade = "DO_NOT_UPGRADE",
        /// Use HTTP/2.
        Upgrade = "UPGRADE",
    }
}

decode_struct! {
    /// `OutlierDetection`.
    pub struct OutlierDetection ("OutlierDetection") {
        /// Separate local-origin failures from upstream errors.
        split_external_local_origin_errors: Option<bool> = "splitExternalLocalOriginErrors",
        /// Local-origin failures before ejection.
        consecutive_local_origin_failures: Option<u32> = "consecutiveLocalOriginFailures",
        /// 502/503/504 before ejection.
        consecutive_gateway_errors: Option<u32> = "consecutiveGatewayErrors",
        /// 5xx before ejection.
        consecutive_5xx_errors: Option<u32> = "consecutive5xxErrors",
        /// Deprecated spelling of `consecutive5xxErrors`.
        consecutive_errors: Option<u32> = "consecutiveErrors",
        /// Sweep interval.
        interval: Option<Dur> = "interval",
        /// Base ejection time.
        base_ejection_time: Option<Dur> = "baseEjectionTime",
        /// Most endpoints ejected, in percent.
        max_ejection_percent: Option<u32> = "maxEjectionPercent",
        /// Healthy share below which detection stops (panic mode).
        min_health_percent: Option<u32> = "minHealthPercent",
        /// Status codes counted as errors.
        outlier_detection_http_error_codes: Vec<u32> = "outlierDetectionHttpErrorCodes",
    }
}

decode_struct! {
    /// `ClientTLSSettings`.
    pub struct ClientTlsSettings ("ClientTLSSettings") {
        /// Mode.
        mode: Option<ClientTlsMode> = "mode",
        /// Client certificate file.
        client_certificate: Option<String> = "clientCertificate",
        /// Private key file.
        private_key: Option<String> = "privateKey",
        /// CA bundle file.
        ca_certificates: Option<String> = "caCertificates",
        /// Kubernetes secret name (not supported).
        credential_name: Option<String> = "credentialName",
        /// Accepted subject alternative names.
        subject_alt_names: Vec<String> = "subjectAltNames",
        /// SNI to send.
        sni: Option<String> = "sni",
        /// Skip verification.
        insecure_skip_verify: Option<bool> = "insecureSkipVerify",
        /// CRL file.
        ca_crl: Option<String> = "caCrl",
    }
}

decode_enum! {
    /// `ClientTLSSettings.TLSmode`.
    pub enum ClientTlsMode ("tls.mode") {
        /// Plain text.
        #[default]
        Disable = "DISABLE",
        /// TLS.
        Simple = "SIMPLE",
        /// Mutual TLS.
        Mutual = "MUTUAL",
        /// Istio mutual TLS.
        IstioMutual = "ISTIO_MUTUAL",
    }
}

decode_struct! {
    /// `TrafficPolicy.RetryBudget`.
    pub struct RetryBudget ("RetryBudget") {
        /// Retries as a share of requests (default 20).
        percent: Option<PercentValue> = "percent",
        /// Retries always allowed (default 3).
        min_retry_concurrency: Option<u32> = "minRetryConcurrency",
        /// Window the budget is computed over.
        budget_interval: Option<Dur> = "budgetInterval",
    }
}
