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
use super::istio::{self, DestinationRule, Gateway, ServiceEntry, StringMatch, VirtualService};
use super::yaml::Pos;
use super::{Resource, ResourceSet, Spec};
use crate::backend::{ClusterSpec, EndpointAddr, EndpointSpec, Lb, Protocol};
use crate::policy::headers::{HeaderEdits, HeaderOps};
use crate::policy::rewrite::{Redirect, Rewrite, re2_replacement};
use crate::policy::split::{Split, WeightedDest};
use crate::route::matcher::{RequestMatch, StrMatcher, UriMatch, compile_regex};
use crate::route::{Action, RouteTable, Rule, VirtualHost};

/// Istio's default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway name that means "the mesh listener".
const MESH: &str = "mesh";

/// A validated configuration, ready to be turned into a snapshot.
#[derive(Debug, Default)]
pub struct Model {
    /// Listeners; the first is the mesh listener.
    pub listeners: Vec<ListenerModel>,
    /// Clusters referenced by the route tables (by index).
    pub clusters: Vec<ClusterSpec>,
    /// Metrics label sets referenced by the route tables (by index).
    pub stats: Vec<StatsKey>,
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
    /// Routes.
    pub table: RouteTable,
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
    clusters: Vec<ClusterSpec>,
    cluster_ids: HashMap<(String, Option<String>, u16), usize>,
    stats: Vec<StatsKey>,
    stats_ids: HashMap<StatsKey, usize>,
}

