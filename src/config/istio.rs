//! Istio `networking.istio.io` resources (v1alpha3, v1beta1 and v1 share one schema).
//!
//! Field names follow istio/api's protos in their JSON (camelCase) form. Fields that weir does not
//! act on yet still parse and validate, so a config written today keeps loading.

use std::collections::BTreeMap;

use super::decode::{Cx, Decode, Dur, Opaque, Spanned};
use super::yaml::{Node, Value};
use crate::{decode_enum, decode_struct};

// === VirtualService ===

decode_struct! {
    /// `VirtualService.spec`.
    pub struct VirtualService ("VirtualService spec") {
        /// Hosts this service answers for; `[metadata.name]` when empty.
        hosts: Vec<String> = "hosts",
        /// Gateways whose listeners serve it; none (or `mesh`) means the mesh listener.
        gateways: Vec<String> = "gateways",
        /// Ordered HTTP rules: the first match wins.
        http: Vec<HttpRoute> = "http",
        /// TLS routes (parsed, not served).
        tls: Vec<Opaque> = "tls",
        /// TCP routes (parsed, not served).
        tcp: Vec<Opaque> = "tcp",
        /// Namespaces the service is visible in (no meaning without Kubernetes).
        export_to: Vec<String> = "exportTo",
    }
}

decode_struct! {
    /// One `HTTPRoute` rule.
    pub struct HttpRoute ("HTTPRoute") {
        /// Rule name, used as the metrics `route` label.
        name: Option<String> = "name",
        /// Match blocks, ORed; conditions inside one block are ANDed.
        matches: Vec<HttpMatchRequest> = "match",
        /// Weighted destinations.
        route: Vec<HttpRouteDestination> = "route",
        /// Answer with a redirect.
        redirect: Option<HttpRedirect> = "redirect",
        /// Answer with a fixed response.
        direct_response: Option<HttpDirectResponse> = "directResponse",
        /// Delegation to another VirtualService (not supported).
        delegate: Option<Opaque> = "delegate",
        /// Path and authority rewrite.
        rewrite: Option<HttpRewrite> = "rewrite",
        /// Whole-request timeout (retries included); `0s` disables.
        timeout: Option<Dur> = "timeout",
        /// Retry policy.
        retries: Option<HttpRetry> = "retries",
        /// Fault injection.
        fault: Option<HttpFaultInjection> = "fault",
        /// Mirror destination.
        mirror: Option<Destination> = "mirror",
        /// Several mirror destinations.
        mirrors: Vec<HttpMirrorPolicy> = "mirrors",
        /// Share of traffic mirrored.
        mirror_percentage: Option<Percent> = "mirrorPercentage",
        /// Deprecated integer form of `mirrorPercentage`.
        mirror_percent: Option<u32> = "mirrorPercent",
        /// Deprecated spelling of `mirrorPercent`.
        mirror_percent_snake: Option<u32> = "mirror_percent",
        /// CORS policy.
        cors_policy: Option<CorsPolicy> = "corsPolicy",
        /// Header edits.
        headers: Option<Headers> = "headers",
        /// weir: what a request that finally fails gets instead.
        fallback: Option<HttpFallback> = "fallback",
        /// weir: keep each user on the destination they first got (a cohort cookie).
        session_affinity: Option<super::flagger::SessionAffinity> = "sessionAffinity",
        /// weir: the largest request body forwarded, in bytes (413 above it).
        max_request_bytes: Option<u64> = "maxRequestBytes",
        /// weir: rate limits (Kong's `rate-limiting`, local policy).
        rate_limit: Option<RateLimitSettings> = "rateLimit",
        /// weir: request changes (Kong's `request-transformer` config, same object).
        request_transformer: Option<super::kong::RequestTransformerConfig> = "requestTransformer",
        /// weir: response caching (Kong's `proxy-cache` config, same object).
        response_cache: Option<super::kong::ProxyCacheConfig> = "responseCache",
    }
}

