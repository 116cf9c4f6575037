//! Kong's resources: the declarative config (`_format_version: "3.0"`, as `deck` and DB-less
//! Kong read it) and the seed's Kubernetes-style kinds (`configuration.konghq.com/v1`
//! `KongService`, `KongUpstream`, `KongRoute`, `KongPlugin`). Field names and defaults are
//! Kong's (ANCHORS.md section 1.4); [`super::kong_translate`] turns them into the Istio
//! resources weir runs.

use std::collections::BTreeMap;

use super::decode::{Cx, Decode, Opaque, Spanned};
use super::yaml::{Node, Value};
use crate::decode_struct;

decode_struct! {
    /// A declarative config file.
    pub struct KongConfig ("Kong declarative config") {
        /// `"3.0"` (also 1.1 and 2.1, which read the same for what weir uses).
        format_version: Spanned<Opaque> = "_format_version",
        /// Whether the file was already transformed (parsed only).
        transform: Option<bool> = "_transform",
        /// Workspace (parsed only).
        workspace: Option<String> = "_workspace",
        /// Free-form information (parsed only).
        info: Option<Opaque> = "_info",
        /// Services, with their nested routes and plugins.
        services: Vec<KongService> = "services",
        /// Routes declared at the top level (`service` names theirs).
        routes: Vec<KongRoute> = "routes",
        /// Upstreams (load balancers) with their targets.
        upstreams: Vec<KongUpstream> = "upstreams",
        /// Global plugins, and plugins naming a service or route.
        plugins: Vec<KongPlugin> = "plugins",
        /// Consumers, with their credentials.
        consumers: Vec<KongConsumer> = "consumers",
        /// key-auth credentials naming their consumer.
        keyauth_credentials: Vec<KeyAuthCredential> = "keyauth_credentials",
        /// basic-auth credentials naming their consumer.
        basicauth_credentials: Vec<BasicAuthCredential> = "basicauth_credentials",
        /// jwt secrets naming their consumer.
        jwt_secrets: Vec<JwtSecretCredential> = "jwt_secrets",
        /// ACL group memberships naming their consumer.
        acls: Vec<AclGroup> = "acls",
        /// Certificates for Kong's own TLS listeners (refused: see the error).
        certificates: Option<Spanned<Opaque>> = "certificates",
        /// Secret vaults (refused: see the error).
        vaults: Option<Spanned<Opaque>> = "vaults",
    }
}

decode_struct! {
    /// A Kong Service: where requests go.
    pub struct KongService ("Kong service") {
        /// Name (routes and plugins refer to it).
        name: Option<Spanned<String>> = "name",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// Shorthand for protocol, host, port and path.
        url: Option<Spanned<String>> = "url",
        /// `http` (default) or `https`.
        protocol: Option<Spanned<String>> = "protocol",
        /// Host name, address, or the name of an upstream.
        host: Option<Spanned<String>> = "host",
        /// Port (default 80, 443 for https).
        port: Option<u16> = "port",
        /// Path prefixed to what is forwarded.
        path: Option<Spanned<String>> = "path",
        /// Tries after a transport failure (default 5).
        retries: Option<u32> = "retries",
        /// Connect timeout, ms (default 60000).
        connect_timeout: Option<Spanned<u64>> = "connect_timeout",
        /// Timeout between two reads of the response, ms (default 60000).
        read_timeout: Option<Spanned<u64>> = "read_timeout",
        /// Timeout between two writes of the request, ms (default 60000).
        write_timeout: Option<Spanned<u64>> = "write_timeout",
        /// Whether the service is served (default true).
        enabled: Option<bool> = "enabled",
        /// Verify the upstream's certificate (https).
        tls_verify: Option<bool> = "tls_verify",
        /// Verification depth (parsed only).
        tls_verify_depth: Option<u32> = "tls_verify_depth",
        /// CA certificates (ids; parsed only).
        ca_certificates: Vec<String> = "ca_certificates",
        /// Client certificate (id; parsed only).
        client_certificate: Option<Opaque> = "client_certificate",
        /// Tags.
        tags: Vec<String> = "tags",
        /// Nested routes.
        routes: Vec<KongRoute> = "routes",
        /// Plugins applied to this service.
        plugins: Vec<KongPlugin> = "plugins",
    }
}

