//! Kong's resources as the Istio resources weir runs (ARCHITECTURE.md: one internal model).
//!
//! - An upstream becomes a ServiceEntry (its targets the endpoints, with their weights; weight
//!   0 leaves a target out) and a DestinationRule (the algorithm, the service's connect
//!   timeout, TLS for `https` services).
//! - A service whose `host` is not an upstream becomes a ServiceEntry for that host (unless
//!   the config declares one) and, when needed, a DestinationRule.
//! - Routes become VirtualService rules, ordered as Kong's router orders them (not first
//!   match): more kinds of conditions first (methods, hosts, headers, paths), then plain hosts
//!   over wildcards, more headers, regex paths over prefixes, higher `regex_priority`, longer
//!   prefixes, and then the order they were written in. A route with paths of different kinds
//!   or lengths is ranked once per kind and length, as Kong splits it. One VirtualService per
//!   host names the routes that can match it, on the main listener; routes without hosts
//!   also serve every other host (`*`).
//! - `strip_path` and the service's `path` become a rewrite, `preserve_host: false` an
//!   authority rewrite to the service's host, `retries` a retry policy on transport failures
//!   only (Kong never retries a response); `connect_timeout`, `read_timeout` and
//!   `write_timeout` the connection pool's timeouts (the last two between two reads or writes).
//!
//! Generated resources carry the Kong entity's file and position, and the annotation
//! `weir.io/generated-by: Kong/NAME`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::decode::{ConfigError, Dur, Spanned};
use super::generate::GENERATED_BY;
use super::istio::{
    CircuitBreakerSettings, ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings,
    ConsistentHashLb, CorsPolicy, Destination, DestinationRule, HeaderOperations, Headers,
    HttpBody, HttpCookie, HttpDirectResponse, HttpMatchRequest, HttpRetry, HttpRewrite, HttpRoute,
    HttpRouteDestination, LoadBalancerSettings, PortSelector, RateLimitSettings, RegexRewrite,
    Resolution, RingHash, ServiceEntry, ServicePort, SimpleLb, StringMatch, TcpSettings,
    TrafficPolicy, UnmatchedPreflights, VirtualService, WorkloadEntry,
};
use super::kong::{
    KongPlugin, KongRoute, KongService, KongUpstream, Named, ProxyCacheConfig,
    RequestTransformerConfig, decode_config,
};
use super::yaml::Pos;
use super::{Metadata, Resource, ResourceSet, Spec};

/// The annotation's value prefix on resources made from Kong's.
pub const KONG_PREFIX: &str = "Kong/";

/// The KongPlugin names a Kubernetes-style Kong resource lists.
const PLUGINS_ANNOTATION: &str = "konghq.com/plugins";

/// Plugins weir knows. `prometheus` is accepted as is (weir's metrics are always on).
const KNOWN_PLUGINS: &[&str] = &[
    "rate-limiting",
    "proxy-cache",
    "request-termination",
    "request-transformer",
    "cors",
    "prometheus",
    "circuit-breaker",
];

/// Plugins weir runs today.
const RUN_PLUGINS: &[&str] = &[
    "prometheus",
    "circuit-breaker",
    "request-termination",
    "rate-limiting",
    "cors",
    "request-transformer",
    "proxy-cache",
];

/// Kong's defaults.
const DEFAULT_RETRIES: u32 = 5;
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Kong's largest timeout.
const MAX_TIMEOUT_MS: u64 = 2_147_483_646;
const DEFAULT_TARGET_PORT: u16 = 8000;
const DEFAULT_WEIGHT: u32 = 100;

/// A Kong entity's place, for errors and for the resources made from it.
#[derive(Clone)]
struct At {
    file: Arc<str>,
    pos: Pos,
}

struct Service {
    name: String,
    at: At,
    spec: KongService,
    plugins: Vec<(At, KongPlugin)>,
}

struct Route {
    at: At,
    spec: KongRoute,
    service: String,
    plugins: Vec<(At, KongPlugin)>,
}

struct Upstream {
    at: At,
    spec: KongUpstream,
}

/// Everything Kong in a set.
#[derive(Default)]
struct Kong {
    services: Vec<Service>,
    routes: Vec<Route>,
    upstreams: Vec<Upstream>,
    /// Global plugins, and top-level ones naming a service or route.
    plugins: Vec<(At, KongPlugin)>,
}

struct Errors<'e>(&'e mut Vec<ConfigError>);

impl Errors<'_> {
    fn at(&mut self, at: &At, pos: Pos, message: impl Into<String>) {
        self.0.push(ConfigError {
            file: at.file.clone(),
            pos,
            message: message.into(),
        });
    }
}

/// Adds the Istio resources for every Kong resource of `set`; problems go to `errors`.
pub fn translate(set: &mut ResourceSet, errors: &mut Vec<ConfigError>) {
    let mut e = Errors(errors);
    let kong = collect(set, &mut e);
    if kong.services.is_empty() && kong.routes.is_empty() && kong.upstreams.is_empty() {
        return;
    }
    let generated = generate(&kong, set, &mut e);
    set.resources.extend(generated);
}

