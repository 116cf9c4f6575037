//! The runtime snapshot: everything a request needs, built once per config and swapped whole.
//!
//! Requests take an `Arc` of the current snapshot and finish on it, whatever is applied meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::{Cluster, Retained};
use crate::config::ScopeSpec;
use crate::config::{Model, ResourceSet};
use crate::metrics::{DestStats, Metrics};
use crate::policy::access::authn::{JwtRule, KeySource};
use crate::policy::access::{AuthCounters, Policy, Scope};
use crate::policy::experiment::{Design, Live};
use crate::policy::fallback::StaleCache;
use crate::policy::ratelimit::RateLimiter;
use crate::route::RouteTable;
use crate::tls::ServerTls;

/// One listener's routes.
#[derive(Debug)]
pub(crate) struct ListenerRoutes {
    /// The bound address (its identity).
    pub(crate) addr: SocketAddr,
    /// The Gateway it belongs to, if any.
    pub(crate) gateway: Option<String>,
    /// The routes.
    pub(crate) table: RouteTable,
    /// TLS sites, when the listener terminates TLS.
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// Plain requests are redirected to HTTPS (`httpsRedirect`).
    pub(crate) https_redirect: bool,
    /// Proxies trusted to name the client in `X-Forwarded-For`.
    pub(crate) trusted_hops: u32,
}

/// An A/B experiment: what the request path runs, and its counts (kept across reloads).
#[derive(Debug)]
pub(crate) struct Experiment {
    /// The design.
    pub(crate) design: Arc<Design>,
    /// The counts, and what it does to requests now.
    pub(crate) live: Arc<Live>,
}

/// An immutable, complete runtime configuration.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Increases by one with every applied change.
    pub(crate) generation: u64,
    /// The resources it was built from.
    pub(crate) resources: Arc<ResourceSet>,
    /// Listeners; the first is the mesh listener.
    pub(crate) listeners: Vec<ListenerRoutes>,
    /// Clusters, indexed by route destinations.
    pub(crate) clusters: Vec<Cluster>,
    /// Metrics handles, indexed by routes.
    pub(crate) stats: Vec<DestStats>,
    /// Stale caches of fallbacks, indexed by routes.
    pub(crate) caches: Vec<Arc<StaleCache>>,
    /// Rate limiters, indexed by routes.
    pub(crate) limiters: Vec<Arc<RateLimiter>>,
    /// A/B experiments, indexed by routes.
    pub(crate) experiments: Vec<Experiment>,
    /// Access-control scopes, indexed by routes.
    pub(crate) scopes: Vec<Scope>,
    /// The query parameters the scopes read credentials from.
    credential_params: Vec<Box<str>>,
    /// Handles for requests no rule matched.
    pub(crate) unrouted: DestStats,
    /// Warnings from validation.
    pub(crate) warnings: Vec<String>,
}

impl Snapshot {
    /// Builds the runtime snapshot of a validated model.
    pub(crate) fn build(
        model: Model,
        resources: Arc<ResourceSet>,
        generation: u64,
        state: &Retained,
        metrics: &Metrics,
    ) -> Snapshot {
        let scopes: Vec<Scope> = model
            .scopes
            .into_iter()
            .map(|spec| scope(spec, state, metrics))
            .collect();
        let mut credential_params: Vec<Box<str>> = Vec::new();
        for p in scopes.iter().flat_map(Scope::credential_params) {
            if !credential_params.iter().any(|c| **c == *p) {
                credential_params.push(p.into());
            }
        }
        Snapshot {
            generation,
            resources,
            listeners: model
                .listeners
                .into_iter()
                .map(|l| ListenerRoutes {
                    addr: l.addr,
                    gateway: l.gateway,
                    table: l.table,
                    tls: l.tls.server,
                    https_redirect: l.tls.https_redirect,
                    trusted_hops: l.trusted_hops,
                })
                .collect(),
            clusters: model
                .clusters
                .into_iter()
                .map(|spec| Cluster::new(spec, state, metrics))
                .collect(),
            stats: model
                .stats
                .iter()
                .map(|k| metrics.dest_stats(&k.service, &k.version, &k.route))
                .collect(),
            caches: model
                .caches
                .iter()
                .map(|(name, spec)| state.cache(name, spec))
                .collect(),
            limiters: model
                .limiters
                .iter()
                .map(|(scope, spec)| state.limiter(scope, spec))
                .collect(),
            experiments: model
                .experiments
                .into_iter()
                .map(|x| {
                    let d = &x.design;
                    let live = state.experiment(&x.identity, || {
                        let goals: Vec<String> = d.goals.iter().map(|g| g.name.clone()).collect();
                        let (users, conversions) = metrics.experiment(&d.name, &d.variants, &goals);
                        Live::new(d.variants.len(), goals.len(), users, conversions)
                    });
                    Experiment {
                        design: x.design,
                        live,
                    }
                })
                .collect(),
            scopes,
            credential_params,
            unrouted: metrics.dest_stats("", "", ""),
            warnings: model.warnings,
        }
    }

