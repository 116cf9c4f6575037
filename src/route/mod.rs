//! Route tables: for each listener, hosts to ordered rules, first match wins.
//!
//! Pure data and lookups, no I/O: built once per config by [`crate::config::validate()`] and read
//! by every request through the snapshot.

pub mod index;
pub mod matcher;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::policy::headers::HeaderEdits;
use crate::policy::rewrite::{Redirect, Rewrite};
use crate::policy::split::Split;
use index::PathIndex;
use matcher::{RequestMatch, RequestView, strip_port};

/// One listener's routing: host to virtual host.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<Box<str>, usize>,
    /// `*.suffix` hosts, longest suffix first; the suffix keeps its leading dot.
    wildcard: Vec<(Box<str>, usize)>,
    /// `prefix.*` hosts (Kong's), longest prefix first; the prefix keeps its trailing dot.
    prefixed: Vec<(Box<str>, usize)>,
    any: Option<usize>,
    vhosts: Vec<VirtualHost>,
}

/// The rules of one host (one VirtualService, or a service's default route).
#[derive(Debug)]
pub struct VirtualHost {
    /// The VirtualService name (or the service host for a default route).
    pub name: Arc<str>,
    /// Rules in order.
    pub rules: Vec<Rule>,
    index: PathIndex,
}

impl VirtualHost {
    /// A virtual host over `rules`.
    pub fn new(name: Arc<str>, rules: Vec<Rule>) -> Self {
        let index = PathIndex::build(rules.iter().map(|r| r.matches.as_slice()));
        VirtualHost { name, rules, index }
    }
}

/// One rule: its conditions, its action and its policies.
#[derive(Debug)]
pub struct Rule {
    /// The `route` metrics label.
    pub label: Arc<str>,
    /// Match blocks, ORed; empty matches everything.
    pub matches: Vec<RequestMatch>,
    /// What to do.
    pub action: Action,
    /// Request and response header edits of the rule.
    pub headers: HeaderEdits,
    /// Path and authority rewrite.
    pub rewrite: Option<Rewrite>,
    /// Whole-request deadline.
    pub timeout: Option<std::time::Duration>,
    /// Injected delays and aborts.
    pub fault: Option<crate::policy::fault::Fault>,
    /// Retries.
    pub retry: crate::policy::retry::RetryPolicy,
    /// What a request that finally fails gets instead.
    pub fallback: Option<Box<crate::policy::fallback::Fallback>>,
    /// Stats handle for responses weir makes itself on this rule.
    pub local_stats: usize,
    /// Where copies of the requests go.
    pub mirrors: Vec<crate::policy::mirror::Mirror>,
    /// Keeps each user on one destination of the split (a cohort cookie).
    pub affinity: Option<Box<crate::policy::affinity::Affinity>>,
    /// The largest request body forwarded (`maxRequestBytes`); `None`: the listener's default.
    pub max_request_bytes: Option<u64>,
    /// Rate limits (an index into the snapshot's limiters).
    pub rate_limit: Option<usize>,
    /// CORS.
    pub cors: Option<Box<crate::policy::cors::Cors>>,
    /// Request changes (`requestTransformer`).
    pub transform: Option<Box<crate::policy::transform::RequestTransform>>,
    /// Response caching (`responseCache`).
    pub response_cache: Option<Box<crate::policy::cache::ResponseCache>>,
    /// The A/B experiment splitting this rule's participants between its variants.
    pub experiment: Option<Box<crate::policy::experiment::RuleExperiment>>,
    /// The access-control scopes it is judged in, in order (indices into the snapshot's).
    pub access: Option<Box<[usize]>>,
}

/// What a rule does with a request.
#[derive(Debug)]
pub enum Action {
    /// Forward to one of several weighted destinations.
    Forward(Split),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Direct {
        /// Status.
        status: StatusCode,
        /// Body.
        body: Bytes,
    },
}

/// A rule that matched, and which of its blocks did.
pub struct Matched<'t> {
    /// The rule.
    pub rule: &'t Rule,
    /// The matching block, if the rule has any.
    pub block: Option<&'t RequestMatch>,
}

impl RouteTable {
    /// Every rule of every virtual host, to change what they carry (not their matches).
    pub fn rules_mut(&mut self) -> impl Iterator<Item = &mut Rule> {
        self.vhosts.iter_mut().flat_map(|v| v.rules.iter_mut())
    }

    /// Adds a virtual host for `hosts` (lower case; `*`, `*.suffix` and `prefix.*` allowed).
    pub fn add(&mut self, hosts: &[String], vhost: VirtualHost) {
        let id = self.vhosts.len();
        self.vhosts.push(vhost);
        for host in hosts {
            if host == "*" {
                self.any = Some(id);
            } else if let Some(suffix) = host.strip_prefix('*') {
                self.wildcard.push((suffix.into(), id));
            } else if let Some(prefix) = host.strip_suffix('*') {
                self.prefixed.push((prefix.into(), id));
            } else {
                self.exact.insert(host.as_str().into(), id);
            }
        }
        self.wildcard
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        self.prefixed
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// Whether a host is routed by this table (exactly, not by wildcard).
    pub fn has_host(&self, host: &str) -> bool {
        self.exact.contains_key(host)
    }

    /// Finds the virtual host for an authority (port ignored, case-insensitive).
    pub fn host(&self, authority: &str) -> Option<&VirtualHost> {
        let host = strip_port(authority);
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let id = self
            .exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
                    .map(|(_, id)| id)
            })
            .or_else(|| {
                self.prefixed
                    .iter()
                    .find(|(prefix, _)| host.len() > prefix.len() && host.starts_with(&**prefix))
                    .map(|(_, id)| id)
            })
            .or(self.any.as_ref())?;
        Some(&self.vhosts[*id])
    }

    /// The first rule of the request's host that matches it.
    pub fn find<'t>(&'t self, req: &RequestView<'_>) -> Option<Matched<'t>> {
        self.host(req.authority)?.find(req)
    }
}

impl VirtualHost {
    /// The first rule that matches.
    pub fn find<'t>(&'t self, req: &RequestView<'_>) -> Option<Matched<'t>> {
        self.index.find(req, |i| {
            let rule = &self.rules[i as usize];
            if rule.matches.is_empty() {
                return Some(Matched { rule, block: None });
            }
            rule.matches
                .iter()
                .find(|m| m.matches(req))
                .map(|block| Matched {
                    rule,
                    block: Some(block),
                })
        })
    }
}
