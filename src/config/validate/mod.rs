//! Validation: a [`ResourceSet`] becomes a [`Model`] (route tables and cluster specs), or every
//! problem is reported. Cross-references (hosts, subsets, gateways, templates) are checked here,
//! regexes compiled and limits applied, so nothing on the request path can fail on config.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use super::decode::ConfigError;
use super::flagger::Canary;
use super::generate;
use super::generate::GENERATED_BY;
use super::istio::{self, DestinationRule, Gateway, ServiceEntry, StringMatch, VirtualService};
use super::kong_translate::KONG_PREFIX;
use super::resource::{Resource, ResourceSet, Spec, short_ref};
use super::yaml::Pos;
use crate::backend::budget::BudgetSpec;
use crate::backend::hash::{
    DEFAULT_MAGLEV_SIZE, DEFAULT_RING_SIZE, HashAlgo, HashKey, HashPolicy, MAX_TABLE_SIZE,
};
use crate::backend::limits::PoolLimits;
use crate::backend::outlier::OutlierPolicy;
use crate::backend::{ClusterSpec, EndpointAddr, EndpointSpec, Lb, Protocol, Warmup};
use crate::policy::affinity::Affinity;
use crate::policy::fallback::CacheSpec;
use crate::policy::fault::{self, Fault};
use crate::policy::headers::{HeaderEdits, HeaderOps};
use crate::policy::mirror::Mirror;
use crate::policy::retry::RetryPolicy;
use crate::policy::rewrite::{Redirect, Rewrite, re2_replacement};
use crate::policy::split::{Split, WeightedDest};
use crate::route::matcher::{RequestMatch, StrMatcher, UriMatch, compile_regex};
use crate::route::{Action, RouteTable, Rule, VirtualHost};
use crate::tls::{ClientSpec, ClientTls};

mod access;
mod actions;
mod kong_access;
pub use access::{PolicySpec, ScopeSpec};
mod balancing;
mod canaries;
mod clusters;
mod cors;
mod experiments;
mod health;
mod listeners;
mod matches;
mod resilience;
mod route_plugins;
mod rules;
mod services;
mod tls;

pub use experiments::ExperimentModel;
pub(crate) use experiments::{on_conclusion, winner_canary};
pub use tls::ListenerTls;

/// Istio's default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default idle timeout for upstream connections (`connectionPool.http.idleTimeout`).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// The gateway name that means "the mesh listener".
const MESH: &str = "mesh";

/// A validated configuration, ready to be turned into a snapshot.
#[derive(Debug, Default)]
pub struct Model {
    /// Listeners; the first is the mesh listener.
    pub listeners: Vec<ListenerModel>,
    /// Clusters referenced by the route tables (by index).
    pub(crate) clusters: Vec<ClusterSpec>,
    /// Metrics label sets referenced by the route tables (by index).
    pub(crate) stats: Vec<StatsKey>,
    /// Stale caches referenced by fallbacks (by index): a stable name and the spec.
    pub(crate) caches: Vec<(String, CacheSpec)>,
    /// Rate limiters referenced by routes (by index): their scope and spec.
    pub(crate) limiters: Vec<(String, crate::policy::ratelimit::RateLimitSpec)>,
    /// A/B experiments referenced by routes (by index).
    pub experiments: Vec<ExperimentModel>,
    /// Access-control scopes referenced by routes (by index).
    pub scopes: Vec<access::ScopeSpec>,
    /// Things that load but that weir does not act on (yet).
    pub warnings: Vec<String>,
}

/// One listener and its routes.
#[derive(Debug)]
pub struct ListenerModel {
    /// Address to bind.
    pub addr: SocketAddr,
    /// The Gateway it comes from (`None` for the mesh listener).
    pub gateway: Option<String>,
    /// Where that Gateway is written (file and position), for errors about the listener.
    pub place: Option<(Arc<str>, Pos)>,
    /// Routes.
    pub table: RouteTable,
    /// TLS (Gateway servers with `tls`).
    pub tls: ListenerTls,
    /// Proxies trusted to say who the client is in `X-Forwarded-For` (Istio's
    /// `numTrustedProxies`); 0: none.
    pub trusted_hops: u32,
}

/// The labels of one set of request metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatsKey {
    /// Destination host.
    pub service: String,
    /// Subset.
    pub version: String,
    /// Rule label.
    pub route: String,
}