decode_struct! {
    /// weir's `rateLimit` on an HTTP route.
    pub struct RateLimitSettings ("rateLimit") {
        /// Requests per second.
        second: Option<u64> = "second",
        /// Requests per minute.
        minute: Option<u64> = "minute",
        /// Requests per hour.
        hour: Option<u64> = "hour",
        /// Requests per day.
        day: Option<u64> = "day",
        /// Requests per calendar month.
        month: Option<u64> = "month",
        /// Requests per calendar year.
        year: Option<u64> = "year",
        /// `ip` (default), `header`, `path`, `service` (Kong's `consumer` and `credential` read
        /// as `ip`: weir has no consumers).
        limit_by: Option<Spanned<String>> = "limitBy",
        /// The header for `limitBy: header`.
        header_name: Option<String> = "headerName",
        /// The path for `limitBy: path`.
        path: Option<String> = "path",
        /// Send no rate-limit headers.
        hide_client_headers: Option<bool> = "hideClientHeaders",
        /// Status of a refusal (default 429).
        error_code: Option<u16> = "errorCode",
        /// Message of a refusal (default "API rate limit exceeded").
        error_message: Option<String> = "errorMessage",
        /// Routes with the same scope share their counts (default: the route's own).
        scope: Option<String> = "scope",
    }
}

decode_struct! {
    /// weir's `fallback` extension of `HTTPRoute`: tried in order when a request finally fails.
    pub struct HttpFallback ("fallback") {
        /// Serve the last good response to the same GET.
        stale_cache: Option<StaleCacheConfig> = "staleCache",
        /// Send the request to a backup service.
        destination: Option<Destination> = "destination",
        /// Answer with a fixed response.
        response: Option<FallbackResponse> = "response",
    }
}

decode_struct! {
    /// `fallback.staleCache`.
    pub struct StaleCacheConfig ("staleCache") {
        /// Oldest response served (default 5m).
        max_age: Option<Dur> = "maxAge",
        /// Most responses kept (default 1000).
        max_entries: Option<u64> = "maxEntries",
        /// Largest body kept, in bytes (default 1 MiB).
        max_body_bytes: Option<u64> = "maxBodyBytes",
    }
}

decode_struct! {
    /// `fallback.response`.
    pub struct FallbackResponse ("fallback response") {
        /// Status code.
        status: u32 = "status",
        /// Body.
        body: Option<HttpBody> = "body",
        /// Response headers.
        headers: BTreeMap<String, String> = "headers",
    }
}

decode_struct! {
    /// `HTTPMatchRequest`: conditions on a request, all of which must hold.
    pub struct HttpMatchRequest ("HTTPMatchRequest") {
        /// Name of the match block.
        name: Option<String> = "name",
        /// Path condition (the query string is not part of it).
        uri: Option<StringMatch> = "uri",
        /// Scheme condition.
        scheme: Option<StringMatch> = "scheme",
        /// Method condition.
        method: Option<StringMatch> = "method",
        /// Authority (Host) condition.
        authority: Option<StringMatch> = "authority",
        /// Header conditions; names are case-insensitive.
        headers: BTreeMap<String, StringMatch> = "headers",
        /// Listener port condition.
        port: Option<u32> = "port",
        /// Workload selector (no meaning without Kubernetes; parsed only).
        source_labels: BTreeMap<String, String> = "sourceLabels",
        /// Gateways this block applies to.
        gateways: Vec<String> = "gateways",
        /// Query parameter conditions.
        query_params: BTreeMap<String, StringMatch> = "queryParams",
        /// Case-insensitive `uri` exact and prefix matching.
        ignore_uri_case: Option<bool> = "ignoreUriCase",
        /// Headers that must not match.
        without_headers: BTreeMap<String, StringMatch> = "withoutHeaders",
        /// Source namespace (parsed only).
        source_namespace: Option<String> = "sourceNamespace",
        /// Stats prefix (parsed only).
        stat_prefix: Option<String> = "statPrefix",
    }
}

