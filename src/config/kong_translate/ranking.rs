//! One route's rules and their rank, as Kong's router orders them, with what its plugins make of
//! them.

use super::entities::{At, Errors, Route, Service};
use super::paths::{retries, rewrite};
use super::termination::Termination;
use super::upstreams::Target;
use crate::config::decode::{Dur, Spanned};
use crate::config::istio::{
    CorsPolicy, Destination, HttpMatchRequest, HttpRoute, HttpRouteDestination, PortSelector,
    RateLimitSettings, StringMatch,
};
use crate::config::kong::{ProxyCacheConfig, RequestTransformerConfig};
use std::collections::BTreeMap;
use std::time::Duration;

/// One Kong route, or the part of it with one kind and length of path: a rule and its rank.
pub(super) struct Ranked {
    /// Kong's sort key, highest first.
    pub(super) key: (u8, bool, usize, bool, i64, usize),
    /// Declaration order, for ties.
    pub(super) order: usize,
    /// Lower-case host patterns (empty: any host).
    pub(super) hosts: Vec<String>,
    pub(super) rule: HttpRoute,
    pub(super) at: At,
}

/// What a route's plugins make of its rules.
pub(super) struct RoutePlugins {
    /// The circuit breaker's request timeout.
    pub(super) timeout: Option<Duration>,
    /// `request-termination`.
    pub(super) terminate: Option<Termination>,
    /// `rate-limiting`.
    pub(super) rate_limit: Option<RateLimitSettings>,
    /// `cors`.
    pub(super) cors: Option<CorsPolicy>,
    /// `request-transformer`.
    pub(super) transform: Option<RequestTransformerConfig>,
    /// `proxy-cache`.
    pub(super) cache: Option<ProxyCacheConfig>,
    /// The access plugins (`jwt`, `key-auth`, `basic-auth`, `ip-restriction`, `acl`).
    pub(super) access: Vec<crate::config::kong::KongPlugin>,
}

pub(super) fn rank_route(
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
            access_plugins: plugins.access.clone(),
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