decode_struct! {
    /// A Kong Route: which requests go to a service.
    pub struct KongRoute ("Kong route") {
        /// Name.
        name: Option<Spanned<String>> = "name",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// The service (top-level routes): its name, or `{name: ...}`.
        service: Option<ServiceRef> = "service",
        /// Path prefixes; `~` starts a regex.
        paths: Vec<Spanned<String>> = "paths",
        /// Hosts; `*.example.com` and `example.*` are wildcards.
        hosts: Vec<Spanned<String>> = "hosts",
        /// Methods.
        methods: Vec<Spanned<String>> = "methods",
        /// Header name to accepted values; a value starting with `~*` is a regex.
        headers: BTreeMap<String, Vec<Spanned<String>>> = "headers",
        /// Protocols (`http`, `https`).
        protocols: Vec<Spanned<String>> = "protocols",
        /// Strip the matched path prefix before forwarding (default true).
        strip_path: Option<bool> = "strip_path",
        /// Send the client's Host upstream (default false).
        preserve_host: Option<bool> = "preserve_host",
        /// Order among regex routes (default 0; higher first).
        regex_priority: Option<i64> = "regex_priority",
        /// An expressions-router route (refused: see the error).
        expression: Option<Spanned<Opaque>> = "expression",
        /// `v0` (default) or `v1`.
        path_handling: Option<Spanned<String>> = "path_handling",
        /// Status of the redirect to https (parsed only).
        https_redirect_status_code: Option<u16> = "https_redirect_status_code",
        /// Buffer the request (parsed only: weir streams).
        request_buffering: Option<bool> = "request_buffering",
        /// Buffer the response (parsed only: weir streams).
        response_buffering: Option<bool> = "response_buffering",
        /// TLS server names (stream routes; not supported).
        snis: Vec<String> = "snis",
        /// Sources (stream routes; not supported).
        sources: Vec<Opaque> = "sources",
        /// Destinations (stream routes; not supported).
        destinations: Vec<Opaque> = "destinations",
        /// Tags.
        tags: Vec<String> = "tags",
        /// Plugins applied to this route.
        plugins: Vec<KongPlugin> = "plugins",
    }
}

decode_struct! {
    /// A Kong Upstream: a load balancer over targets.
    pub struct KongUpstream ("Kong upstream") {
        /// Name (a service's `host` refers to it).
        name: Option<Spanned<String>> = "name",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// `round-robin` (default), `consistent-hashing`, `least-connections`, `latency`.
        algorithm: Option<Spanned<String>> = "algorithm",
        /// What to hash: `none` (default), `consumer`, `ip`, `header`, `cookie`, `path`,
        /// `query_arg`, `uri_capture`.
        hash_on: Option<Spanned<String>> = "hash_on",
        /// What to hash when `hash_on` gives nothing.
        hash_fallback: Option<Spanned<String>> = "hash_fallback",
        /// Header for `hash_on: header`.
        hash_on_header: Option<String> = "hash_on_header",
        /// Header for `hash_fallback: header`.
        hash_fallback_header: Option<String> = "hash_fallback_header",
        /// Cookie for `hash_on: cookie`.
        hash_on_cookie: Option<String> = "hash_on_cookie",
        /// The cookie's path (default `/`).
        hash_on_cookie_path: Option<String> = "hash_on_cookie_path",
        /// Query argument for `hash_on: query_arg`.
        hash_on_query_arg: Option<String> = "hash_on_query_arg",
        /// Query argument for `hash_fallback: query_arg`.
        hash_fallback_query_arg: Option<String> = "hash_fallback_query_arg",
        /// URI capture for `hash_on: uri_capture`.
        hash_on_uri_capture: Option<String> = "hash_on_uri_capture",
        /// URI capture for `hash_fallback: uri_capture`.
        hash_fallback_uri_capture: Option<String> = "hash_fallback_uri_capture",
        /// Ring slots (default 10000, 10-65536).
        slots: Option<u32> = "slots",
        /// Host header sent upstream.
        host_header: Option<String> = "host_header",
        /// Health checks.
        healthchecks: Option<Healthchecks> = "healthchecks",
        /// Client certificate (parsed only).
        client_certificate: Option<Opaque> = "client_certificate",
        /// SRV names (parsed only).
        use_srv_name: Option<bool> = "use_srv_name",
        /// Tags.
        tags: Vec<String> = "tags",
        /// Targets.
        targets: Vec<KongTarget> = "targets",
    }
}