    /// The query parameters that carry credentials (tokens, API keys): the access log shows
    /// their values as `REDACTED`.
    pub(crate) fn credential_params(&self) -> impl Iterator<Item = &str> + Clone {
        self.credential_params.iter().map(|p| &**p)
    }

    /// Every key set the access checks read, once each.
    pub(crate) fn key_sources(&self) -> Vec<Arc<KeySource>> {
        let mut out: Vec<Arc<KeySource>> = Vec::new();
        for k in self
            .scopes
            .iter()
            .flat_map(|s| s.jwt.iter().map(|r| &r.keys))
        {
            if !out.iter().any(|o| Arc::ptr_eq(o, k)) {
                out.push(k.clone());
            }
        }
        out
    }

    /// A snapshot with no routes (before the first config is applied).
    pub(crate) fn empty(mesh: SocketAddr, metrics: &Metrics) -> Snapshot {
        Snapshot {
            generation: 0,
            resources: Arc::default(),
            listeners: vec![ListenerRoutes {
                addr: mesh,
                gateway: None,
                table: RouteTable::default(),
                tls: None,
                https_redirect: false,
                trusted_hops: 0,
            }],
            clusters: Vec::new(),
            stats: Vec::new(),
            caches: Vec::new(),
            limiters: Vec::new(),
            experiments: Vec::new(),
            scopes: Vec::new(),
            credential_params: Vec::new(),
            unrouted: metrics.dest_stats("", "", ""),
            warnings: Vec::new(),
        }
    }

    /// The listener bound at `addr`.
    pub(crate) fn listener(&self, addr: SocketAddr) -> Option<&ListenerRoutes> {
        self.listeners.iter().find(|l| l.addr == addr)
    }

    /// The routes of the listener bound at `addr`.
    pub(crate) fn table(&self, addr: SocketAddr) -> Option<&RouteTable> {
        self.listener(addr).map(|l| &l.table)
    }
}

/// The runtime checks of a scope: its rules with their (shared) key sets, its policies with
/// their counters.
fn scope(spec: ScopeSpec, state: &Retained, metrics: &Metrics) -> Scope {
    let jwt = spec
        .jwt
        .into_iter()
        .map(|rule| {
            let keys = state.key_source(&rule.jwks, rule.timeout, || {
                let (held, errors) = metrics.jwks(rule.jwks.label());
                KeySource::new(rule.jwks.clone(), rule.timeout, held, errors)
            });
            Arc::new(JwtRule { spec: rule, keys })
        })
        .collect();
    let policies = |list: Vec<crate::config::PolicySpec>| {
        list.into_iter()
            .map(|p| Policy {
                counters: AuthCounters::from(metrics.auth(&p.name)),
                name: p.name,
                rules: p.rules,
            })
            .collect()
    };
    Scope {
        name: spec.name.into(),
        authn_counters: spec
            .authn
            .into_iter()
            .map(|n| {
                let c = AuthCounters::from(metrics.auth(&n));
                (n, c)
            })
            .collect(),
        jwt,
        deny: policies(spec.deny),
        audit: policies(spec.audit),
        allow: policies(spec.allow),
        unmatched: AuthCounters::from(metrics.auth("none")),
        kong: spec.kong.map(|k| crate::policy::access::kong::Chain {
            plugins: k
                .plugins
                .into_iter()
                .map(|(p, label)| {
                    let counters = AuthCounters::from(metrics.auth(&label));
                    (p, label, counters)
                })
                .collect(),
            consumers: k.consumers,
        }),
    }
}