/// Istio's `StringMatch`: one of `exact`, `prefix`, `regex`; `{}` means "present".
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The whole value matches this RE2 regex.
    Regex(Spanned<String>),
    /// The value is present, whatever it is.
    #[default]
    #[serde(rename = "present")]
    Present,
}

impl Decode for StringMatch {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            cx.error(
                node.pos,
                format!(
                    "expected a StringMatch (`exact`, `prefix` or `regex`), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        if entries.len() > 1 {
            cx.error(
                node.pos,
                "a StringMatch takes exactly one of `exact`, `prefix`, `regex`",
            );
            return None;
        }
        let Some((key, value)) = entries.first() else {
            return Some(StringMatch::Present);
        };
        let text = Spanned::<String>::decode(value, cx)?;
        match key.as_str() {
            Some("exact") => Some(StringMatch::Exact(text.value)),
            Some("prefix") => Some(StringMatch::Prefix(text.value)),
            Some("regex") => Some(StringMatch::Regex(text)),
            other => {
                cx.error(
                    key.pos,
                    format!(
                        "unknown field `{}` in StringMatch: expected `exact`, `prefix` or `regex`",
                        other.unwrap_or("?")
                    ),
                );
                None
            }
        }
    }
}

decode_struct! {
    /// A weighted destination of a rule.
    pub struct HttpRouteDestination ("HTTPRouteDestination") {
        /// Where to send.
        destination: Destination = "destination",
        /// Relative weight.
        weight: Option<u32> = "weight",
        /// Header edits for this destination only.
        headers: Option<Headers> = "headers",
    }
}

decode_struct! {
    /// A service host, optionally narrowed to a subset and a port.
    pub struct Destination ("Destination") {
        /// Service host (a ServiceEntry host).
        host: Spanned<String> = "host",
        /// Subset name (from the host's DestinationRule).
        subset: Option<Spanned<String>> = "subset",
        /// Service port.
        port: Option<PortSelector> = "port",
    }
}

decode_struct! {
    /// A port number.
    pub struct PortSelector ("PortSelector") {
        /// The number.
        number: u32 = "number",
    }
}

decode_struct! {
    /// `HTTPRedirect`.
    pub struct HttpRedirect ("HTTPRedirect") {
        /// Replacement path.
        uri: Option<String> = "uri",
        /// Replacement authority.
        authority: Option<String> = "authority",
        /// Replacement port.
        port: Option<u32> = "port",
        /// Port derivation.
        derive_port: Option<DerivePort> = "derivePort",
        /// Replacement scheme.
        scheme: Option<String> = "scheme",
        /// Status code (default 301).
        redirect_code: Option<u32> = "redirectCode",
        /// Replacement for the matched prefix.
        prefix_rewrite: Option<String> = "prefixRewrite",
    }
}

decode_enum! {
    /// `HTTPRedirect.derivePort`.
    pub enum DerivePort ("derivePort") {
        /// Use the scheme's default port.
        #[default]
        FromProtocolDefault = "FROM_PROTOCOL_DEFAULT",
        /// Keep the request's port.
        FromRequestPort = "FROM_REQUEST_PORT",
    }
}

decode_struct! {
    /// `HTTPDirectResponse`.
    pub struct HttpDirectResponse ("HTTPDirectResponse") {
        /// Status code.
        status: u32 = "status",
        /// Body.
        body: Option<HttpBody> = "body",
    }
}

decode_struct! {
    /// `HTTPBody`: one of `string` or `bytes` (base64).
    pub struct HttpBody ("HTTPBody") {
        /// Text body.
        string: Option<String> = "string",
        /// Base64 body.
        bytes: Option<String> = "bytes",
    }
}