fn collect(set: &ResourceSet, e: &mut Errors<'_>) -> Kong {
    let mut kong = Kong::default();
    // KongPlugin resources by name, for the `konghq.com/plugins` annotations.
    let mut named_plugins: HashMap<&str, (At, KongPlugin)> = HashMap::new();
    for r in &set.resources {
        if let Spec::KongPlugin(p) = &r.spec {
            let at = At {
                file: r.file.clone(),
                pos: r.pos,
            };
            named_plugins.insert(r.name(), (at, p.plugin()));
        }
    }
    let annotated = |r: &Resource, e: &mut Errors<'_>| -> Vec<(At, KongPlugin)> {
        let Some(list) = r.metadata.annotations.get(PLUGINS_ANNOTATION) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match named_plugins.get(name) {
                Some(p) => out.push(p.clone()),
                None => e.at(
                    &At {
                        file: r.file.clone(),
                        pos: r.pos,
                    },
                    r.metadata.pos,
                    format!("{PLUGINS_ANNOTATION}: no KongPlugin named `{name}`"),
                ),
            }
        }
        out
    };
    // KongServices: one with a spec, perhaps others of the same name adding plugins only.
    let mut overlays: Vec<(String, Vec<(At, KongPlugin)>)> = Vec::new();
    for r in &set.resources {
        let at = At {
            file: r.file.clone(),
            pos: r.pos,
        };
        let name = || Spanned {
            pos: r.metadata.name.as_ref().map_or(r.pos, |n| n.pos),
            value: r.name().to_owned(),
        };
        match &r.spec {
            Spec::Kong(cfg) => {
                let version = match &cfg.format_version.value.0 {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !matches!(version.as_str(), "1.1" | "2.1" | "3.0") {
                    e.at(
                        &at,
                        cfg.format_version.pos,
                        format!("_format_version {version}: weir reads 1.1, 2.1 and 3.0"),
                    );
                }
                for s in &cfg.services {
                    let Some(name) = s.name.as_ref().map(|n| n.value.clone()) else {
                        e.at(&at, s.pos, "a service needs a name");
                        continue;
                    };
                    for route in &s.routes {
                        kong.routes.push(Route {
                            at: At {
                                file: r.file.clone(),
                                pos: route.pos,
                            },
                            spec: route.clone(),
                            service: name.clone(),
                            plugins: with_at(&r.file, &route.plugins),
                        });
                    }
                    kong.services.push(Service {
                        name,
                        at: At {
                            file: r.file.clone(),
                            pos: s.pos,
                        },
                        spec: s.clone(),
                        plugins: with_at(&r.file, &s.plugins),
                    });
                }
                for route in &cfg.routes {
                    let Some(service) = &route.service else {
                        e.at(&at, route.pos, "a top-level route needs `service`");
                        continue;
                    };
                    kong.routes.push(Route {
                        at: At {
                            file: r.file.clone(),
                            pos: route.pos,
                        },
                        spec: route.clone(),
                        service: service.0.value.clone(),
                        plugins: with_at(&r.file, &route.plugins),
                    });
                }
                for u in &cfg.upstreams {
                    kong.upstreams.push(Upstream {
                        at: At {
                            file: r.file.clone(),
                            pos: u.pos,
                        },
                        spec: u.clone(),
                    });
                }
                kong.plugins.extend(with_at(&r.file, &cfg.plugins));
            }
            Spec::KongService(spec) => {
                let plugins = annotated(r, e);
                match spec {
                    Some(spec) => kong.services.push(Service {
                        name: r.name().to_owned(),
                        at,
                        spec: spec.named(name()),
                        plugins,
                    }),
                    None => overlays.push((r.name().to_owned(), plugins)),
                }
            }
            Spec::KongUpstream(spec) => kong.upstreams.push(Upstream {
                at,
                spec: spec.named(name()),
            }),
            Spec::KongRoute(spec) => {
                let Some(service) = &spec.service else {
                    e.at(&at, spec.pos, "a KongRoute needs `service`");
                    continue;
                };
                kong.routes.push(Route {
                    at,
                    spec: spec.named(name()),
                    service: service.0.value.clone(),
                    plugins: annotated(r, e),
                });
            }
            _ => {}
        }
    }
    // Top-level plugins that name a service or route go to it; the rest are global.
    for (at, p) in std::mem::take(&mut kong.plugins) {
        let target = |r: &Option<super::kong::ServiceRef>| r.as_ref().map(|x| x.0.value.clone());
        if let Some(name) = target(&p.service) {
            match kong.services.iter_mut().find(|s| s.name == name) {
                Some(s) => s.plugins.push((at, p)),
                None => e.at(
                    &at,
                    p.pos,
                    format!("plugin `{}`: no service named `{name}`", p.name.value),
                ),
            }
        } else if let Some(name) = target(&p.route) {
            let found = kong
                .routes
                .iter_mut()
                .find(|r| r.spec.name.as_ref().is_some_and(|n| n.value == name));
            match found {
                Some(r) => r.plugins.push((at, p)),
                None => e.at(
                    &at,
                    p.pos,
                    format!("plugin `{}`: no route named `{name}`", p.name.value),
                ),
            }
        } else {
            kong.plugins.push((at, p));
        }
    }
    for (name, plugins) in overlays {
        match kong.services.iter_mut().find(|s| s.name == name) {
            Some(s) => s.plugins.extend(plugins),
            None => {
                if let Some(r) = set
                    .resources
                    .iter()
                    .find(|r| matches!(r.spec, Spec::KongService(None)) && r.name() == name)
                {
                    e.at(
                        &At {
                            file: r.file.clone(),
                            pos: r.pos,
                        },
                        r.pos,
                        format!(
                            "KongService `{name}` has no spec, and no other KongService `{name}` gives one (host, port)"
                        ),
                    );
                }
            }
        }
    }
    kong
}

fn with_at(file: &Arc<str>, plugins: &[KongPlugin]) -> Vec<(At, KongPlugin)> {
    plugins
        .iter()
        .map(|p| {
            (
                At {
                    file: file.clone(),
                    pos: p.pos,
                },
                p.clone(),
            )
        })
        .collect()
}

/// Where a service sends requests.
struct Target {
    protocol: String,
    /// The host routes send to (an upstream's name, or the service's host).
    host: String,
    port: u16,
    path: Option<String>,
    /// Whether `host` names an upstream (whose targets carry their ports).
    upstream: bool,
}

fn target_of(s: &Service, e: &mut Errors<'_>) -> Option<Target> {
    let spec = &s.spec;
    for (name, t) in [
        ("connect_timeout", &spec.connect_timeout),
        ("read_timeout", &spec.read_timeout),
        ("write_timeout", &spec.write_timeout),
    ] {
        if let Some(t) = t
            && !(1..=MAX_TIMEOUT_MS).contains(&t.value)
        {
            e.at(
                &s.at,
                t.pos,
                format!(
                    "{name} {} is not between 1 and {MAX_TIMEOUT_MS} ms",
                    t.value
                ),
            );
        }
    }
    let (mut protocol, mut host, mut port, mut path) = (None, None, None, None);
    if let Some(url) = &spec.url {
        match url.value.parse::<http::Uri>() {
            Ok(u) if u.host().is_some() => {
                protocol = u.scheme_str().map(str::to_owned);
                host = u.host().map(|h| h.trim_matches(['[', ']']).to_owned());
                port = u.port_u16();
                path = Some(u.path().to_owned()).filter(|p| !p.is_empty());
            }
            _ => {
                e.at(&s.at, url.pos, format!("`{}` is not a URL", url.value));
                return None;
            }
        }
    }
    let protocol = spec
        .protocol
        .as_ref()
        .map(|p| p.value.clone())
        .or(protocol)
        .unwrap_or_else(|| "http".to_owned());
    if !matches!(protocol.as_str(), "http" | "https") {
        let at = spec.protocol.as_ref().map_or(s.at.pos, |p| p.pos);
        e.at(
            &s.at,
            at,
            format!("service protocol {protocol}: weir proxies http and https services"),
        );
        return None;
    }
    let Some(host) = spec.host.as_ref().map(|h| h.value.clone()).or(host) else {
        e.at(
            &s.at,
            s.at.pos,
            format!("service `{}` needs `host` or `url`", s.name),
        );
        return None;
    };
    let default_port = if protocol == "https" { 443 } else { 80 };
    let port = spec.port.or(port).unwrap_or(default_port);
    let path = spec.path.as_ref().map(|p| p.value.clone()).or(path);
    if let Some(p) = &path
        && !p.starts_with('/')
    {
        e.at(
            &s.at,
            s.at.pos,
            format!("service path `{p}` must start with /"),
        );
        return None;
    }
    Some(Target {
        protocol,
        host: host.to_ascii_lowercase(),
        port,
        path,
        upstream: false,
    })
}

fn meta(at: &At, name: String, from: &str) -> Metadata {
    Metadata {
        pos: at.pos,
        name: Some(Spanned {
            pos: at.pos,
            value: name,
        }),
        annotations: [(GENERATED_BY.to_owned(), format!("{KONG_PREFIX}{from}"))].into(),
        ..Metadata::default()
    }
}