decode_struct! {
    /// One target of an upstream.
    pub struct KongTarget ("Kong target") {
        /// `host:port` (port 8000 when left out).
        target: Spanned<String> = "target",
        /// Weight, 0-65535 (default 100; 0 takes no traffic).
        weight: Option<Spanned<u32>> = "weight",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// Tags.
        tags: Vec<String> = "tags",
    }
}

decode_struct! {
    /// `healthchecks`.
    pub struct Healthchecks ("healthchecks") {
        /// Active probes.
        active: Option<ActiveChecks> = "active",
        /// Checks on proxied traffic.
        passive: Option<PassiveChecks> = "passive",
        /// Least healthy capacity, in percent, below which the upstream answers 503 (default 0).
        threshold: Option<f64> = "threshold",
    }
}

decode_struct! {
    /// `healthchecks.active`.
    pub struct ActiveChecks ("healthchecks.active") {
        /// `http` (default), `https`, `tcp`, `grpc`, `grpcs`.
        kind: Option<Spanned<String>> = "type",
        /// Probe timeout, seconds (default 1).
        timeout: Option<f64> = "timeout",
        /// Probes at once (default 10).
        concurrency: Option<u32> = "concurrency",
        /// Probe path (default `/`).
        http_path: Option<String> = "http_path",
        /// SNI of https probes.
        https_sni: Option<String> = "https_sni",
        /// Verify the certificate of https probes (default true).
        https_verify_certificate: Option<bool> = "https_verify_certificate",
        /// Headers of probes.
        headers: BTreeMap<String, Vec<String>> = "headers",
        /// When a target counts as healthy.
        healthy: Option<ActiveHealthy> = "healthy",
        /// When a target counts as unhealthy.
        unhealthy: Option<ActiveUnhealthy> = "unhealthy",
    }
}

decode_struct! {
    /// `healthchecks.active.healthy`.
    pub struct ActiveHealthy ("healthchecks.active.healthy") {
        /// Seconds between probes of healthy targets (0: none).
        interval: Option<f64> = "interval",
        /// Statuses that count as success (default 200, 302).
        http_statuses: Option<Vec<u16>> = "http_statuses",
        /// Successes that make a target healthy (0: never).
        successes: Option<u32> = "successes",
    }
}

decode_struct! {
    /// `healthchecks.active.unhealthy`.
    pub struct ActiveUnhealthy ("healthchecks.active.unhealthy") {
        /// Seconds between probes of unhealthy targets (0: none).
        interval: Option<f64> = "interval",
        /// Statuses that count as failure.
        http_statuses: Option<Vec<u16>> = "http_statuses",
        /// TCP failures that make a target unhealthy (0: never).
        tcp_failures: Option<u32> = "tcp_failures",
        /// Timeouts that make a target unhealthy (0: never).
        timeouts: Option<u32> = "timeouts",
        /// HTTP failures that make a target unhealthy (0: never).
        http_failures: Option<u32> = "http_failures",
    }
}

decode_struct! {
    /// `healthchecks.passive`.
    pub struct PassiveChecks ("healthchecks.passive") {
        /// `http` (default), `https`, `tcp`, `grpc`, `grpcs`.
        kind: Option<Spanned<String>> = "type",
        /// When proxied traffic counts as healthy.
        healthy: Option<PassiveHealthy> = "healthy",
        /// When proxied traffic counts as unhealthy.
        unhealthy: Option<PassiveUnhealthy> = "unhealthy",
    }
}