decode_struct! {
    /// `HTTPRewrite`.
    pub struct HttpRewrite ("HTTPRewrite") {
        /// Replacement for the matched prefix (or the whole path).
        uri: Option<String> = "uri",
        /// Replacement authority.
        authority: Option<String> = "authority",
        /// Regex rewrite of the path.
        uri_regex_rewrite: Option<RegexRewrite> = "uriRegexRewrite",
    }
}

decode_struct! {
    /// `RegexRewrite`.
    pub struct RegexRewrite ("RegexRewrite") {
        /// Pattern.
        pattern: Spanned<String> = "match",
        /// Replacement, with `\1`-style group references.
        rewrite: String = "rewrite",
    }
}

decode_struct! {
    /// `HTTPRetry`.
    pub struct HttpRetry ("HTTPRetry") {
        /// Retries after the first try; 0 disables.
        attempts: Option<u32> = "attempts",
        /// Timeout of each try.
        per_try_timeout: Option<Dur> = "perTryTimeout",
        /// Comma-separated retry conditions.
        retry_on: Option<Spanned<String>> = "retryOn",
        /// Retry in other localities.
        retry_remote_localities: Option<bool> = "retryRemoteLocalities",
        /// Retry on another endpoint (default true).
        retry_ignore_previous_hosts: Option<bool> = "retryIgnorePreviousHosts",
        /// Base backoff interval (default 25ms).
        backoff: Option<Dur> = "backoff",
        /// weir: also retry non-idempotent requests that reached the upstream.
        retry_non_idempotent: Option<bool> = "retryNonIdempotent",
    }
}

decode_struct! {
    /// `HTTPFaultInjection`.
    pub struct HttpFaultInjection ("HTTPFaultInjection") {
        /// Delay some requests.
        delay: Option<FaultDelay> = "delay",
        /// Abort some requests.
        abort: Option<FaultAbort> = "abort",
    }
}

decode_struct! {
    /// `HTTPFaultInjection.Delay`.
    pub struct FaultDelay ("fault delay") {
        /// The delay.
        fixed_delay: Option<Dur> = "fixedDelay",
        /// Exponential delay (hidden in Istio's docs).
        exponential_delay: Option<Dur> = "exponentialDelay",
        /// Share of requests delayed.
        percentage: Option<Percent> = "percentage",
        /// Deprecated integer percentage.
        percent: Option<u32> = "percent",
    }
}

decode_struct! {
    /// `HTTPFaultInjection.Abort`.
    pub struct FaultAbort ("fault abort") {
        /// HTTP status to answer with.
        http_status: Option<u32> = "httpStatus",
        /// gRPC status to answer with.
        grpc_status: Option<String> = "grpcStatus",
        /// HTTP/2 error to reset with.
        http2_error: Option<String> = "http2Error",
        /// Share of requests aborted.
        percentage: Option<Percent> = "percentage",
        /// Deprecated integer percentage.
        percent: Option<u32> = "percent",
    }
}

decode_struct! {
    /// `Percent`: a share from 0 to 100.
    pub struct Percent ("Percent") {
        /// The share.
        value: f64 = "value",
    }
}

decode_struct! {
    /// `HTTPMirrorPolicy`.
    pub struct HttpMirrorPolicy ("HTTPMirrorPolicy") {
        /// Mirror destination.
        destination: Destination = "destination",
        /// Share mirrored.
        percentage: Option<Percent> = "percentage",
    }
}

decode_struct! {
    /// `CorsPolicy`.
    pub struct CorsPolicy ("CorsPolicy") {
        /// Allowed origins.
        allow_origins: Vec<StringMatch> = "allowOrigins",
        /// Deprecated exact origins.
        allow_origin: Vec<String> = "allowOrigin",
        /// Allowed methods.
        allow_methods: Vec<String> = "allowMethods",
        /// Allowed headers.
        allow_headers: Vec<String> = "allowHeaders",
        /// Exposed headers.
        expose_headers: Vec<String> = "exposeHeaders",
        /// Preflight cache time.
        max_age: Option<Dur> = "maxAge",
        /// Allow credentials.
        allow_credentials: Option<bool> = "allowCredentials",
        /// What to do with preflights from origins not allowed.
        unmatched_preflights: Option<UnmatchedPreflights> = "unmatchedPreflights",
        /// Without `allowHeaders`, allow the headers the preflight asks for (weir's extension;
        /// Kong's `cors` without `headers`).
        mirror_request_headers: Option<bool> = "mirrorRequestHeaders",
        /// Forward every preflight to the upstream and add nothing (weir's extension; Kong's
        /// `preflight_continue`).
        forward_preflights: Option<bool> = "forwardPreflights",
    }
}

