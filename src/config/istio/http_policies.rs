//! A route's policies beyond routing: fault injection, CORS, and weir's HTTPRoute extensions
//! (fallback, rate limits, session affinity).

use super::common::{Destination, HttpBody, Percent, StringMatch};
use crate::config::decode::{Dur, Spanned};
use crate::{decode_enum, decode_struct};
use std::collections::BTreeMap;

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
    /// Cookie-based session affinity (Flagger's `sessionAffinity`, also weir's HTTPRoute
    /// extension).
    pub struct SessionAffinity ("sessionAffinity") {
        /// Canary cookie.
        cookie_name: String = "cookieName",
        /// Primary cookie.
        primary_cookie_name: Option<String> = "primaryCookieName",
        /// Cookie lifetime, seconds (default 86400).
        max_age: Option<u32> = "maxAge",
        /// Cookie domain.
        domain: Option<String> = "domain",
        /// Cookie path.
        path: Option<String> = "path",
        /// HttpOnly.
        http_only: Option<bool> = "httpOnly",
        /// Secure.
        secure: Option<bool> = "secure",
        /// SameSite.
        same_site: Option<String> = "sameSite",
        /// Partitioned.
        partitioned: Option<bool> = "partitioned",
    }
}