struct Service<'a> {
    entry: &'a ServiceEntry,
    res: &'a Resource,
    host: String,
}

struct Checker<'a> {
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    services: HashMap<String, Service<'a>>,
    rules: HashMap<String, (&'a Resource, &'a DestinationRule)>,
    /// DestinationRules of wildcard hosts (`*`, `*.suffix`), by host as written.
    wildcard_rules: HashMap<String, (&'a Resource, &'a DestinationRule)>,
    clusters: Vec<ClusterSpec>,
    cluster_ids: HashMap<(String, Option<String>, u16), usize>,
    stats: Vec<StatsKey>,
    stats_ids: HashMap<StatsKey, usize>,
    caches: Vec<(String, CacheSpec)>,
    limiters: Vec<(String, crate::policy::ratelimit::RateLimitSpec)>,
    /// Gateway servers' TLS, per listener address.
    sides: HashMap<SocketAddr, (&'a Resource, Vec<tls::ServerSide>)>,
    /// DestinationRules' upstream TLS, loaded once per distinct setting.
    client_tls: HashMap<ClientSpec, Arc<ClientTls>>,
    /// Experiments, and the one each VirtualService runs.
    experiments: Vec<ExperimentModel>,
    experiment_of: HashMap<String, usize>,
    /// The Kong configuration's consumers and credentials.
    consumers: Arc<crate::policy::access::kong::Consumers>,
    /// Access-control scopes, each once.
    scopes: Vec<access::ScopeSpec>,
}