decode_struct! {
    /// `healthchecks.passive.healthy`.
    pub struct PassiveHealthy ("healthchecks.passive.healthy") {
        /// Statuses that count as success.
        http_statuses: Option<Vec<u16>> = "http_statuses",
        /// Successes that clear the failure counters (0: none do).
        successes: Option<u32> = "successes",
    }
}

decode_struct! {
    /// `healthchecks.passive.unhealthy`.
    pub struct PassiveUnhealthy ("healthchecks.passive.unhealthy") {
        /// Statuses that count as failure (default 429, 500, 503).
        http_statuses: Option<Vec<u16>> = "http_statuses",
        /// TCP failures that make a target unhealthy (0: never).
        tcp_failures: Option<u32> = "tcp_failures",
        /// Timeouts that make a target unhealthy (0: never).
        timeouts: Option<u32> = "timeouts",
        /// HTTP failures that make a target unhealthy (0: never).
        http_failures: Option<u32> = "http_failures",
    }
}

decode_struct! {
    /// A plugin: global, or on a service, route or consumer.
    pub struct KongPlugin ("Kong plugin") {
        /// The plugin's name (`rate-limiting`, `proxy-cache`, ...).
        name: Spanned<String> = "name",
        /// Its settings.
        config: Option<PluginConfig> = "config",
        /// Whether it runs (default true).
        enabled: Option<bool> = "enabled",
        /// The service it applies to (top-level plugins).
        service: Option<ServiceRef> = "service",
        /// The route it applies to (top-level plugins).
        route: Option<ServiceRef> = "route",
        /// The consumer it applies to (not supported).
        consumer: Option<ServiceRef> = "consumer",
        /// Protocols (parsed only).
        protocols: Vec<String> = "protocols",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// Instance name (parsed only).
        instance_name: Option<String> = "instance_name",
        /// Ordering (parsed only).
        ordering: Option<Opaque> = "ordering",
        /// Tags.
        tags: Vec<String> = "tags",
    }
}

/// A reference to another entity: its name (or id), written as a string or `{name: ...}` /
/// `{id: ...}`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct ServiceRef(pub Spanned<String>);

impl Decode for ServiceRef {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        if let Value::Map(_) = &node.value {
            let name = node.get("name").or_else(|| node.get("id"));
            return match name.and_then(|n| n.as_str()) {
                Some(text) => Some(ServiceRef(Spanned {
                    pos: node.pos,
                    value: text.to_owned(),
                })),
                None => {
                    cx.error(node.pos, "a reference needs `name` or `id`");
                    None
                }
            };
        }
        Spanned::<String>::decode(node, cx).map(ServiceRef)
    }
}

/// The seed's Kubernetes-style kinds carry an entity's fields in `spec` (a KongService's
/// are a service's, and so on); the name comes from `metadata.name`.
pub trait Named: Sized {
    /// The entity named `name` (its own `name` field, if any, is replaced).
    fn named(&self, name: Spanned<String>) -> Self;
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl Named for $t {
            fn named(&self, name: Spanned<String>) -> Self {
                let mut out = self.clone();
                out.name = Some(name);
                out
            }
        }
    )*};
}
named!(KongService, KongUpstream, KongRoute);

decode_struct! {
    /// A `KongPlugin` resource: its top-level `plugin` and `config`.
    pub struct KongPluginSpec ("KongPlugin") {
        /// The plugin's name.
        plugin: Spanned<String> = "plugin",
        /// Its settings.
        config: Option<PluginConfig> = "config",
        /// Whether it runs (default false means on; Kong's `disabled`).
        disabled: Option<bool> = "disabled",
        /// Protocols (parsed only).
        protocols: Vec<String> = "protocols",
    }
}

