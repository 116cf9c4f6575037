//! Kong's resources as the Istio resources weir runs (docs/architecture.md: one internal model).
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

mod balancer;
mod circuit_breaker;
mod collect;
mod cors;
mod entities;
mod paths;
mod plugins;
mod ranking;
mod rate_limiting;
mod routes;
mod termination;
mod upstreams;

use super::decode::ConfigError;
use super::istio::CircuitBreakerSettings;
use super::kong::KongService;
use super::resource::{Resource, ResourceSet, Spec};
use circuit_breaker::breaker_plugin;
use circuit_breaker::breaker_settings;
use collect::collect;
use entities::Errors;
pub use entities::KONG_PREFIX;
use entities::Kong;
use entities::Service;
use entities::Upstream;
use plugins::check_plugins;
use routes::virtual_services;
use std::collections::HashMap;
use std::time::Duration;
use upstreams::Target;
use upstreams::host_resources;
use upstreams::target_of;
use upstreams::upstream_resources;

/// Adds the Istio resources for every Kong resource of `set`; problems go to `errors`.
pub fn translate(set: &mut ResourceSet, errors: &mut Vec<ConfigError>) {
    let mut e = Errors(errors);
    let kong = collect(set, &mut e);
    set.warnings.extend(kong.warnings.iter().cloned());
    if kong.services.is_empty() && kong.routes.is_empty() && kong.upstreams.is_empty() {
        return;
    }
    let generated = generate(&kong, set, &mut e);
    set.resources.extend(generated);
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
    // The consumers, for the access plugins' `anonymous` (their own errors are validation's).
    let consumers = crate::config::kong_access::consumers(set, &mut Vec::new());
    out.extend(virtual_services(kong, &targets, &breakers, &consumers, e));
    out
}