/// Validates a resource set for a mesh listener at `mesh_addr`.
pub fn validate(set: &ResourceSet, mesh_addr: SocketAddr) -> Result<Model, Vec<ConfigError>> {
    let mut c = Checker {
        errors: Vec::new(),
        warnings: Vec::new(),
        services: HashMap::new(),
        rules: HashMap::new(),
        clusters: Vec::new(),
        cluster_ids: HashMap::new(),
        stats: Vec::new(),
        stats_ids: HashMap::new(),
    };
    c.check_names(set);
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
    let gateways = c.gateways(set, mesh_addr);
    let mut listeners = vec![ListenerModel {
        addr: mesh_addr,
        gateway: None,
        table: RouteTable::default(),
    }];
    let mut listener_ids: HashMap<SocketAddr, usize> = HashMap::new();
    let mut served: Vec<HashMap<String, String>> = vec![HashMap::new()];
    for (name, servers) in &gateways {
        for (addr, _) in servers {
            listener_ids.entry(*addr).or_insert_with(|| {
                listeners.push(ListenerModel {
                    addr: *addr,
                    gateway: Some(name.clone()),
                    table: RouteTable::default(),
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
    if c.errors.is_empty() {
        Ok(Model {
            listeners,
            clusters: c.clusters,
            stats: c.stats,
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
fn short_ref(s: &str) -> &str {
    s.rsplit_once('/').map_or(s, |(_, n)| n)
}

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
            if r.name().is_empty() {
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

    // === ServiceEntry ===

    fn service_entry(&mut self, r: &'a Resource, se: &'a ServiceEntry) {
        if se.hosts.is_empty() {
            self.err(r, se.pos, "ServiceEntry needs at least one host");
        }
        if se.ports.is_empty() {
            self.err(r, se.pos, "ServiceEntry needs at least one port");
        }
        let mut port_names = HashSet::new();
        for p in &se.ports {
            if !(1..=65535).contains(&p.number) {
                self.err(
                    r,
                    p.pos,
                    format!("port {} is out of range 1-65535", p.number),
                );
            }
            if let Some(name) = &p.name
                && !port_names.insert(name.as_str())
            {
                self.err(r, p.pos, format!("duplicate port name `{name}`"));
            }
            if let Some(proto) = &p.protocol
                && !matches!(
                    proto.to_ascii_uppercase().as_str(),
                    "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"
                )
            {
                self.warn(
                    r,
                    p.pos,
                    format!("port protocol {proto} is proxied as HTTP"),
                );
            }
        }
        let resolution = se.resolution.unwrap_or_default();
        for ep in &se.endpoints {
            let a = &ep.address;
            if a.value.starts_with("unix://") {
                self.err(r, a.pos, "unix socket endpoints are not supported");
            } else if a.value.parse::<IpAddr>().is_err() && resolution == istio::Resolution::Static
            {
                self.err(
                    r,
                    a.pos,
                    format!(
                        "endpoint `{}` is not an IP address (resolution STATIC)",
                        a.value
                    ),
                );
            }
            for (name, port) in &ep.ports {
                if !port_names.contains(name.as_str()) {
                    self.err(
                        r,
                        ep.pos,
                        format!("endpoint port `{name}` names no service port"),
                    );
                }
                if !(1..=65535).contains(port) {
                    self.err(r, ep.pos, format!("port {port} is out of range 1-65535"));
                }
            }
        }
        if se.workload_selector.is_some() {
            self.err(
                r,
                se.pos,
                "workloadSelector needs Kubernetes; list `endpoints` instead",
            );
        }
        for host in &se.hosts {
            let h = host.value.to_ascii_lowercase();
            if h.contains('*') {
                self.err(r, host.pos, "wildcard ServiceEntry hosts are not supported");
                continue;
            }
            if let Some(other) = self.services.get(&h) {
                let at = other.res.location();
                self.err(
                    r,
                    host.pos,
                    format!("host `{h}` is already declared at {at}"),
                );
                continue;
            }
            self.services.insert(
                h.clone(),
                Service {
                    entry: se,
                    res: r,
                    host: h,
                },
            );
        }
    }

    // === DestinationRule ===

    fn destination_rule(&mut self, r: &'a Resource, dr: &'a DestinationRule) {
        let host = dr.host.value.to_ascii_lowercase();
        if host.is_empty() {
            return; // reported while decoding
        }
        if !self.services.contains_key(&host) {
            self.err(
                r,
                dr.host.pos,
                format!("DestinationRule host `{host}` is not declared by any ServiceEntry"),
            );
        }
        if let Some((other, _)) = self.rules.get(&host) {
            let at = other.location();
            self.err(
                r,
                dr.host.pos,
                format!("host `{host}` already has a DestinationRule (at {at})"),
            );
            return;
        }
        let mut names = HashSet::new();
        for s in &dr.subsets {
            if !names.insert(s.name.value.as_str()) {
                self.err(
                    r,
                    s.name.pos,
                    format!("duplicate subset `{}`", s.name.value),
                );
            }
            if let Some(tp) = &s.traffic_policy {
                self.traffic_policy(r, tp);
            }
        }
        if let Some(tp) = &dr.traffic_policy {
            self.traffic_policy(r, tp);
        }
        self.rules.insert(host, (r, dr));
    }

    fn traffic_policy(&mut self, r: &Resource, tp: &istio::TrafficPolicy) {
        if let Some(lb) = &tp.load_balancer {
            if lb.simple == Some(istio::SimpleLb::Passthrough) {
                self.err(r, lb.pos, "loadBalancer PASSTHROUGH is not supported");
            }
            if lb.consistent_hash.is_some() {
                self.warn(
                    r,
                    lb.pos,
                    "consistentHash is parsed but not applied yet (round robin is used)",
                );
            }
        }
        if let Some(od) = &tp.outlier_detection {
            for (v, name) in [
                (od.max_ejection_percent, "maxEjectionPercent"),
                (od.min_health_percent, "minHealthPercent"),
            ] {
                if v.is_some_and(|v| v > 100) {
                    self.err(r, od.pos, format!("{name} must be between 0 and 100"));
                }
            }
            for code in &od.outlier_detection_http_error_codes {
                if !(100..=599).contains(code) {
                    self.err(r, od.pos, format!("{code} is not an HTTP status code"));
                }
            }
        }
        if let Some(tls) = &tp.tls {
            match tls.mode.unwrap_or_default() {
                istio::ClientTlsMode::Disable => {}
                istio::ClientTlsMode::IstioMutual => self.warn(
                    r,
                    tls.pos,
                    "ISTIO_MUTUAL needs mesh identities; weir sends plain text",
                ),
                _ => self.err(
                    r,
                    tls.pos,
                    "upstream TLS (SIMPLE, MUTUAL) is not supported yet",
                ),
            }
        }
        if let Some(budget) = &tp.retry_budget
            && budget
                .percent
                .is_some_and(|p| !(0.0..=100.0).contains(&p.0))
        {
            self.err(
                r,
                budget.pos,
                "retryBudget.percent must be between 0 and 100",
            );
        }
        for pl in &tp.port_level_settings {
            if pl.port.is_none() {
                self.err(r, pl.pos, "portLevelSettings entry needs a port");
            }
        }
    }

    // === Gateway ===

    fn gateways(
        &mut self,
        set: &'a ResourceSet,
        mesh_addr: SocketAddr,
    ) -> HashMap<String, Vec<(SocketAddr, Vec<String>)>> {
        let mut out: HashMap<String, Vec<(SocketAddr, Vec<String>)>> = HashMap::new();
        let mut owners: HashMap<SocketAddr, String> = HashMap::new();
        for r in &set.resources {
            let Spec::Gateway(gw) = &r.spec else {
                continue;
            };
            self.gateway(r, gw, mesh_addr, &mut owners, &mut out);
        }
        out
    }

    fn gateway(
        &mut self,
        r: &Resource,
        gw: &Gateway,
        mesh_addr: SocketAddr,
        owners: &mut HashMap<SocketAddr, String>,
        out: &mut HashMap<String, Vec<(SocketAddr, Vec<String>)>>,
    ) {
        let servers = out.entry(r.name().to_owned()).or_default();
        for s in &gw.servers {
            let number = &s.port.number;
            let Ok(port) = u16::try_from(number.value)
                .map_err(drop)
                .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
            else {
                self.err(
                    r,
                    number.pos,
                    format!("port {} is out of range 1-65535", number.value),
                );
                continue;
            };
            let ip = match &s.bind {
                None => IpAddr::from([0, 0, 0, 0]),
                Some(b) => match b.value.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        self.err(r, b.pos, format!("bind `{}` is not an IP address", b.value));
                        continue;
                    }
                },
            };
            let protocol = s
                .port
                .protocol
                .as_deref()
                .unwrap_or("HTTP")
                .to_ascii_uppercase();
            if !matches!(protocol.as_str(), "HTTP" | "HTTP2" | "GRPC") {
                self.err(
                    r,
                    s.port.pos,
                    format!("server protocol {protocol} is not supported yet (HTTP, HTTP2, GRPC)"),
                );
                continue;
            }
            if s.tls
                .as_ref()
                .is_some_and(|t| t.https_redirect != Some(true) || t.mode.is_some())
            {
                self.err(r, s.pos, "gateway TLS is not supported yet");
            }
            if s.hosts.is_empty() {
                self.err(r, s.pos, "a gateway server needs at least one host");
            }
            let addr = SocketAddr::new(ip, port);
            if addr == mesh_addr
                || (addr.port() == mesh_addr.port()
                    && (addr.ip().is_unspecified() || mesh_addr.ip().is_unspecified()))
            {
                self.err(
                    r,
                    number.pos,
                    format!("{addr} is the mesh listener's address"),
                );
                continue;
            }
            if let Some(owner) = owners.get(&addr)
                && owner != r.name()
            {
                self.err(
                    r,
                    number.pos,
                    format!("{addr} is already used by Gateway `{owner}`"),
                );
                continue;
            }
            owners.insert(addr, r.name().to_owned());
            servers.push((addr, s.hosts.clone()));
        }
    }

    /// The listeners a VirtualService is served on, with the hosts each admits.
    fn vs_listeners(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        hosts: &[String],
        gateways: &HashMap<String, Vec<(SocketAddr, Vec<String>)>>,
        listener_ids: &HashMap<SocketAddr, usize>,
    ) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        if vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH) {
            for h in hosts {
                if h.contains('*') {
                    self.err(r, vs.pos, format!("wildcard host `{h}` needs a gateway"));
                }
            }
            out.push((0, hosts.to_vec()));
        }
        for g in vs.gateways.iter().filter(|g| *g != MESH) {
            let Some(servers) = gateways.get(short_ref(g)) else {
                self.err(r, vs.pos, format!("gateway `{g}` is not defined"));
                continue;
            };
            for (addr, server_hosts) in servers {
                let admitted: Vec<String> = hosts
                    .iter()
                    .filter(|h| server_hosts.iter().any(|s| host_allowed(s, h)))
                    .cloned()
                    .collect();
                if let Some(&id) = listener_ids.get(addr)
                    && !admitted.is_empty()
                {
                    out.push((id, admitted));
                }
            }
        }
        out
    }

    // === VirtualService ===

    fn http_rules(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        gateway: Option<&str>,
    ) -> Vec<Rule> {
        let mut rules = Vec::new();
        for (i, route) in vs.http.iter().enumerate() {
            let mut matches = Vec::new();
            let mut skip = !route.matches.is_empty();
            for m in &route.matches {
                let applies = m.gateways.is_empty()
                    || m.gateways.iter().any(|g| match gateway {
                        None => g == MESH,
                        Some(gw) => short_ref(g) == gw,
                    });
                if let Some(compiled) = self.request_match(r, m)
                    && applies
                {
                    matches.push(compiled);
                    skip = false;
                }
            }
            let label: Arc<str> = match &route.name {
                Some(n) => n.as_str().into(),
                None => format!("{}/{i}", r.name()).into(),
            };
            let Some(action) = self.action(r, route, &label) else {
                continue;
            };
            self.later_fields(r, route);
            if skip {
                continue;
            }
            let timeout = route.timeout.map(|d| d.0).filter(|d| !d.is_zero());
            let rewrite = route.rewrite.as_ref().and_then(|rw| self.rewrite(r, rw));
            let headers = self.header_edits(r, route.headers.as_ref());
            let local_stats = self.stats_id("", "", &label);
            rules.push(Rule {
                label,
                matches,
                action,
                headers,
                rewrite,
                timeout,
                local_stats,
            });
        }
        rules
    }

    fn default_rule(&mut self, host: &str) -> Rule {
        let label: Arc<str> = "default".into();
        let dest = self.dest(host, None, None, &label, HeaderEdits::default(), 100);
        Rule {
            local_stats: self.stats_id("", "", &label),
            label,
            matches: Vec::new(),
            action: Action::Forward(Split::new(vec![dest])),
            headers: HeaderEdits::default(),
            rewrite: None,
            timeout: None,
        }
    }

    fn action(&mut self, r: &Resource, route: &istio::HttpRoute, label: &str) -> Option<Action> {
        let kinds = [
            !route.route.is_empty(),
            route.redirect.is_some(),
            route.direct_response.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 if route.delegate.is_some() => {
                self.err(
                    r,
                    route.pos,
                    "delegate is not supported: inline the delegate's rules",
                );
                return None;
            }
            0 => {
                self.err(
                    r,
                    route.pos,
                    "an HTTP route needs one of route, redirect, directResponse",
                );
                return None;
            }
            1 => {}
            _ => {
                self.err(
                    r,
                    route.pos,
                    "route, redirect and directResponse are mutually exclusive",
                );
                return None;
            }
        }
        if route.rewrite.is_some() && (route.redirect.is_some() || route.direct_response.is_some())
        {
            self.err(
                r,
                route.pos,
                "rewrite cannot be combined with redirect or directResponse",
            );
        }
        if let Some(rd) = &route.redirect {
            return self.redirect(r, rd).map(Action::Redirect);
        }
        if let Some(dr) = &route.direct_response {
            let status = self.status(r, dr.pos, dr.status)?;
            let body = match &dr.body {
                None => Bytes::new(),
                Some(b) => match (&b.string, &b.bytes) {
                    (Some(s), None) => Bytes::from(s.clone()),
                    (None, Some(b64)) => match base64_decode(b64) {
                        Some(v) => Bytes::from(v),
                        None => {
                            self.err(r, b.pos, "body.bytes is not valid base64");
                            return None;
                        }
                    },
                    _ => {
                        self.err(r, b.pos, "body takes exactly one of `string`, `bytes`");
                        return None;
                    }
                },
            };
            return Some(Action::Direct { status, body });
        }
        let several = route.route.len() > 1;
        let mut dests = Vec::new();
        for d in &route.route {
            let weight = match d.weight {
                Some(w) => w,
                None if several => 0,
                None => 100,
            };
            let Some((host, subset, port)) = self.check_destination(r, &d.destination) else {
                continue;
            };
            let headers = self.header_edits(r, d.headers.as_ref());
            dests.push(self.dest(&host, subset.as_deref(), port, label, headers, weight));
        }
        if dests.len() != route.route.len() {
            return None;
        }
        if dests.iter().all(|d| d.weight == 0) {
            self.err(
                r,
                route.pos,
                "the route's destinations have a total weight of 0: give at least one a weight",
            );
            return None;
        }
        Some(Action::Forward(Split::new(dests)))
    }

    fn dest(
        &mut self,
        host: &str,
        subset: Option<&str>,
        port: Option<u16>,
        label: &str,
        headers: HeaderEdits,
        weight: u32,
    ) -> WeightedDest {
        let cluster = self.cluster(host, subset, port);
        let stats = self.stats_id(host, subset.unwrap_or(""), label);
        WeightedDest {
            cluster,
            weight,
            headers,
            stats,
        }
    }

    /// Checks a destination; returns its host, subset and port.
    fn check_destination(
        &mut self,
        r: &Resource,
        d: &istio::Destination,
    ) -> Option<(String, Option<String>, Option<u16>)> {
        let host = d.host.value.to_ascii_lowercase();
        if host.is_empty() {
            return None; // reported while decoding
        }
        let Some(service) = self.services.get(&host) else {
            self.err(
                r,
                d.host.pos,
                format!("destination host `{host}` is not declared by any ServiceEntry"),
            );
            return None;
        };
        let ports: Vec<u32> = service.entry.ports.iter().map(|p| p.number).collect();
        let port = match &d.port {
            Some(p) if !ports.contains(&p.number) => {
                self.err(
                    r,
                    p.pos,
                    format!(
                        "service `{host}` has no port {} (ports: {ports:?})",
                        p.number
                    ),
                );
                return None;
            }
            Some(p) => Some(p.number as u16),
            None => None,
        };
        if let Some(subset) = &d.subset {
            let defined = self
                .rules
                .get(&host)
                .is_some_and(|(_, dr)| dr.subsets.iter().any(|s| s.name.value == subset.value));
            if !defined {
                self.err(
                    r,
                    subset.pos,
                    format!(
                        "subset `{}` of `{host}` is not defined by a DestinationRule",
                        subset.value
                    ),
                );
                return None;
            }
        }
        Some((host, d.subset.as_ref().map(|s| s.value.clone()), port))
    }

    fn stats_id(&mut self, service: &str, version: &str, route: &str) -> usize {
        let key = StatsKey {
            service: service.to_owned(),
            version: version.to_owned(),
            route: route.to_owned(),
        };
        if let Some(&id) = self.stats_ids.get(&key) {
            return id;
        }
        self.stats.push(key.clone());
        self.stats_ids.insert(key, self.stats.len() - 1);
        self.stats.len() - 1
    }

    /// The cluster for (host, subset, port), created on first use.
    fn cluster(&mut self, host: &str, subset: Option<&str>, port: Option<u16>) -> usize {
        let service = &self.services[host];
        let sp = port
            .and_then(|n| service.entry.ports.iter().find(|p| p.number == n as u32))
            .or(service.entry.ports.first());
        let port_number = sp.map_or(80, |p| p.number as u16);
        let key = (host.to_owned(), subset.map(str::to_owned), port_number);
        if let Some(&id) = self.cluster_ids.get(&key) {
            return id;
        }
        let dr = self.rules.get(host).map(|(_, dr)| *dr);
        let subset_def = subset.and_then(|s| dr?.subsets.iter().find(|d| d.name.value == s));
        let selector = subset_def.map(|s| &s.labels);
        let target = sp.map_or(80, |p| p.target_port.unwrap_or(p.number) as u16);
        let port_name = sp.and_then(|p| p.name.as_deref());
        let dns = !matches!(service.entry.resolution, Some(istio::Resolution::Static));
        let mut endpoints: Vec<EndpointSpec> = service
            .entry
            .endpoints
            .iter()
            .filter(|e| {
                selector.is_none_or(|sel| sel.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            })
            .filter_map(|e| {
                let port = port_name
                    .and_then(|n| e.ports.get(n))
                    .map_or(target, |p| *p as u16);
                let addr = match e.address.value.parse::<IpAddr>() {
                    Ok(ip) => EndpointAddr::Ip(SocketAddr::new(ip, port)),
                    Err(_) if dns => EndpointAddr::Dns(e.address.value.clone(), port),
                    Err(_) => return None,
                };
                Some(EndpointSpec {
                    addr,
                    labels: e.labels.clone(),
                })
            })
            .collect();
        if service.entry.endpoints.is_empty() && selector.is_none() {
            // Without endpoints the host itself is the address (resolution DNS or NONE).
            endpoints.push(EndpointSpec {
                addr: EndpointAddr::Dns(service.host.clone(), target),
                labels: BTreeMap::new(),
            });
        }
        let protocol_name = sp
            .and_then(|p| p.protocol.as_deref())
            .unwrap_or("HTTP")
            .to_ascii_uppercase();
        let policies: Vec<&istio::TrafficPolicy> = [
            dr.and_then(|d| d.traffic_policy.as_ref()),
            subset_def.and_then(|s| s.traffic_policy.as_ref()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut lb = Lb::RoundRobin;
        let mut protocol = match protocol_name.as_str() {
            "HTTP2" | "GRPC" => Protocol::Http2,
            _ => Protocol::Http1,
        };
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        for tp in policies {
            let port_level = tp.port_level_settings.iter().find(|p| {
                p.port
                    .as_ref()
                    .is_some_and(|s| s.number == port_number as u32)
            });
            let simple = port_level
                .and_then(|p| p.load_balancer.as_ref())
                .or(tp.load_balancer.as_ref())
                .and_then(|l| l.simple);
            lb = match simple {
                Some(istio::SimpleLb::Random) => Lb::Random,
                Some(istio::SimpleLb::LeastRequest | istio::SimpleLb::LeastConn) => {
                    Lb::LeastRequest
                }
                Some(_) => Lb::RoundRobin,
                None => lb,
            };
            let pool = port_level
                .and_then(|p| p.connection_pool.as_ref())
                .or(tp.connection_pool.as_ref());
            if let Some(t) = pool
                .and_then(|p| p.tcp.as_ref())
                .and_then(|t| t.connect_timeout)
            {
                connect_timeout = t.0;
            }
            if let Some(h) = pool.and_then(|p| p.http.as_ref()) {
                if h.use_client_protocol == Some(true) {
                    protocol = Protocol::Client;
                } else if h.h2_upgrade_policy == Some(istio::H2UpgradePolicy::Upgrade) {
                    protocol = Protocol::Http2;
                }
            }
        }
        let name = format!("{host}|{}|{port_number}", subset.unwrap_or(""));
        self.clusters.push(ClusterSpec {
            name,
            service: host.to_owned(),
            subset: subset.map(str::to_owned),
            port: port_number,
            endpoints,
            lb,
            protocol,
            connect_timeout,
        });
        self.cluster_ids.insert(key, self.clusters.len() - 1);
        self.clusters.len() - 1
    }

    fn status(&mut self, r: &Resource, pos: Pos, code: u32) -> Option<StatusCode> {
        match u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(s) if (200..=599).contains(&code) => Some(s),
            _ => {
                self.err(
                    r,
                    pos,
                    format!("{code} is not a valid HTTP status (200-599)"),
                );
                None
            }
        }
    }

    fn redirect(&mut self, r: &Resource, rd: &istio::HttpRedirect) -> Option<Redirect> {
        let code = match rd.redirect_code {
            None => StatusCode::MOVED_PERMANENTLY,
            Some(c) => {
                let s = self.status(r, rd.pos, c)?;
                if !s.is_redirection() {
                    self.err(r, rd.pos, format!("redirectCode {c} is not a 3xx status"));
                    return None;
                }
                s
            }
        };
        if rd.uri.is_some() && rd.prefix_rewrite.is_some() {
            self.err(
                r,
                rd.pos,
                "redirect takes `uri` or `prefixRewrite`, not both",
            );
        }
        let port = match rd.port {
            Some(p) if p == 0 || p > 65535 => {
                self.err(r, rd.pos, format!("port {p} is out of range 1-65535"));
                return None;
            }
            p => p.map(|p| p as u16),
        };
        Some(Redirect {
            uri: rd.uri.as_deref().map(Into::into),
            prefix_rewrite: rd.prefix_rewrite.as_deref().map(Into::into),
            authority: rd.authority.as_deref().map(Into::into),
            port,
            default_port: rd.derive_port == Some(istio::DerivePort::FromProtocolDefault),
            scheme: rd.scheme.as_deref().map(Into::into),
            code,
        })
    }

    fn rewrite(&mut self, r: &Resource, rw: &istio::HttpRewrite) -> Option<Rewrite> {
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            self.err(
                r,
                rw.pos,
                "rewrite takes `uri` or `uriRegexRewrite`, not both",
            );
            return None;
        }
        let uri_regex = match &rw.uri_regex_rewrite {
            Some(rr) => match regex::RegexBuilder::new(&rr.pattern.value)
                .size_limit(crate::route::matcher::REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some((re, re2_replacement(&rr.rewrite))),
                Err(e) => {
                    self.err(r, rr.pattern.pos, format!("invalid regex: {e}"));
                    return None;
                }
            },
            None => None,
        };
        let authority = match rw.authority.as_deref().map(HeaderValue::from_str) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                self.err(r, rw.pos, "rewrite.authority is not a valid host");
                return None;
            }
            None => None,
        };
        Some(Rewrite {
            uri: rw.uri.as_deref().map(Into::into),
            uri_regex,
            authority,
        })
    }

    fn header_edits(&mut self, r: &Resource, h: Option<&istio::Headers>) -> HeaderEdits {
        let Some(h) = h else {
            return HeaderEdits::default();
        };
        HeaderEdits {
            request: self.header_ops(r, h.request.as_ref()),
            response: self.header_ops(r, h.response.as_ref()),
        }
    }

    fn header_ops(&mut self, r: &Resource, ops: Option<&istio::HeaderOperations>) -> HeaderOps {
        let Some(ops) = ops else {
            return HeaderOps::default();
        };
        let pairs = |map: &BTreeMap<String, String>, this: &mut Self| {
            map.iter()
                .filter_map(|(k, v)| {
                    let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes());
                    let value = HeaderValue::from_str(v);
                    match (name, value) {
                        (Ok(n), Ok(v)) => Some((n, v)),
                        _ => {
                            this.err(r, ops.pos, format!("invalid header `{k}: {v}`"));
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        };
        let set = pairs(&ops.set, self);
        let add = pairs(&ops.add, self);
        let remove = ops
            .remove
            .iter()
            .filter_map(
                |k| match HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.err(r, ops.pos, format!("invalid header name `{k}`"));
                        None
                    }
                },
            )
            .collect();
        HeaderOps { set, add, remove }
    }

    fn string_match(&mut self, r: &Resource, m: &StringMatch, lower: bool) -> Option<StrMatcher> {
        Some(match m {
            StringMatch::Exact(s) if lower => StrMatcher::Exact(s.to_ascii_lowercase().into()),
            StringMatch::Prefix(s) if lower => StrMatcher::Prefix(s.to_ascii_lowercase().into()),
            StringMatch::Exact(s) => StrMatcher::Exact(s.as_str().into()),
            StringMatch::Prefix(s) => StrMatcher::Prefix(s.as_str().into()),
            StringMatch::Present => StrMatcher::Present,
            StringMatch::Regex(re) => match compile_regex(&re.value) {
                Ok(re) => StrMatcher::Regex(re),
                Err(e) => {
                    let msg = e.to_string().replace('\n', " ");
                    self.err(r, re.pos, format!("invalid regex `{}`: {msg}", re.value));
                    return None;
                }
            },
        })
    }

    fn request_match(&mut self, r: &Resource, m: &istio::HttpMatchRequest) -> Option<RequestMatch> {
        let ignore_case = m.ignore_uri_case == Some(true);
        let uri = match &m.uri {
            Some(StringMatch::Present) => None,
            Some(u) => Some(UriMatch {
                matcher: self.string_match(r, u, ignore_case)?,
                ignore_case,
            }),
            None => None,
        };
        let opt = |this: &mut Self, s: &Option<StringMatch>| match s {
            Some(s) => this.string_match(r, s, false).map(Some),
            None => Some(None),
        };
        let scheme = opt(self, &m.scheme)?;
        let method = opt(self, &m.method)?;
        let authority = opt(self, &m.authority)?;
        let mut headers = Vec::new();
        let mut without_headers = Vec::new();
        for (map, out) in [
            (&m.headers, &mut headers),
            (&m.without_headers, &mut without_headers),
        ] {
            for (k, v) in map {
                let Ok(name) = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()) else {
                    self.err(r, m.pos, format!("invalid header name `{k}`"));
                    continue;
                };
                if let Some(sm) = self.string_match(r, v, false) {
                    out.push((name, sm));
                }
            }
        }
        let mut query_params = Vec::new();
        for (k, v) in &m.query_params {
            if let Some(sm) = self.string_match(r, v, false) {
                query_params.push((k.as_str().into(), sm));
            }
        }
        let port = match m.port {
            Some(p) if p == 0 || p > 65535 => {
                self.err(r, m.pos, format!("port {p} is out of range 1-65535"));
                None
            }
            p => p.map(|p| p as u16),
        };
        if !m.source_labels.is_empty() || m.source_namespace.is_some() {
            self.warn(
                r,
                m.pos,
                "sourceLabels and sourceNamespace need Kubernetes workloads; ignored",
            );
        }
        Some(RequestMatch {
            uri,
            scheme,
            method,
            authority,
            headers,
            without_headers,
            query_params,
            port,
            gateways: m.gateways.iter().map(|g| g.as_str().into()).collect(),
        })
    }

    /// Checks the fields that later features act on, so a config written today keeps loading.
    fn later_fields(&mut self, r: &Resource, route: &istio::HttpRoute) {
        if let Some(retries) = &route.retries
            && let Some(on) = &retries.retry_on
        {
            for cond in on.value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let known = matches!(
                    cond,
                    "5xx"
                        | "gateway-error"
                        | "reset"
                        | "reset-before-request"
                        | "connect-failure"
                        | "envoy-ratelimited"
                        | "retriable-4xx"
                        | "refused-stream"
                        | "retriable-status-codes"
                        | "retriable-headers"
                        | "http3-post-connect-failure"
                        | "cancelled"
                        | "deadline-exceeded"
                        | "internal"
                        | "resource-exhausted"
                        | "unavailable"
                ) || cond.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
                if !known {
                    self.err(r, on.pos, format!("unknown retryOn condition `{cond}`"));
                }
            }
        }
        if let Some(fault) = &route.fault {
            let pct = |this: &mut Self, p: Option<&istio::Percent>, pos: Pos| {
                if p.is_some_and(|p| !(0.0..=100.0).contains(&p.value)) {
                    this.err(r, pos, "percentage must be between 0 and 100");
                }
            };
            if let Some(d) = &fault.delay {
                pct(self, d.percentage.as_ref(), d.pos);
                if d.fixed_delay.is_none() && d.exponential_delay.is_none() {
                    self.err(r, d.pos, "fault delay needs fixedDelay");
                }
            }
            if let Some(a) = &fault.abort {
                pct(self, a.percentage.as_ref(), a.pos);
                match (a.http_status, &a.grpc_status, &a.http2_error) {
                    (Some(s), None, None) => {
                        self.status(r, a.pos, s);
                    }
                    (None, Some(_), None) | (None, None, Some(_)) => {}
                    _ => self.err(
                        r,
                        a.pos,
                        "fault abort takes one of httpStatus, grpcStatus, http2Error",
                    ),
                }
            }
        }
        if let Some(m) = &route.mirror {
            self.check_destination(r, m);
        }
        for m in &route.mirrors {
            self.check_destination(r, &m.destination);
        }
        if let Some(p) = &route.mirror_percentage
            && !(0.0..=100.0).contains(&p.value)
        {
            self.err(r, p.pos, "mirrorPercentage must be between 0 and 100");
        }
        if let Some(cors) = &route.cors_policy {
            for o in &cors.allow_origins {
                self.string_match(r, o, false);
            }
        }
        let parsed_only = [
            ("retries", route.retries.is_some()),
            ("fault", route.fault.is_some()),
            (
                "mirror",
                route.mirror.is_some() || !route.mirrors.is_empty(),
            ),
            ("corsPolicy", route.cors_policy.is_some()),
        ];
        for (name, present) in parsed_only {
            if present {
                self.warn(
                    r,
                    route.pos,
                    format!("{name} is validated but not applied yet"),
                );
            }
        }
    }

    // === Canary ===

    fn canary(&mut self, r: &Resource, canary: &Canary, set: &ResourceSet) {
        let target = &canary.target_ref;
        match target.kind.value.as_str() {
            "VirtualService" => {
                let vs = set.resources.iter().find_map(|x| match &x.spec {
                    Spec::VirtualService(vs) if x.name() == target.name.value => Some(vs),
                    _ => None,
                });
                let Some(vs) = vs else {
                    self.err(
                        r,
                        target.name.pos,
                        format!("VirtualService `{}` is not defined", target.name.value),
                    );
                    return;
                };
                for (field, subset) in [
                    ("primarySubset", &canary.primary_subset),
                    ("canarySubset", &canary.canary_subset),
                ] {
                    let Some(subset) = subset else {
                        self.err(
                            r,
                            canary.pos,
                            format!("a VirtualService target needs `{field}`"),
                        );
                        continue;
                    };
                    let used = vs.http.iter().flat_map(|h| &h.route).any(|d| {
                        d.destination.subset.as_ref().map(|s| &s.value) == Some(&subset.value)
                    });
                    if !used {
                        self.err(
                            r,
                            subset.pos,
                            format!(
                                "subset `{}` is not a destination of VirtualService `{}`",
                                subset.value, target.name.value
                            ),
                        );
                    }
                }
            }
            "Deployment" | "DaemonSet" | "Service" => {}
            other => self.err(
                r,
                target.kind.pos,
                format!("targetRef kind `{other}` is not supported (VirtualService or Deployment)"),
            ),
        }
        if let Some(analysis) = &canary.analysis {
            for m in &analysis.metrics {
                let builtin = matches!(
                    m.name.value.as_str(),
                    "request-success-rate" | "request-duration"
                );
                match &m.template_ref {
                    Some(t) => {
                        let found = set.resources.iter().any(|x| {
                            matches!(x.spec, Spec::MetricTemplate(_)) && x.name() == t.name.value
                        });
                        if !found {
                            self.err(r, t.name.pos, format!("MetricTemplate `{}` is not defined", t.name.value));
                        }
                    }
                    None if !builtin && m.query.is_none() => self.err(
                        r,
                        m.name.pos,
                        format!(
                            "metric `{}` is not builtin (request-success-rate, request-duration) and has no templateRef",
                            m.name.value
                        ),
                    ),
                    None => {}
                }
            }
            for w in &analysis.webhooks {
                let kind = w.kind.as_deref().unwrap_or("rollout");
                if !matches!(
                    kind,
                    "confirm-rollout"
                        | "pre-rollout"
                        | "rollout"
                        | "confirm-traffic-increase"
                        | "confirm-promotion"
                        | "post-rollout"
                        | "rollback"
                        | "event"
                ) {
                    self.err(r, w.pos, format!("unknown webhook type `{kind}`"));
                }
            }
            if analysis.max_weight.is_some_and(|w| w > 100) {
                self.err(r, analysis.pos, "maxWeight must be at most 100");
            }
        }
        self.warn(
            r,
            canary.pos,
            "Canary is validated; the rollout controller is not running yet",
        );
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