/// Validates a resource set for a mesh listener at `mesh_addr`.
pub fn validate(set: &ResourceSet, mesh_addr: SocketAddr) -> Result<Model, Vec<ConfigError>> {
    let mut c = Checker {
        errors: Vec::new(),
        warnings: Vec::new(),
        services: HashMap::new(),
        rules: HashMap::new(),
        wildcard_rules: HashMap::new(),
        clusters: Vec::new(),
        cluster_ids: HashMap::new(),
        stats: Vec::new(),
        stats_ids: HashMap::new(),
        caches: Vec::new(),
        limiters: Vec::new(),
        sides: HashMap::new(),
        client_tls: HashMap::new(),
        experiments: Vec::new(),
        experiment_of: HashMap::new(),
        consumers: Arc::default(),
        scopes: Vec::new(),
    };
    c.check_names(set);
    c.consumers = Arc::new(crate::config::kong_access::consumers(set, &mut c.errors));
    for r in &set.resources {
        if let Spec::ServiceEntry(se) = &r.spec {
            c.service_entry(r, se);
        }
    }
    for r in &set.resources {
        if let Spec::DestinationRule(dr) = &r.spec {
            c.destination_rule(r, dr);
        }
    }
    c.apply_wildcard_rules();
    c.experiments(set);
    let gateways = c.gateways(set, mesh_addr);
    let mut listeners = vec![ListenerModel {
        addr: mesh_addr,
        gateway: None,
        place: None,
        table: RouteTable::default(),
        tls: ListenerTls::default(),
        trusted_hops: 0,
    }];
    let mut listener_ids: HashMap<SocketAddr, usize> = HashMap::new();
    let mut served: Vec<HashMap<String, String>> = vec![HashMap::new()];
    for (name, servers) in &gateways {
        for (addr, _) in servers {
            listener_ids.entry(*addr).or_insert_with(|| {
                let tls = match c.sides.remove(addr) {
                    Some((r, sides)) => c.listener_tls(r, *addr, sides),
                    None => ListenerTls::default(),
                };
                let place = set
                    .resources
                    .iter()
                    .find(|r| matches!(r.spec, Spec::Gateway(_)) && r.name() == name)
                    .map(|r| (r.file.clone(), r.pos));
                listeners.push(ListenerModel {
                    addr: *addr,
                    gateway: Some(name.clone()),
                    place,
                    table: RouteTable::default(),
                    tls,
                    trusted_hops: 0,
                });
                served.push(HashMap::new());
                listeners.len() - 1
            });
        }
    }
    for r in &set.resources {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let hosts = vs_hosts(r, vs);
        let targets: Vec<(usize, Vec<String>)> =
            c.vs_listeners(r, vs, &hosts, &gateways, &listener_ids);
        for (listener, hosts) in targets {
            let mut fresh = Vec::new();
            for host in hosts {
                match served[listener].get(&host) {
                    Some(other) if other != r.name() => c.err(
                        r,
                        vs.pos,
                        format!(
                            "host `{host}` is already routed by VirtualService `{other}` on {}",
                            listener_name(&listeners[listener])
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        served[listener].insert(host.clone(), r.name().to_owned());
                        fresh.push(host);
                    }
                }
            }
            if fresh.is_empty() {
                continue;
            }
            let rules = c.http_rules(r, vs, listeners[listener].gateway.as_deref());
            listeners[listener]
                .table
                .add(&fresh, VirtualHost::new(r.name().into(), rules));
        }
    }
    // As in Istio, a known service without a VirtualService is routed to all its endpoints.
    let mut default_hosts: Vec<String> = c.services.keys().cloned().collect();
    default_hosts.sort();
    for host in default_hosts {
        if served[0].contains_key(&host) {
            continue;
        }
        let rule = c.default_rule(&host);
        listeners[0].table.add(
            std::slice::from_ref(&host),
            VirtualHost::new(host.as_str().into(), vec![rule]),
        );
    }
    for r in &set.resources {
        if let Spec::Canary(canary) = &r.spec {
            c.canary(r, canary, set);
        }
    }
    c.access(set, &mut listeners);
    let scopes = std::mem::take(&mut c.scopes);
    c.warnings.extend(set.warnings.iter().cloned());
    if set.resources.is_empty() {
        c.warnings.push(if set.sources.is_empty() {
            "no YAML file was found: every request gets 404 until one is added".to_owned()
        } else {
            format!(
                "the {} file(s) read hold no resources: every request gets 404",
                set.sources.len()
            )
        });
    }
    if c.errors.is_empty() {
        Ok(Model {
            listeners,
            clusters: c.clusters,
            stats: c.stats,
            caches: c.caches,
            limiters: c.limiters,
            experiments: c.experiments,
            scopes,
            warnings: c.warnings,
        })
    } else {
        c.errors.sort();
        c.errors.dedup();
        Err(c.errors)
    }
}

fn listener_name(l: &ListenerModel) -> String {
    match &l.gateway {
        Some(g) => format!("gateway `{g}` ({})", l.addr),
        None => format!("the mesh listener ({})", l.addr),
    }
}

/// The hosts of a VirtualService: its `hosts`, or `[metadata.name]`.
fn vs_hosts(r: &Resource, vs: &VirtualService) -> Vec<String> {
    if vs.hosts.is_empty() {
        return vec![r.name().to_ascii_lowercase()];
    }
    vs.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
}

/// A gateway reference without its namespace (`ns/name` gives `name`).
/// Whether a gateway server host (`*`, `*.example.com`, `ns/host`) admits a VirtualService host.
fn host_allowed(server_host: &str, host: &str) -> bool {
    let pattern = short_ref(server_host).to_ascii_lowercase();
    if pattern == "*" || host == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) || host.strip_prefix('*') == Some(suffix),
        None => pattern == host,
    }
}

impl<'a> Checker<'a> {
    fn err(&mut self, r: &Resource, pos: Pos, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: r.file.clone(),
            pos,
            message: message.into(),
        });
    }

    fn warn(&mut self, r: &Resource, pos: Pos, message: impl AsRef<str>) {
        self.warnings
            .push(format!("{}:{}: {}", r.file, pos, message.as_ref()));
    }

    fn check_names(&mut self, set: &ResourceSet) {
        let mut seen: HashMap<(&str, &str, &str), &Resource> = HashMap::new();
        for r in &set.resources {
            let ns = r.metadata.namespace.as_deref().unwrap_or("");
            // Kong's entities are checked when they are translated.
            if r.name().is_empty() || r.kind.starts_with("Kong") {
                continue;
            }
            if let Some(first) = seen.insert((r.kind, ns, r.name()), r) {
                let at = first.location();
                self.err(
                    r,
                    r.pos,
                    format!(
                        "duplicate {} `{}` (first defined at {at})",
                        r.kind,
                        r.name()
                    ),
                );
            }
        }
    }
}

/// Decodes standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn gateway_hosts() {
        assert!(host_allowed("*", "reviews"));
        assert!(host_allowed("ns/*.example.com", "a.example.com"));
        assert!(!host_allowed("*.example.com", "example.org"));
        assert!(host_allowed("bookinfo.com", "bookinfo.com"));
    }
}