fn resource(at: &At, metadata: Metadata, spec: Spec) -> Resource {
    Resource {
        file: at.file.clone(),
        pos: at.pos,
        api_version: "networking.istio.io/v1".to_owned(),
        kind: spec.kind(),
        metadata,
        spec,
    }
}

/// A name usable as a resource name.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            '*' => 'x',
            _ => '-',
        })
        .collect()
}

fn generate(kong: &Kong, set: &ResourceSet, e: &mut Errors<'_>) -> Vec<Resource> {
    let mut out = Vec::new();
    check_plugins(kong, e);
    let declared = |host: &str| {
        set.resources.iter().any(|r| match &r.spec {
            Spec::ServiceEntry(se) => se.hosts.iter().any(|h| h.value == host),
            _ => false,
        })
    };
    let upstreams: HashMap<String, &Upstream> = kong
        .upstreams
        .iter()
        .filter_map(|u| Some((u.spec.name.as_ref()?.value.to_ascii_lowercase(), u)))
        .collect();
    let mut targets: HashMap<&str, Target> = HashMap::new();
    let mut first_of: Vec<(String, &Service)> = Vec::new();
    for s in &kong.services {
        if targets.contains_key(s.name.as_str()) {
            e.at(&s.at, s.at.pos, format!("duplicate service `{}`", s.name));
            continue;
        }
        let Some(mut t) = target_of(s, e) else {
            continue;
        };
        t.upstream = upstreams.contains_key(&t.host);
        if !first_of.iter().any(|(h, _)| *h == t.host) {
            first_of.push((t.host.clone(), s));
        }
        targets.insert(&s.name, t);
    }
    // Each service's circuit breaker (its own plugin, else a global one), read once.
    let breakers: HashMap<&str, (CircuitBreakerSettings, Option<Duration>)> = kong
        .services
        .iter()
        .filter_map(|s| {
            Some((
                s.name.as_str(),
                breaker_settings(breaker_plugin(kong, s)?, e),
            ))
        })
        .collect();
    for (host, s) in &first_of {
        let t = &targets[s.name.as_str()];
        let breaker = targets
            .iter()
            .filter(|(_, ot)| ot.host == *host)
            .find_map(|(name, _)| breakers.get(name))
            .map(|b| b.0.clone());
        if let Some(u) = upstreams.get(host) {
            upstream_resources(u, s, t, breaker, &mut out, e);
        } else if declared(host) {
            if breaker.is_some() {
                e.at(&s.at, s.at.pos, format!("circuit-breaker on `{host}`: its ServiceEntry is the config's own; put circuitBreaker in its DestinationRule"));
            }
        } else {
            // Every port the services of this host use.
            let mut ports: Vec<u16> = targets
                .values()
                .filter(|o| o.host == *host)
                .map(|o| o.port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            host_resources(s, t, &ports, breaker, &mut out);
        }
    }
    for u in &kong.upstreams {
        let name = u.spec.name.as_ref().map(|n| n.value.to_ascii_lowercase());
        match name {
            None => e.at(&u.at, u.at.pos, "an upstream needs a name"),
            Some(n) if !first_of.iter().any(|(h, _)| *h == n) => {
                // Used by no service: still checked.
                let mut scratch = Vec::new();
                let t = Target {
                    protocol: "http".into(),
                    host: n,
                    port: 80,
                    path: None,
                    upstream: true,
                };
                let s = Service {
                    name: String::new(),
                    at: u.at.clone(),
                    spec: KongService::default(),
                    plugins: Vec::new(),
                };
                upstream_resources(u, &s, &t, None, &mut scratch, e);
            }
            Some(_) => {}
        }
    }
    out.extend(virtual_services(kong, &targets, &breakers, e));
    out
}

/// The enabled plugin `name` that applies to a route: its own, else its service's, else a
/// global one (Kong's precedence).
fn plugin_for<'k>(
    kong: &'k Kong,
    service: Option<&'k Service>,
    route: &'k Route,
    name: &str,
) -> Option<&'k (At, KongPlugin)> {
    let on = |(_, p): &&(At, KongPlugin)| p.name.value == name && p.enabled != Some(false);
    route
        .plugins
        .iter()
        .find(on)
        .or_else(|| service.and_then(|s| s.plugins.iter().find(on)))
        .or_else(|| kong.plugins.iter().find(on))
}

/// A plugin's config as a JSON object (empty when absent), and where it is written; a field
/// not in `known` is reported.
fn config_of<'p>(
    (at, p): &'p (At, KongPlugin),
    known: &[&str],
    e: &mut Errors<'_>,
) -> (Pos, &'p serde_json::Map<String, serde_json::Value>) {
    static EMPTY: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
        std::sync::LazyLock::new(serde_json::Map::new);
    let pos = p.config.as_ref().map_or(p.pos, |c| c.pos);
    let config = p
        .config
        .as_ref()
        .and_then(|c| c.json.as_object())
        .unwrap_or(&EMPTY);
    for key in config.keys().filter(|k| !known.contains(&k.as_str())) {
        e.at(
            at,
            pos,
            format!(
                "{}: unknown field `{key}` (expected {})",
                p.name.value,
                known.join(", ")
            ),
        );
    }
    (pos, config)
}

/// Kong's `rate-limiting` (local policy) as weir's `rateLimit`, counting under `scope`.
fn rate_limit(
    plugin: &(At, KongPlugin),
    scope: String,
    e: &mut Errors<'_>,
) -> Option<RateLimitSettings> {
    let (at, p) = plugin;
    const KEYS: [&str; 20] = [
        "second",
        "minute",
        "hour",
        "day",
        "month",
        "year",
        "limit_by",
        "header_name",
        "path",
        "policy",
        "fault_tolerant",
        "hide_client_headers",
        "error_code",
        "error_message",
        "sync_rate",
        "redis",
        "redis_host",
        "redis_port",
        "redis_timeout",
        "redis_database",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(policy) = text("policy")
        && policy != "local"
    {
        e.at(
            at,
            pos,
            format!("rate-limiting: policy {policy} is not supported (weir counts locally: policy local)"),
        );
        return None;
    }
    let mut count = |key: &str| match config.get(key) {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                e.at(
                    at,
                    pos,
                    format!("rate-limiting: {key} must be a whole number above 0"),
                );
                None
            }
        },
    };
    let settings = RateLimitSettings {
        pos: p.pos,
        second: count("second"),
        minute: count("minute"),
        hour: count("hour"),
        day: count("day"),
        month: count("month"),
        year: count("year"),
        limit_by: Some(Spanned {
            pos,
            value: text("limit_by").unwrap_or_else(|| "consumer".to_owned()),
        }),
        header_name: text("header_name"),
        path: text("path"),
        hide_client_headers: config.get("hide_client_headers").and_then(|v| v.as_bool()),
        error_code: config
            .get("error_code")
            .and_then(|v| v.as_u64())
            .map(|c| c as u16),
        error_message: text("error_message"),
        scope: Some(scope),
    };
    Some(settings)
}