impl KongPluginSpec {
    /// The plugin as the declarative config writes it.
    pub fn plugin(&self) -> KongPlugin {
        KongPlugin {
            pos: self.pos,
            name: self.plugin.clone(),
            config: self.config.clone(),
            enabled: self.disabled.map(|d| !d),
            ..KongPlugin::default()
        }
    }
}

decode_struct! {
    /// Kong's `request-transformer` config (also weir's HTTPRoute extension
    /// `requestTransformer`, the same object).
    pub struct RequestTransformerConfig ("request-transformer config") {
        /// The method to send.
        http_method: Option<Spanned<String>> = "http_method",
        /// Names to remove.
        remove: Option<TransformOps> = "remove",
        /// `old:new` names.
        rename: Option<TransformOps> = "rename",
        /// `name:value` pairs replacing present ones (and `uri`).
        replace: Option<TransformOps> = "replace",
        /// `name:value` pairs added where absent.
        add: Option<TransformOps> = "add",
        /// `name:value` pairs appended.
        append: Option<TransformOps> = "append",
    }
}

decode_struct! {
    /// One `request-transformer` operation.
    pub struct TransformOps ("request-transformer operation") {
        /// Headers.
        headers: Vec<Spanned<String>> = "headers",
        /// Query parameters.
        querystring: Vec<Spanned<String>> = "querystring",
        /// Body parameters (not supported yet).
        body: Vec<Spanned<String>> = "body",
        /// JSON types of body parameters (not supported yet).
        json_types: Vec<String> = "json_types",
        /// The path to send (`replace` only).
        uri: Option<Spanned<String>> = "uri",
    }
}

decode_struct! {
    /// Kong's `proxy-cache` config (also weir's HTTPRoute extension `responseCache`).
    pub struct ProxyCacheConfig ("proxy-cache config") {
        /// Cacheable statuses (default 200, 301, 404).
        response_code: Option<Vec<u16>> = "response_code",
        /// Cacheable methods (default GET, HEAD).
        request_method: Option<Vec<String>> = "request_method",
        /// Cacheable content types (default text/plain, application/json).
        content_type: Option<Vec<String>> = "content_type",
        /// Seconds a response is served from the cache (default 300).
        cache_ttl: Option<u64> = "cache_ttl",
        /// `memory` (the only one).
        strategy: Option<Spanned<String>> = "strategy",
        /// Follow Cache-Control (RFC 9111, as Kong reads it).
        cache_control: Option<bool> = "cache_control",
        /// Compare paths without case.
        ignore_uri_case: Option<bool> = "ignore_uri_case",
        /// Seconds kept in store (parsed only: the stale-cache fallback keeps its own).
        storage_ttl: Option<u64> = "storage_ttl",
        /// Query parameters in the key (default: all).
        vary_query_params: Option<Vec<String>> = "vary_query_params",
        /// Headers in the key.
        vary_headers: Vec<String> = "vary_headers",
        /// Which cache headers to send.
        response_headers: Option<BTreeMap<String, bool>> = "response_headers",
        /// Memory settings (parsed only).
        memory: Option<Opaque> = "memory",
    }
}

/// A plugin's `config`: kept as written (to be decoded, with its positions, by the plugin that
/// reads it) and as JSON (for plugins read field by field, and for display).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct PluginConfig {
    /// Where it is written.
    #[serde(skip)]
    pub pos: super::yaml::Pos,
    /// As written.
    #[serde(skip)]
    pub node: Option<Node>,
    /// As JSON.
    pub json: serde_json::Value,
}

impl Decode for PluginConfig {
    fn decode(node: &Node, _cx: &mut Cx<'_>) -> Option<Self> {
        Some(PluginConfig {
            pos: node.pos,
            node: Some(node.clone()),
            json: node.to_json(),
        })
    }
}

/// Decodes a plugin's `config` as `T`, errors at their places in the file.
pub fn decode_config<T: Decode + Default>(
    config: Option<&PluginConfig>,
    file: &std::sync::Arc<str>,
    errors: &mut Vec<super::decode::ConfigError>,
) -> Option<T> {
    let Some(node) = config.and_then(|c| c.node.as_ref()) else {
        return Some(T::default());
    };
    let before = errors.len();
    let mut cx = Cx {
        file: file.clone(),
        errors,
    };
    let value = T::decode(node, &mut cx);
    value.filter(|_| errors.len() == before)
}

