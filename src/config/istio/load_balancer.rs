//! A traffic policy's `loadBalancer`: simple algorithms, consistent hashing and warmup.

use super::common::PercentValue;
use crate::config::decode::{Dur, Opaque};
use crate::{decode_enum, decode_struct};

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