/// Kong's `cors` as Istio's `corsPolicy`.
fn cors(plugin: &(At, KongPlugin), e: &mut Errors<'_>) -> Option<CorsPolicy> {
    let (at, p) = plugin;
    const KEYS: [&str; 9] = [
        "origins",
        "methods",
        "headers",
        "exposed_headers",
        "credentials",
        "max_age",
        "preflight_continue",
        "private_network",
        "allow_origin_absent",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let list = |key: &str| -> Vec<String> {
        config
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let flag = |key: &str| config.get(key).and_then(|v| v.as_bool()) == Some(true);
    if flag("private_network") {
        e.at(at, pos, "cors: private_network is not supported yet");
        return None;
    }
    let mut origins = list("origins");
    if origins.is_empty() {
        origins.push("*".to_owned());
    }
    let allow_origins = origins
        .iter()
        .map(|o| {
            if o == "*" {
                StringMatch::Regex(Spanned {
                    pos,
                    value: ".*".to_owned(),
                })
            } else if o.chars().any(|c| "^$*+?()[]{}|\\".contains(c)) {
                // Kong tests a regex without `:` against the origin's host alone.
                let value = if o.contains(':') {
                    o.clone()
                } else {
                    format!("[a-zA-Z][a-zA-Z0-9+.-]*://(?:{o})(?::[0-9]+)?")
                };
                StringMatch::Regex(Spanned { pos, value })
            } else {
                StringMatch::Exact(o.clone())
            }
        })
        .collect();
    let mut methods = list("methods");
    if methods.is_empty() {
        methods = [
            "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    Some(CorsPolicy {
        pos: p.pos,
        allow_origins,
        allow_methods: methods,
        allow_headers: list("headers"),
        expose_headers: list("exposed_headers"),
        max_age: config
            .get("max_age")
            .and_then(|v| v.as_f64())
            .map(|s| Dur(Duration::from_secs_f64(s.max(0.0)))),
        allow_credentials: Some(flag("credentials")),
        // Kong answers every preflight; one from an origin not allowed gets no origin header.
        unmatched_preflights: Some(UnmatchedPreflights::Ignore),
        mirror_request_headers: Some(true),
        forward_preflights: Some(flag("preflight_continue")),
        ..CorsPolicy::default()
    })
}

/// Kong's `request-termination`: a fixed answer instead of the upstream's.
struct Termination {
    status: u32,
    body: String,
    content_type: String,
    /// Only requests with this header are answered.
    trigger: Option<String>,
}

impl Termination {
    fn apply(&self, mut rule: HttpRoute) -> HttpRoute {
        rule.route.clear();
        rule.rewrite = None;
        rule.retries = None;
        rule.timeout = None;
        rule.direct_response = Some(HttpDirectResponse {
            pos: rule.pos,
            status: self.status,
            body: Some(HttpBody {
                pos: rule.pos,
                string: Some(self.body.clone()),
                ..HttpBody::default()
            }),
        });
        rule.headers = Some(Headers {
            pos: rule.pos,
            response: Some(HeaderOperations {
                pos: rule.pos,
                set: [("content-type".to_owned(), self.content_type.clone())].into(),
                ..HeaderOperations::default()
            }),
            ..Headers::default()
        });
        rule
    }
}

fn termination(plugin: &(At, KongPlugin), e: &mut Errors<'_>) -> Option<Termination> {
    let at = &plugin.0;
    const KEYS: [&str; 6] = [
        "status_code",
        "message",
        "body",
        "content_type",
        "trigger",
        "echo",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    if config.get("echo").and_then(|v| v.as_bool()) == Some(true) {
        e.at(at, pos, "request-termination: echo is not supported yet");
        return None;
    }
    let status = config.get("status_code").map_or(Some(503), |v| v.as_u64());
    let Some(status) = status.filter(|s| (100..=599).contains(s)) else {
        e.at(
            at,
            pos,
            "request-termination: status_code must be between 100 and 599",
        );
        return None;
    };
    if text("message").is_some() && text("body").is_some() {
        e.at(
            at,
            pos,
            "request-termination: give message or body, not both",
        );
        return None;
    }
    let (body, content_type) = match (text("body"), text("message")) {
        (Some(body), _) => (
            body,
            text("content_type").unwrap_or_else(|| "application/json; charset=utf-8".to_owned()),
        ),
        (None, message) => {
            // Without a message, the status's reason phrase.
            let message = message.unwrap_or_else(|| {
                http::StatusCode::from_u16(status as u16)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Service unavailable")
                    .to_owned()
            });
            (
                serde_json::json!({ "message": message }).to_string(),
                "application/json; charset=utf-8".to_owned(),
            )
        }
    };
    Some(Termination {
        status: status as u32,
        body,
        content_type,
        trigger: text("trigger").map(|t| t.to_ascii_lowercase()),
    })
}

/// The `circuit-breaker` plugin that applies to a service: its own, else a global one.
fn breaker_plugin<'k>(kong: &'k Kong, s: &'k Service) -> Option<&'k (At, KongPlugin)> {
    let on =
        |(_, p): &&(At, KongPlugin)| p.name.value == "circuit-breaker" && p.enabled != Some(false);
    s.plugins
        .iter()
        .find(on)
        .or_else(|| kong.plugins.iter().find(on))
}

/// The seed's `circuit-breaker` config (seconds): the DestinationRule extension, and the
/// request timeout (`timeout`).
fn breaker_settings(
    plugin: &(At, KongPlugin),
    e: &mut Errors<'_>,
) -> (CircuitBreakerSettings, Option<Duration>) {
    let (at, p) = plugin;
    const KEYS: [&str; 5] = [
        "failure_threshold",
        "window_size",
        "timeout",
        "recovery_timeout",
        "half_open_requests",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let mut number = |key: &str, default: f64| -> f64 {
        match config.get(key) {
            None => default,
            Some(v) => match v.as_f64() {
                Some(n) if n > 0.0 => n,
                _ => {
                    e.at(
                        at,
                        pos,
                        format!("circuit-breaker: {key} must be a number above 0"),
                    );
                    default
                }
            },
        }
    };
    let settings = CircuitBreakerSettings {
        pos: p.pos,
        failure_threshold: Some(number("failure_threshold", 5.0) as u32),
        window_size: Some(Dur(Duration::from_secs_f64(number("window_size", 60.0)))),
        recovery_timeout: Some(Dur(Duration::from_secs_f64(number(
            "recovery_timeout",
            60.0,
        )))),
        half_open_requests: Some(number("half_open_requests", 1.0) as u32),
    };
    let timeout = config
        .get("timeout")
        .map(|_| Duration::from_secs_f64(number("timeout", 30.0)));
    (settings, timeout)
}

fn check_plugins(kong: &Kong, e: &mut Errors<'_>) {
    for (at, p) in kong.routes.iter().flat_map(|r| &r.plugins) {
        if p.name.value == "circuit-breaker" {
            e.at(
                at,
                p.name.pos,
                "circuit-breaker applies to a service (or to all), not to a route",
            );
        }
    }
    let all = kong
        .plugins
        .iter()
        .chain(kong.services.iter().flat_map(|s| &s.plugins))
        .chain(kong.routes.iter().flat_map(|r| &r.plugins));
    for (at, p) in all {
        let name = p.name.value.as_str();
        if !KNOWN_PLUGINS.contains(&name) {
            e.at(
                at,
                p.name.pos,
                format!(
                    "unknown plugin `{name}`: weir runs {}",
                    KNOWN_PLUGINS.join(", ")
                ),
            );
        } else if !RUN_PLUGINS.contains(&name) && p.enabled != Some(false) {
            e.at(
                at,
                p.name.pos,
                format!("plugin `{name}` is not supported yet"),
            );
        }
    }
}

/// A ServiceEntry and DestinationRule for an upstream.
fn upstream_resources(
    u: &Upstream,
    s: &Service,
    t: &Target,
    breaker: Option<CircuitBreakerSettings>,
    out: &mut Vec<Resource>,
    e: &mut Errors<'_>,
) {
    let spec = &u.spec;
    let mut endpoints = Vec::new();
    let mut dns = false;
    let mut seen: Vec<(String, u16)> = Vec::new();
    for target in &spec.targets {
        let Some((host, port)) = split_target(&target.target.value) else {
            e.at(
                &u.at,
                target.target.pos,
                format!("target `{}` is not host:port", target.target.value),
            );
            continue;
        };
        let weight = target.weight.as_ref().map_or(DEFAULT_WEIGHT, |w| w.value);
        if weight > 65_535 {
            let pos = target.weight.as_ref().map_or(target.pos, |w| w.pos);
            e.at(
                &u.at,
                pos,
                format!("weight {weight} is not between 0 and 65535"),
            );
            continue;
        }
        if seen.contains(&(host.clone(), port)) {
            e.at(
                &u.at,
                target.target.pos,
                format!("duplicate target `{}`", target.target.value),
            );
            continue;
        }
        seen.push((host.clone(), port));
        if weight == 0 {
            // Kong: a target of weight 0 takes no traffic.
            continue;
        }
        dns |= host.parse::<IpAddr>().is_err();
        endpoints.push(WorkloadEntry {
            pos: target.pos,
            address: Spanned {
                pos: target.target.pos,
                value: host,
            },
            ports: [("http-80".to_owned(), u32::from(port))].into(),
            weight: Some(weight),
            ..WorkloadEntry::default()
        });
    }
    let name = spec.name.as_ref().map_or("", |n| n.value.as_str());
    let se = ServiceEntry {
        pos: u.at.pos,
        hosts: vec![Spanned {
            pos: u.at.pos,
            value: t.host.clone(),
        }],
        // One port: the targets carry their own.
        ports: vec![service_port(80)],
        // Without endpoints (every weight 0) nothing is resolved: "no healthy upstream".
        resolution: Some(if dns {
            Resolution::Dns
        } else {
            Resolution::Static
        }),
        endpoints,
        ..ServiceEntry::default()
    };
    let id = format!("kong-upstream-{}", slug(name));
    out.push(resource(
        &u.at,
        meta(&u.at, id.clone(), name),
        Spec::ServiceEntry(se),
    ));
    let lb = load_balancer(u, e);
    let mut policy = traffic_policy(s, t, lb);
    policy.health_checks = spec.healthchecks.clone();
    policy.circuit_breaker = breaker;
    out.push(resource(
        &u.at,
        meta(&u.at, id, name),
        Spec::DestinationRule(DestinationRule {
            pos: u.at.pos,
            host: Spanned {
                pos: u.at.pos,
                value: t.host.clone(),
            },
            traffic_policy: Some(policy),
            ..DestinationRule::default()
        }),
    ));
}

/// A ServiceEntry (and DestinationRule) for services sending to a host directly, on `ports`.
fn host_resources(
    s: &Service,
    t: &Target,
    ports: &[u16],
    breaker: Option<CircuitBreakerSettings>,
    out: &mut Vec<Resource>,
) {
    let ip = t.host.parse::<IpAddr>().is_ok();
    let se = ServiceEntry {
        pos: s.at.pos,
        hosts: vec![Spanned {
            pos: s.at.pos,
            value: t.host.clone(),
        }],
        ports: ports.iter().map(|&p| service_port(p)).collect(),
        resolution: Some(if ip {
            Resolution::Static
        } else {
            Resolution::Dns
        }),
        endpoints: if ip {
            vec![WorkloadEntry {
                pos: s.at.pos,
                address: Spanned {
                    pos: s.at.pos,
                    value: t.host.clone(),
                },
                ..WorkloadEntry::default()
            }]
        } else {
            Vec::new()
        },
        ..ServiceEntry::default()
    };
    let id = format!("kong-host-{}", slug(&t.host));
    out.push(resource(
        &s.at,
        meta(&s.at, id.clone(), &s.name),
        Spec::ServiceEntry(se),
    ));
    out.push(resource(
        &s.at,
        meta(&s.at, id, &s.name),
        Spec::DestinationRule(DestinationRule {
            pos: s.at.pos,
            host: Spanned {
                pos: s.at.pos,
                value: t.host.clone(),
            },
            traffic_policy: Some(TrafficPolicy {
                circuit_breaker: breaker,
                ..traffic_policy(s, t, None)
            }),
            ..DestinationRule::default()
        }),
    ));
}

fn service_port(port: u16) -> ServicePort {
    ServicePort {
        number: u32::from(port),
        protocol: Some("HTTP".to_owned()),
        name: Some(format!("http-{port}")),
        ..ServicePort::default()
    }
}

fn traffic_policy(s: &Service, t: &Target, lb: Option<LoadBalancerSettings>) -> TrafficPolicy {
    let ms = |v: &Option<Spanned<u64>>| {
        let ms = v.as_ref().map_or(DEFAULT_TIMEOUT_MS, |v| v.value);
        Some(Dur(Duration::from_millis(ms)))
    };
    TrafficPolicy {
        load_balancer: lb,
        connection_pool: Some(ConnectionPoolSettings {
            tcp: Some(TcpSettings {
                connect_timeout: ms(&s.spec.connect_timeout),
                read_timeout: ms(&s.spec.read_timeout),
                write_timeout: ms(&s.spec.write_timeout),
                ..TcpSettings::default()
            }),
            ..ConnectionPoolSettings::default()
        }),
        // Kong does not verify upstream certificates unless `tls_verify` says so.
        tls: (t.protocol == "https").then(|| ClientTlsSettings {
            mode: Some(ClientTlsMode::Simple),
            insecure_skip_verify: Some(s.spec.tls_verify != Some(true)),
            ..ClientTlsSettings::default()
        }),
        ..TrafficPolicy::default()
    }
}

fn load_balancer(u: &Upstream, e: &mut Errors<'_>) -> Option<LoadBalancerSettings> {
    let spec = &u.spec;
    let algorithm = spec.algorithm.as_ref();
    let simple = |lb| {
        Some(LoadBalancerSettings {
            simple: Some(lb),
            ..LoadBalancerSettings::default()
        })
    };
    match algorithm.map_or("round-robin", |a| a.value.as_str()) {
        // `weighted-round-robin` is the seed's name for it; Kong's round robin is weighted.
        "round-robin" | "weighted-round-robin" => simple(SimpleLb::RoundRobin),
        // Kong's `latency` is a peak-EWMA balancer; least-request is weir's nearest.
        "least-connections" | "latency" => simple(SimpleLb::LeastRequest),
        "consistent-hashing" => {
            let on = spec.hash_on.as_ref();
            let on_kind = on.map_or("none", |o| o.value.as_str());
            let fallback = spec.hash_fallback.as_ref();
            let fallback_kind = fallback.map_or("none", |f| f.value.as_str());
            let fallback_pos = fallback.map_or(u.at.pos, |f| f.pos);
            // Kong's schema rules for the pair.
            if fallback_kind != "none" {
                let clash = match on_kind {
                    "none" => Some("hash_fallback must be none when hash_on is none".to_owned()),
                    "cookie" => {
                        Some("hash_fallback must be none when hash_on is cookie".to_owned())
                    }
                    k if k == fallback_kind => {
                        let names = match k {
                            "header" => Some((&spec.hash_on_header, &spec.hash_fallback_header)),
                            "query_arg" => {
                                Some((&spec.hash_on_query_arg, &spec.hash_fallback_query_arg))
                            }
                            "uri_capture" => {
                                Some((&spec.hash_on_uri_capture, &spec.hash_fallback_uri_capture))
                            }
                            _ => None,
                        };
                        match names {
                            Some((a, b))
                                if a.as_deref().map(str::to_ascii_lowercase)
                                    != b.as_deref().map(str::to_ascii_lowercase) =>
                            {
                                None
                            }
                            _ => Some(format!("hash_fallback must differ from hash_on ({k})")),
                        }
                    }
                    _ => None,
                };
                if let Some(message) = clash {
                    e.at(&u.at, fallback_pos, message);
                    return None;
                }
            }
            let first = hash_key(u, on_kind, on.map_or(u.at.pos, |o| o.pos), Which::On, e)?;
            let second = hash_key(u, fallback_kind, fallback_pos, Which::Fallback, e)?;
            // weir identifies no consumers (it has no authentication plugins), so `consumer`
            // never gives a key and the fallback decides, as in Kong without a consumer.
            let (key, fallback) = match (first, second) {
                (Some(k), f) => (k, f.map(Box::new)),
                (None, Some(f)) => (f, None),
                (None, None) => return simple(SimpleLb::RoundRobin),
            };
            Some(LoadBalancerSettings {
                consistent_hash: Some(ConsistentHashLb {
                    pos: u.at.pos,
                    ring_hash: Some(RingHash {
                        minimum_ring_size: Some(u64::from(spec.slots.unwrap_or(10_000))),
                        ..RingHash::default()
                    }),
                    fallback,
                    ..key
                }),
                ..LoadBalancerSettings::default()
            })
        }
        other => {
            let pos = algorithm.map_or(u.at.pos, |a| a.pos);
            e.at(
                &u.at,
                pos,
                format!(
                    "algorithm `{other}`: expected round-robin, consistent-hashing, least-connections or latency"
                ),
            );
            None
        }
    }
}

/// Which of an upstream's two hash keys.
#[derive(Clone, Copy)]
enum Which {
    On,
    Fallback,
}

/// The `consistentHash` key for Kong's `hash_on` or `hash_fallback` value `kind`; `Some(None)`
/// for `none` and `consumer` (which never gives a key in weir).
fn hash_key(
    u: &Upstream,
    kind: &str,
    pos: Pos,
    which: Which,
    e: &mut Errors<'_>,
) -> Option<Option<ConsistentHashLb>> {
    let spec = &u.spec;
    let prefix = match which {
        Which::On => "hash_on",
        Which::Fallback => "hash_fallback",
    };
    let mut need = |field: &Option<String>, what: &str, name: &str| {
        if field.is_none() {
            e.at(&u.at, pos, format!("{prefix} {what} needs {name}"));
        }
        field.clone()
    };
    let key = ConsistentHashLb {
        pos: u.at.pos,
        ..ConsistentHashLb::default()
    };
    let pick = |on: &Option<String>, fallback: &Option<String>| match which {
        Which::On => on.clone(),
        Which::Fallback => fallback.clone(),
    };
    Some(Some(match kind {
        "none" | "consumer" => return Some(None),
        "ip" => ConsistentHashLb {
            use_source_ip: Some(true),
            ..key
        },
        "path" => ConsistentHashLb {
            use_path: Some(true),
            ..key
        },
        "header" => ConsistentHashLb {
            http_header_name: Some(need(
                &pick(&spec.hash_on_header, &spec.hash_fallback_header),
                "header",
                &format!("{prefix}_header"),
            )?),
            ..key
        },
        "query_arg" => ConsistentHashLb {
            http_query_parameter_name: Some(need(
                &pick(&spec.hash_on_query_arg, &spec.hash_fallback_query_arg),
                "query_arg",
                &format!("{prefix}_query_arg"),
            )?),
            ..key
        },
        "uri_capture" => ConsistentHashLb {
            uri_capture: Some(need(
                &pick(&spec.hash_on_uri_capture, &spec.hash_fallback_uri_capture),
                "uri_capture",
                &format!("{prefix}_uri_capture"),
            )?),
            ..key
        },
        // Kong names the cookie in `hash_on_cookie` for both keys and, when the request has
        // none, makes one up and sets it on the response (a session cookie).
        "cookie" => ConsistentHashLb {
            http_cookie: Some(HttpCookie {
                name: need(&spec.hash_on_cookie, "cookie", "hash_on_cookie")?,
                path: Some(
                    spec.hash_on_cookie_path
                        .clone()
                        .unwrap_or_else(|| "/".to_owned()),
                ),
                ttl: Some(Dur(Duration::ZERO)),
                ..HttpCookie::default()
            }),
            ..key
        },
        other => {
            e.at(
                &u.at,
                pos,
                format!(
                    "{prefix} `{other}`: expected none, consumer, ip, header, cookie, path, query_arg or uri_capture"
                ),
            );
            return None;
        }
    }))
}

/// `host:port`, `[v6]:port`, or a host alone (Kong's default port 8000).
fn split_target(t: &str) -> Option<(String, u16)> {
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_TARGET_PORT,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Some((host.to_ascii_lowercase(), port.parse().ok()?))
        }
        Some(_) => Some((t.to_owned(), DEFAULT_TARGET_PORT)),
        None if !t.is_empty() => Some((t.to_ascii_lowercase(), DEFAULT_TARGET_PORT)),
        None => None,
    }
}

/// One Kong route, or the part of it with one kind and length of path: a rule and its rank.
struct Ranked {
    /// Kong's sort key, highest first.
    key: (u8, bool, usize, bool, i64, usize),
    /// Declaration order, for ties.
    order: usize,
    /// Lower-case host patterns (empty: any host).
    hosts: Vec<String>,
    rule: HttpRoute,
    at: At,
}

fn virtual_services(
    kong: &Kong,
    targets: &HashMap<&str, Target>,
    breakers: &HashMap<&str, (CircuitBreakerSettings, Option<Duration>)>,
    e: &mut Errors<'_>,
) -> Vec<Resource> {
    let mut ranked = Vec::new();
    for (order, r) in kong.routes.iter().enumerate() {
        let Some(t) = targets.get(r.service.as_str()) else {
            if !kong.services.iter().any(|s| s.name == r.service) {
                let pos = r.spec.service.as_ref().map_or(r.at.pos, |s| s.0.pos);
                e.at(&r.at, pos, format!("no service named `{}`", r.service));
            }
            continue;
        };
        let service = kong.services.iter().find(|s| s.name == r.service);
        if service.is_some_and(|s| s.spec.enabled == Some(false)) {
            continue;
        }
        let plugins = RoutePlugins {
            timeout: breakers.get(r.service.as_str()).and_then(|b| b.1),
            terminate: plugin_for(kong, service, r, "request-termination")
                .and_then(|p| termination(p, e)),
            rate_limit: plugin_for(kong, service, r, "rate-limiting").and_then(|p| {
                let scope = if r.plugins.iter().any(|x| std::ptr::eq(x, p)) {
                    format!(
                        "kong/route/{}",
                        r.spec.name.as_ref().map_or("", |n| n.value.as_str())
                    )
                } else if service.is_some_and(|s| s.plugins.iter().any(|x| std::ptr::eq(x, p))) {
                    format!("kong/service/{}", r.service)
                } else {
                    "kong/global".to_owned()
                };
                rate_limit(p, scope, e)
            }),
            cors: plugin_for(kong, service, r, "cors").and_then(|p| cors(p, e)),
            transform: plugin_for(kong, service, r, "request-transformer").and_then(|(at, p)| {
                decode_config::<RequestTransformerConfig>(p.config.as_ref(), &at.file, e.0)
            }),
            cache: plugin_for(kong, service, r, "proxy-cache").and_then(|(at, p)| {
                decode_config::<ProxyCacheConfig>(p.config.as_ref(), &at.file, e.0)
            }),
        };
        rank_route(r, order, t, service, &plugins, &mut ranked, e);
    }
    ranked.sort_by(|a, b| b.key.cmp(&a.key).then(a.order.cmp(&b.order)));
    // Every host some route names, and `*` for the routes that name none.
    let mut hosts: Vec<String> = Vec::new();
    for r in &ranked {
        for h in &r.hosts {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
    }
    if ranked.iter().any(|r| r.hosts.is_empty()) {
        hosts.push("*".to_owned());
    }
    let mut out = Vec::new();
    for host in hosts {
        let rules: Vec<&Ranked> = ranked
            .iter()
            .filter(|r| r.hosts.is_empty() || r.hosts.iter().any(|p| covers(p, &host)))
            .collect();
        let Some(first) = rules.first() else { continue };
        let at = first.at.clone();
        let vs = VirtualService {
            pos: at.pos,
            hosts: vec![host.clone()],
            http: rules.iter().map(|r| r.rule.clone()).collect(),
            ..VirtualService::default()
        };
        let name = match host.as_str() {
            "*" => "kong-routes-any".to_owned(),
            h => format!("kong-routes-{}", slug(h)),
        };
        out.push(resource(
            &at,
            meta(&at, name, &format!("routes/{host}")),
            Spec::VirtualService(vs),
        ));
    }
    out
}

/// Whether a route host pattern admits `host` (itself a name, or a `*.suffix` or `prefix.*`
/// pattern).
fn covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        let name = host.strip_prefix('*').unwrap_or(host);
        return !name.ends_with('*') && name.len() > suffix.len() && name.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        let name = host.strip_suffix('*').unwrap_or(host);
        return !name.starts_with('*') && name.len() > prefix.len() && name.starts_with(prefix);
    }
    false
}

/// What a route's plugins make of its rules.
struct RoutePlugins {
    /// The circuit breaker's request timeout.
    timeout: Option<Duration>,
    /// `request-termination`.
    terminate: Option<Termination>,
    /// `rate-limiting`.
    rate_limit: Option<RateLimitSettings>,
    /// `cors`.
    cors: Option<CorsPolicy>,
    /// `request-transformer`.
    transform: Option<RequestTransformerConfig>,
    /// `proxy-cache`.
    cache: Option<ProxyCacheConfig>,
}

fn rank_route(
    r: &Route,
    order: usize,
    t: &Target,
    service: Option<&Service>,
    plugins: &RoutePlugins,
    out: &mut Vec<Ranked>,
    e: &mut Errors<'_>,
) {
    let spec = &r.spec;
    let name = spec
        .name
        .as_ref()
        .map_or_else(|| format!("{}-{order}", r.service), |n| n.value.clone());
    // Every problem of the route is reported before giving up on it.
    let before = e.0.len();
    let mut hosts = Vec::new();
    for h in &spec.hosts {
        let host = h.value.to_ascii_lowercase();
        let wildcards = host.matches('*').count();
        if wildcards > 1 || (wildcards == 1 && !host.starts_with("*.") && !host.ends_with(".*")) {
            e.at(
                &r.at,
                h.pos,
                format!("host `{host}`: a wildcard must be the leftmost or the rightmost label"),
            );
            continue;
        }
        hosts.push(host);
    }
    let mut scheme = None;
    if !spec.protocols.is_empty() {
        for p in &spec.protocols {
            if !matches!(p.value.as_str(), "http" | "https") {
                e.at(
                    &r.at,
                    p.pos,
                    format!("protocol {}: weir routes http and https", p.value),
                );
            }
        }
        if !spec.protocols.iter().any(|p| p.value == "http") {
            scheme = Some(StringMatch::Exact("https".to_owned()));
        }
    }
    let method = (!spec.methods.is_empty()).then(|| {
        let alts: Vec<String> = spec
            .methods
            .iter()
            .map(|m| regex::escape(&m.value.to_ascii_uppercase()))
            .collect();
        StringMatch::Regex(Spanned {
            pos: spec.methods[0].pos,
            value: alts.join("|"),
        })
    });
    let mut headers = BTreeMap::new();
    for (name, values) in &spec.headers {
        if name.eq_ignore_ascii_case("host") {
            e.at(&r.at, spec.pos, "headers cannot match `host`: use hosts");
            continue;
        }
        let alts: Vec<String> = values
            .iter()
            .map(|v| match v.value.strip_prefix("~*") {
                Some(re) => format!("(?is:.*(?:{re}).*)"),
                None => format!("(?i:{})", regex::escape(&v.value)),
            })
            .collect();
        if alts.is_empty() {
            continue;
        }
        let pos = values.first().map_or(spec.pos, |v| v.pos);
        headers.insert(
            name.to_ascii_lowercase(),
            StringMatch::Regex(Spanned {
                pos,
                value: alts.join("|"),
            }),
        );
    }
    // Kong splits a route's paths: regexes together, prefixes by length.
    let mut groups: Vec<(bool, usize, Vec<&Spanned<String>>)> = Vec::new();
    for p in &spec.paths {
        let regex = p.value.starts_with('~');
        if !regex && !p.value.starts_with('/') {
            e.at(
                &r.at,
                p.pos,
                format!("path `{}` must start with / (or ~ for a regex)", p.value),
            );
            continue;
        }
        let len = if regex { 0 } else { p.value.len() };
        match groups.iter_mut().find(|g| g.0 == regex && g.1 == len) {
            Some(g) => g.2.push(p),
            None => groups.push((regex, len, vec![p])),
        }
    }
    if e.0.len() > before {
        return;
    }
    if groups.is_empty() {
        groups.push((false, 0, Vec::new()));
    }
    let kinds = [
        !spec.methods.is_empty(),
        !hosts.is_empty(),
        !headers.is_empty(),
        !spec.paths.is_empty(),
    ];
    let weight = kinds.iter().filter(|k| **k).count() as u8;
    let plain_hosts = !hosts.is_empty() && hosts.iter().all(|h| !h.contains('*'));
    let strip = spec.strip_path != Some(false);
    let base = t.path.as_deref().filter(|p| *p != "/");
    for (regex, len, paths) in groups {
        let block = |uri: Option<StringMatch>| HttpMatchRequest {
            pos: spec.pos,
            uri,
            method: method.clone(),
            scheme: scheme.clone(),
            headers: headers.clone(),
            ..HttpMatchRequest::default()
        };
        let matches: Vec<HttpMatchRequest> = if paths.is_empty() {
            let b = block(None);
            if b.method.is_none() && b.scheme.is_none() && b.headers.is_empty() {
                Vec::new()
            } else {
                vec![b]
            }
        } else {
            paths
                .iter()
                .map(|p| {
                    block(Some(match p.value.strip_prefix('~') {
                        Some(re) => StringMatch::Regex(Spanned {
                            pos: p.pos,
                            value: format!("(?s:(?:{re}).*)"),
                        }),
                        None => StringMatch::Prefix(p.value.clone()),
                    }))
                })
                .collect()
        };
        let rewrite = rewrite(r, t, base, strip, regex, &paths, e);
        let rule = HttpRoute {
            pos: spec.pos,
            name: Some(name.clone()),
            matches,
            route: vec![HttpRouteDestination {
                pos: spec.pos,
                destination: Destination {
                    pos: spec.pos,
                    host: Spanned {
                        pos: spec.pos,
                        value: t.host.clone(),
                    },
                    port: (!t.upstream).then(|| PortSelector {
                        pos: spec.pos,
                        number: u32::from(t.port),
                    }),
                    ..Destination::default()
                },
                ..HttpRouteDestination::default()
            }],
            rewrite,
            retries: Some(retries(service)),
            timeout: plugins.timeout.map(Dur),
            rate_limit: plugins.rate_limit.clone(),
            cors_policy: plugins.cors.clone(),
            request_transformer: plugins.transform.clone(),
            response_cache: plugins.cache.clone(),
            ..HttpRoute::default()
        };
        let regex_priority = if regex {
            spec.regex_priority.unwrap_or(0)
        } else {
            0
        };
        let key = (
            weight,
            plain_hosts,
            headers.len(),
            regex,
            regex_priority,
            len,
        );
        // Without a trigger every request is answered; with one, only those carrying it
        // (ranked just before the route itself).
        let rule = match &plugins.terminate {
            Some(term) => {
                let mut answered = term.apply(rule.clone());
                match &term.trigger {
                    None => answered,
                    Some(trigger) => {
                        if answered.matches.is_empty() {
                            answered.matches.push(HttpMatchRequest {
                                pos: spec.pos,
                                ..HttpMatchRequest::default()
                            });
                        }
                        for m in &mut answered.matches {
                            m.headers.insert(trigger.clone(), StringMatch::Present);
                        }
                        out.push(Ranked {
                            key,
                            order: 2 * order,
                            hosts: hosts.clone(),
                            rule: answered,
                            at: r.at.clone(),
                        });
                        rule
                    }
                }
            }
            None => rule,
        };
        out.push(Ranked {
            key,
            order: 2 * order + 1,
            hosts: hosts.clone(),
            rule,
            at: r.at.clone(),
        });
    }
}

/// `strip_path`, the service's path and `preserve_host` as an HTTPRewrite.
fn rewrite(
    r: &Route,
    t: &Target,
    base: Option<&str>,
    strip: bool,
    regex: bool,
    paths: &[&Spanned<String>],
    e: &mut Errors<'_>,
) -> Option<HttpRewrite> {
    let mut rw = HttpRewrite {
        pos: r.spec.pos,
        ..HttpRewrite::default()
    };
    let trimmed = base.map_or("", |b| b.trim_end_matches('/'));
    if strip && !paths.is_empty() {
        if regex {
            // The matched part goes; what follows it is appended to the service's path.
            let alts: Vec<&str> = paths
                .iter()
                .filter_map(|p| p.value.strip_prefix('~'))
                .collect();
            let pattern = format!("^(?:{})/?(.*)$", alts.join("|"));
            let group = match regex::Regex::new(&pattern) {
                Ok(re) => re.captures_len() - 1,
                // The match itself reports the bad regex.
                Err(_) => return None,
            };
            if group > 9 {
                e.at(
                    &r.at,
                    paths[0].pos,
                    "too many capture groups in the path regexes",
                );
                return None;
            }
            rw.uri_regex_rewrite = Some(RegexRewrite {
                pos: paths[0].pos,
                pattern: Spanned {
                    pos: paths[0].pos,
                    value: pattern,
                },
                rewrite: format!("{trimmed}/\\{group}"),
            });
        } else {
            rw.uri = Some(base.unwrap_or("/").to_owned());
        }
    } else if !trimmed.is_empty() {
        rw.uri_regex_rewrite = Some(RegexRewrite {
            pos: r.spec.pos,
            pattern: Spanned {
                pos: r.spec.pos,
                value: "^/?(.*)$".to_owned(),
            },
            rewrite: format!("{trimmed}/\\1"),
        });
    }
    if r.spec.preserve_host != Some(true) {
        let default_port = if t.protocol == "https" { 443 } else { 80 };
        rw.authority = Some(if t.port == default_port {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        });
    }
    (rw.uri.is_some() || rw.uri_regex_rewrite.is_some() || rw.authority.is_some()).then_some(rw)
}

/// Kong's retries: transport failures only, `retries` of them. (Kong's `read_timeout` is the
/// connection's read timeout, not a per-try bound.)
fn retries(service: Option<&Service>) -> HttpRetry {
    HttpRetry {
        attempts: Some(
            service
                .and_then(|s| s.spec.retries)
                .unwrap_or(DEFAULT_RETRIES),
        ),
        retry_on: Some(Spanned {
            pos: Pos::default(),
            value: "connect-failure,refused-stream,reset".to_owned(),
        }),
        ..HttpRetry::default()
    }
}
