//! `VirtualService` (networking.istio.io): hosts, HTTP routes, their matches, destinations,
//! redirects, direct responses, rewrites, retries, mirrors and header edits.

use super::common::{Destination, HttpBody, Percent, StringMatch};
use super::http_policies::{
    CorsPolicy, HttpFallback, HttpFaultInjection, RateLimitSettings, SessionAffinity,
};
use crate::config::decode::{Dur, Opaque, Spanned};
use crate::{decode_enum, decode_struct};
use std::collections::BTreeMap;

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
        session_affinity: Option<SessionAffinity> = "sessionAffinity",
        /// weir: the largest request body forwarded, in bytes (413 above it).
        max_request_bytes: Option<u64> = "maxRequestBytes",
        /// weir: rate limits (Kong's `rate-limiting`, local policy).
        rate_limit: Option<RateLimitSettings> = "rateLimit",
        /// weir: request changes (Kong's `request-transformer` config, same object).
        request_transformer: Option<crate::config::kong::RequestTransformerConfig> = "requestTransformer",
        /// weir: response caching (Kong's `proxy-cache` config, same object).
        response_cache: Option<crate::config::kong::ProxyCacheConfig> = "responseCache",
        /// weir: Kong's access plugins (`key-auth`, `basic-auth`, `jwt`, `acl`,
        /// `ip-restriction`, same objects), checked against the Kong configuration's consumers.
        access_plugins: Vec<crate::config::kong::KongPlugin> = "accessPlugins",
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
    /// `HTTPRewrite`.
    pub struct HttpRewrite ("HTTPRewrite") {
        /// Replacement for the matched prefix (or the whole path).
        uri: Option<String> = "uri",
        /// Replacement authority.
        authority: Option<String> = "authority",
        /// Regex rewrite of the path.
        uri_regex_rewrite: Option<RegexRewrite> = "uriRegexRewrite",
        /// weir: join `uri` and what follows the matched prefix as Kong's `path_handling: v0`
        /// does (one slash between them), which Kong routes translate to.
        kong_path_join: Option<bool> = "kongPathJoin",
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
    /// `HTTPMirrorPolicy`.
    pub struct HttpMirrorPolicy ("HTTPMirrorPolicy") {
        /// Mirror destination.
        destination: Destination = "destination",
        /// Share mirrored.
        percentage: Option<Percent> = "percentage",
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