decode_enum! {
    /// `CorsPolicy.unmatchedPreflights`.
    pub enum UnmatchedPreflights ("unmatchedPreflights") {
        /// Unspecified (forward).
        #[default]
        Unspecified = "UNSPECIFIED",
        /// Forward to the upstream.
        Forward = "FORWARD",
        /// Answer without CORS headers.
        Ignore = "IGNORE",
    }
}

decode_struct! {
    /// `Headers`: request and response edits.
    pub struct Headers ("Headers") {
        /// Request edits.
        request: Option<HeaderOperations> = "request",
        /// Response edits.
        response: Option<HeaderOperations> = "response",
    }
}

decode_struct! {
    /// `HeaderOperations`.
    pub struct HeaderOperations ("HeaderOperations") {
        /// Overwrite these headers.
        set: BTreeMap<String, String> = "set",
        /// Append these headers.
        add: BTreeMap<String, String> = "add",
        /// Remove these headers.
        remove: Vec<String> = "remove",
    }
}

// === DestinationRule ===

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
        health_checks: Option<super::kong::Healthchecks> = "healthChecks",
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
    /// `LoadBalancerSettings`.
    pub struct LoadBalancerSettings ("LoadBalancerSettings") {
        /// Simple algorithm.
        simple: Option<SimpleLb> = "simple",
        /// Consistent hashing.
        consistent_hash: Option<ConsistentHashLb> = "consistentHash",
        /// Locality settings (parsed only).
        locality_lb_setting: Option<Opaque> = "localityLbSetting",
        /// Slow start, in seconds.
        warmup_duration_secs: Option<Dur> = "warmupDurationSecs",
        /// Slow start.
        warmup: Option<WarmupConfiguration> = "warmup",
    }
}

decode_struct! {
    /// `WarmupConfiguration`.
    pub struct WarmupConfiguration ("WarmupConfiguration") {
        /// The slow-start window.
        duration: Option<Dur> = "duration",
        /// Share at the start, in percent (default 10).
        minimum_percent: Option<PercentValue> = "minimumPercent",
        /// How fast the share grows (default 1.0).
        aggression: Option<PercentValue> = "aggression",
    }
}

decode_enum! {
    /// `LoadBalancerSettings.SimpleLB`.
    pub enum SimpleLb ("loadBalancer.simple") {
        /// Proxy's default (round robin here).
        #[default]
        Unspecified = "UNSPECIFIED",
        /// Random.
        Random = "RANDOM",
        /// Pass through to the original destination.
        Passthrough = "PASSTHROUGH",
        /// Round robin.
        RoundRobin = "ROUND_ROBIN",
        /// Least request.
        LeastRequest = "LEAST_REQUEST",
        /// Deprecated alias of least request.
        LeastConn = "LEAST_CONN",
    }
}