/// A secret as written (an API key, a password, an HMAC secret): read with its place, never
/// shown (`/config` and logs print `REDACTED`).
#[derive(Clone, Default, PartialEq)]
pub struct Secret(pub Spanned<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("REDACTED")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("REDACTED")
    }
}

impl Decode for Secret {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        Spanned::<String>::decode(node, cx).map(Secret)
    }
}

decode_struct! {
    /// A consumer: who a credential belongs to.
    pub struct KongConsumer ("Kong consumer") {
        /// Username (credentials and `anonymous` may name it).
        username: Option<Spanned<String>> = "username",
        /// An id of the user's own.
        custom_id: Option<String> = "custom_id",
        /// Id (a UUID; one is derived from the username when absent).
        id: Option<String> = "id",
        /// Tags (parsed only).
        tags: Vec<String> = "tags",
        /// When it was made (parsed only).
        created_at: Option<Opaque> = "created_at",
        /// Its API keys.
        keyauth_credentials: Vec<KeyAuthCredential> = "keyauth_credentials",
        /// Its usernames and passwords.
        basicauth_credentials: Vec<BasicAuthCredential> = "basicauth_credentials",
        /// Its JWT signing keys.
        jwt_secrets: Vec<JwtSecretCredential> = "jwt_secrets",
        /// Its ACL groups.
        acls: Vec<AclGroup> = "acls",
        /// Plugins scoped to it (refused: weir runs plugins per route, service or globally).
        plugins: Option<Spanned<Opaque>> = "plugins",
    }
}

decode_struct! {
    /// A key-auth credential.
    pub struct KeyAuthCredential ("keyauth credential") {
        /// The key.
        key: Secret = "key",
        /// Id (the `X-Credential-Identifier`; the key's consumer and position when absent).
        id: Option<String> = "id",
        /// Its consumer (top-level credentials).
        consumer: Option<ServiceRef> = "consumer",
        /// Tags (parsed only).
        tags: Vec<String> = "tags",
        /// Time to live (parsed only).
        ttl: Option<Opaque> = "ttl",
        /// When it was made (parsed only).
        created_at: Option<Opaque> = "created_at",
    }
}

decode_struct! {
    /// A basic-auth credential.
    pub struct BasicAuthCredential ("basicauth credential") {
        /// Username.
        username: Spanned<String> = "username",
        /// Password.
        password: Secret = "password",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// Its consumer (top-level credentials).
        consumer: Option<ServiceRef> = "consumer",
        /// Tags (parsed only).
        tags: Vec<String> = "tags",
        /// When it was made (parsed only).
        created_at: Option<Opaque> = "created_at",
    }
}

decode_struct! {
    /// A jwt secret.
    pub struct JwtSecretCredential ("jwt secret") {
        /// The value of the key claim (`iss`) it is for.
        key: Option<Spanned<String>> = "key",
        /// The HMAC secret (HS*).
        secret: Option<Secret> = "secret",
        /// The algorithm (default HS256).
        algorithm: Option<Spanned<String>> = "algorithm",
        /// The public key, PEM (RS*, PS*, ES*, EdDSA).
        rsa_public_key: Option<Spanned<String>> = "rsa_public_key",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// Its consumer (top-level credentials).
        consumer: Option<ServiceRef> = "consumer",
        /// Tags (parsed only).
        tags: Vec<String> = "tags",
        /// When it was made (parsed only).
        created_at: Option<Opaque> = "created_at",
    }
}

decode_struct! {
    /// An ACL group membership.
    pub struct AclGroup ("acl") {
        /// The group.
        group: Spanned<String> = "group",
        /// Id (parsed only).
        id: Option<String> = "id",
        /// Its consumer (top-level memberships).
        consumer: Option<ServiceRef> = "consumer",
        /// Tags (parsed only).
        tags: Vec<String> = "tags",
        /// When it was made (parsed only).
        created_at: Option<Opaque> = "created_at",
    }
}

