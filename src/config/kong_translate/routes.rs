//! Routes as VirtualServices: one per host, naming the routes that can match it, in Kong's
//! order.

use super::cors::cors;
use super::entities::{Errors, Kong, meta, resource, slug};
use super::plugins::plugin_for;
use super::ranking::{Ranked, RoutePlugins, rank_route};
use super::rate_limiting::rate_limit;
use super::termination::termination;
use super::upstreams::Target;
use crate::config::istio::{CircuitBreakerSettings, VirtualService};
use crate::config::kong::{ProxyCacheConfig, RequestTransformerConfig, decode_config};
use crate::config::kong_access::{ACCESS_PLUGINS, plugin as access_plugin};
use crate::config::resource::{Resource, Spec};
use std::collections::HashMap;
use std::time::Duration;

pub(super) fn virtual_services(
    kong: &Kong,
    targets: &HashMap<&str, Target>,
    breakers: &HashMap<&str, (CircuitBreakerSettings, Option<Duration>)>,
    consumers: &crate::policy::access::kong::Consumers,
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
            access: ACCESS_PLUGINS
                .iter()
                .filter_map(|name| plugin_for(kong, service, r, name))
                .filter_map(|found| {
                    let (at, p) = found;
                    // Checked here, where the plugin's own file is known.
                    access_plugin(p, &at.file, consumers, e.0)?;
                    let scope = if r.plugins.iter().any(|x| std::ptr::eq(x, found)) {
                        format!(
                            "route/{}",
                            r.spec.name.as_ref().map_or("", |n| n.value.as_str())
                        )
                    } else if service
                        .is_some_and(|s| s.plugins.iter().any(|x| std::ptr::eq(x, found)))
                    {
                        format!("service/{}", r.service)
                    } else {
                        "global".to_owned()
                    };
                    let mut p = p.clone();
                    p.instance_name
                        .get_or_insert_with(|| format!("{}@{scope}", p.name.value));
                    Some(p)
                })
                .collect(),
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
pub(super) fn covers(pattern: &str, host: &str) -> bool {
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