decode_struct! {
    /// `ConsistentHashLB`.
    pub struct ConsistentHashLb ("ConsistentHashLB") {
        /// Hash a header.
        http_header_name: Option<String> = "httpHeaderName",
        /// Hash a cookie.
        http_cookie: Option<HttpCookie> = "httpCookie",
        /// Hash the client address.
        use_source_ip: Option<bool> = "useSourceIp",
        /// Hash a query parameter.
        http_query_parameter_name: Option<String> = "httpQueryParameterName",
        /// Hash the request path (weir's extension; Kong's `hash_on: path`).
        use_path: Option<bool> = "usePath",
        /// Hash a named capture group of the matched route's regex path (weir's extension;
        /// Kong's `hash_on: uri_capture`).
        uri_capture: Option<String> = "uriCapture",
        /// The key used when the request has none of the first (weir's extension; Kong's
        /// `hash_fallback`): one key, without tables or a further fallback.
        fallback: Option<Box<ConsistentHashLb>> = "fallback",
        /// Ring hash.
        ring_hash: Option<RingHash> = "ringHash",
        /// Maglev.
        maglev: Option<MagLev> = "maglev",
        /// Deprecated ring size.
        minimum_ring_size: Option<u64> = "minimumRingSize",
    }
}

decode_struct! {
    /// `ConsistentHashLB.RingHash`.
    pub struct RingHash ("RingHash") {
        /// Smallest ring (default 1024).
        minimum_ring_size: Option<u64> = "minimumRingSize",
    }
}

decode_struct! {
    /// `ConsistentHashLB.MagLev`.
    pub struct MagLev ("MagLev") {
        /// Table size, a prime (default 65537).
        table_size: Option<u64> = "tableSize",
    }
}