decode_struct! {
    /// `key-auth`'s config.
    pub struct KeyAuthConfig ("key-auth config") {
        /// Header and parameter names the key is looked for under (default `apikey`).
        key_names: Option<Vec<Spanned<String>>> = "key_names",
        /// Look in headers (default true).
        key_in_header: Option<bool> = "key_in_header",
        /// Look in the query (default true).
        key_in_query: Option<bool> = "key_in_query",
        /// Look in the body (refused when true: weir does not buffer bodies to authenticate).
        key_in_body: Option<bool> = "key_in_body",
        /// Remove the key before proxying (default false).
        hide_credentials: Option<bool> = "hide_credentials",
        /// The consumer (id or username) a request without a valid key becomes.
        anonymous: Option<Spanned<String>> = "anonymous",
        /// Authenticate CORS preflights too (default true).
        run_on_preflight: Option<bool> = "run_on_preflight",
        /// Realm (parsed only).
        realm: Option<String> = "realm",
    }
}

decode_struct! {
    /// `basic-auth`'s config.
    pub struct BasicAuthConfig ("basic-auth config") {
        /// The consumer (id or username) a request without valid credentials becomes.
        anonymous: Option<Spanned<String>> = "anonymous",
        /// Remove the credentials before proxying (default false).
        hide_credentials: Option<bool> = "hide_credentials",
        /// `WWW-Authenticate` realm (default `service`).
        realm: Option<String> = "realm",
    }
}

decode_struct! {
    /// `jwt`'s config.
    pub struct JwtPluginConfig ("jwt config") {
        /// Query parameters a token may be in (default `jwt`).
        uri_param_names: Option<Vec<String>> = "uri_param_names",
        /// Cookies a token may be in.
        cookie_names: Vec<String> = "cookie_names",
        /// Headers a token may be in (default `authorization`).
        header_names: Option<Vec<Spanned<String>>> = "header_names",
        /// Claims checked: `exp`, `nbf`.
        claims_to_verify: Vec<Spanned<String>> = "claims_to_verify",
        /// The claim naming the credential (default `iss`).
        key_claim_name: Option<String> = "key_claim_name",
        /// Secrets are base64 (default false).
        secret_is_base64: Option<bool> = "secret_is_base64",
        /// The consumer (id or username) a request without a valid token becomes.
        anonymous: Option<Spanned<String>> = "anonymous",
        /// Authenticate CORS preflights too (default true).
        run_on_preflight: Option<bool> = "run_on_preflight",
        /// Longest life left a token may have, seconds (default 0: any).
        maximum_expiration: Option<u64> = "maximum_expiration",
        /// Realm (parsed only).
        realm: Option<String> = "realm",
    }
}

decode_struct! {
    /// `acl`'s config.
    pub struct AclConfig ("acl config") {
        /// Groups allowed.
        allow: Vec<String> = "allow",
        /// Groups refused.
        deny: Vec<String> = "deny",
        /// Do not send `X-Consumer-Groups` (default false).
        hide_groups_header: Option<bool> = "hide_groups_header",
        /// Consumer groups (parsed only).
        include_consumer_groups: Option<bool> = "include_consumer_groups",
        /// Parsed only.
        always_use_authenticated_groups: Option<bool> = "always_use_authenticated_groups",
    }
}

decode_struct! {
    /// `ip-restriction`'s config.
    pub struct IpRestrictionConfig ("ip-restriction config") {
        /// Addresses allowed (IPs or CIDRs).
        allow: Vec<Spanned<String>> = "allow",
        /// Addresses refused.
        deny: Vec<Spanned<String>> = "deny",
        /// Status of a refusal (default 403).
        status: Option<Spanned<u16>> = "status",
        /// Message of a refusal (default `Your IP address is not allowed`).
        message: Option<String> = "message",
    }
}
