//! Upstreams and their targets as ServiceEntries and DestinationRules; services that send to a
//! host directly, likewise.

use super::balancer::load_balancer;
use super::entities::{
    DEFAULT_TARGET_PORT, DEFAULT_TIMEOUT_MS, DEFAULT_WEIGHT, Errors, MAX_TIMEOUT_MS, Service,
    Upstream, meta, resource, slug,
};
use crate::config::decode::{Dur, Spanned};
use crate::config::istio::{
    CircuitBreakerSettings, ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings,
    DestinationRule, LoadBalancerSettings, Resolution, ServiceEntry, ServicePort, TcpSettings,
    TrafficPolicy, WorkloadEntry,
};
use crate::config::resource::{Resource, Spec};
use std::net::IpAddr;
use std::time::Duration;

/// Where a service sends requests.
pub(super) struct Target {
    pub(super) protocol: String,
    /// The host routes send to (an upstream's name, or the service's host).
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) path: Option<String>,
    /// Whether `host` names an upstream (whose targets carry their ports).
    pub(super) upstream: bool,
}

pub(super) fn target_of(s: &Service, e: &mut Errors<'_>) -> Option<Target> {
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

/// A ServiceEntry and DestinationRule for an upstream.
pub(super) fn upstream_resources(
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
pub(super) fn host_resources(
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

pub(super) fn service_port(port: u16) -> ServicePort {
    ServicePort {
        number: u32::from(port),
        protocol: Some("HTTP".to_owned()),
        name: Some(format!("http-{port}")),
        ..ServicePort::default()
    }
}

pub(super) fn traffic_policy(
    s: &Service,
    t: &Target,
    lb: Option<LoadBalancerSettings>,
) -> TrafficPolicy {
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

/// `host:port`, `[v6]:port`, or a host alone (Kong's default port 8000).
pub(super) fn split_target(t: &str) -> Option<(String, u16)> {
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