decode_struct! {
    /// `ConsistentHashLB.HTTPCookie`.
    pub struct HttpCookie ("HTTPCookie") {
        /// Cookie name.
        name: String = "name",
        /// Cookie path.
        path: Option<String> = "path",
        /// Cookie lifetime.
        ttl: Option<Dur> = "ttl",
        /// Extra cookie attributes.
        attributes: Vec<Opaque> = "attributes",
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

/// A percentage written either as a number or as a `Percent` (`{value: n}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct PercentValue(pub f64);

impl Decode for PercentValue {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match node.value {
            Value::Map(_) => Percent::decode(node, cx).map(|p| PercentValue(p.value)),
            _ => f64::decode(node, cx).map(PercentValue),
        }
    }
}

// === ServiceEntry ===

decode_struct! {
    /// `ServiceEntry.spec`: declares a service and its endpoints.
    pub struct ServiceEntry ("ServiceEntry spec") {
        /// Service hosts.
        hosts: Vec<Spanned<String>> = "hosts",
        /// Virtual IPs (parsed only).
        addresses: Vec<String> = "addresses",
        /// Service ports.
        ports: Vec<ServicePort> = "ports",
        /// Inside or outside the mesh (parsed only).
        location: Option<Location> = "location",
        /// How endpoints are found.
        resolution: Option<Resolution> = "resolution",
        /// Endpoints.
        endpoints: Vec<WorkloadEntry> = "endpoints",
        /// Workload selector (not supported).
        workload_selector: Option<Opaque> = "workloadSelector",
        /// Visibility (no meaning without Kubernetes).
        export_to: Vec<String> = "exportTo",
        /// Accepted SANs (parsed only).
        subject_alt_names: Vec<String> = "subjectAltNames",
    }
}

decode_struct! {
    /// `ServicePort`.
    pub struct ServicePort ("ServicePort") {
        /// Port number.
        number: u32 = "number",
        /// Protocol: HTTP, HTTP2, GRPC, ...
        protocol: Option<String> = "protocol",
        /// Port name, referenced by endpoint `ports`.
        name: Option<String> = "name",
        /// Endpoint port when endpoints do not name one.
        target_port: Option<u32> = "targetPort",
    }
}

decode_enum! {
    /// `ServiceEntry.Location`.
    pub enum Location ("location") {
        /// Outside the mesh.
        #[default]
        MeshExternal = "MESH_EXTERNAL",
        /// Inside the mesh.
        MeshInternal = "MESH_INTERNAL",
    }
}

decode_enum! {
    /// `ServiceEntry.Resolution`.
    pub enum Resolution ("resolution") {
        /// Use the original destination (not supported for routing).
        #[default]
        None = "NONE",
        /// Endpoints are IP addresses.
        Static = "STATIC",
        /// Endpoints (or hosts) are resolved with DNS.
        Dns = "DNS",
        /// DNS, round robin over the first answer.
        DnsRoundRobin = "DNS_ROUND_ROBIN",
    }
}

decode_struct! {
    /// `WorkloadEntry`: one endpoint.
    pub struct WorkloadEntry ("WorkloadEntry") {
        /// IP address or DNS name.
        address: Spanned<String> = "address",
        /// Port name to number.
        ports: BTreeMap<String, u32> = "ports",
        /// Labels, matched by subsets.
        labels: BTreeMap<String, String> = "labels",
        /// Network (parsed only).
        network: Option<String> = "network",
        /// Locality (parsed only).
        locality: Option<String> = "locality",
        /// Load-balancing weight.
        weight: Option<u32> = "weight",
        /// Service account (parsed only).
        service_account: Option<String> = "serviceAccount",
    }
}

// === Gateway ===

decode_struct! {
    /// `Gateway.spec`.
    pub struct Gateway ("Gateway spec") {
        /// Workload selector (no meaning here).
        selector: BTreeMap<String, String> = "selector",
        /// Servers: each a listener.
        servers: Vec<Server> = "servers",
    }
}

decode_struct! {
    /// `Server`: a port weir listens on for the gateway.
    pub struct Server ("Server") {
        /// Port.
        port: GatewayPort = "port",
        /// Address to bind (default 0.0.0.0).
        bind: Option<Spanned<String>> = "bind",
        /// Hosts served.
        hosts: Vec<String> = "hosts",
        /// TLS settings.
        tls: Option<ServerTlsSettings> = "tls",
        /// Name.
        name: Option<String> = "name",
        /// Default endpoint (parsed only).
        default_endpoint: Option<String> = "defaultEndpoint",
    }
}

decode_struct! {
    /// `Port` of a gateway server.
    pub struct GatewayPort ("Port") {
        /// Port number.
        number: Spanned<u32> = "number",
        /// Protocol: HTTP, HTTPS, HTTP2, ...
        protocol: Option<String> = "protocol",
        /// Name.
        name: Option<String> = "name",
        /// Target port (parsed only).
        target_port: Option<u32> = "targetPort",
    }
}

decode_struct! {
    /// `ServerTLSSettings`.
    pub struct ServerTlsSettings ("ServerTLSSettings") {
        /// Redirect plain HTTP to HTTPS.
        https_redirect: Option<bool> = "httpsRedirect",
        /// Mode: SIMPLE or MUTUAL (PASSTHROUGH and the Istio modes are refused).
        mode: Option<Spanned<String>> = "mode",
        /// Certificate file.
        server_certificate: Option<Spanned<String>> = "serverCertificate",
        /// Key file.
        private_key: Option<Spanned<String>> = "privateKey",
        /// CA bundle for client certificates.
        ca_certificates: Option<Spanned<String>> = "caCertificates",
        /// Kubernetes secret (not supported).
        credential_name: Option<String> = "credentialName",
        /// Kubernetes secrets (not supported).
        credential_names: Vec<String> = "credentialNames",
        /// Accepted client SANs.
        subject_alt_names: Vec<String> = "subjectAltNames",
        /// Pinned SPKI hashes.
        verify_certificate_spki: Vec<String> = "verifyCertificateSpki",
        /// Pinned certificate hashes.
        verify_certificate_hash: Vec<String> = "verifyCertificateHash",
        /// Lowest TLS version.
        min_protocol_version: Option<Spanned<String>> = "minProtocolVersion",
        /// Highest TLS version.
        max_protocol_version: Option<Spanned<String>> = "maxProtocolVersion",
        /// Cipher suites.
        cipher_suites: Vec<String> = "cipherSuites",
        /// CRL file.
        ca_crl: Option<String> = "caCrl",
    }
}
