//! Access control: who may pass. A rule's checks are a list of scopes, each judged on its
//! own, as Istio judges a request at the gateway and again at the destination's workload;
//! the request passes only if every scope lets it.
//!
//! In one scope, in Istio's order: the tokens are authenticated (`authn.rs`: an invalid token
//! is refused with 401, no token passes on unauthenticated), then the DENY policies (any
//! match: 403), then the AUDIT ones (logged), then the ALLOW ones (when there are any, one
//! must match: else 403 `RBAC: access denied`). Policies are compiled (`authz.rs`,
//! `pattern.rs`) when the configuration is applied; keys are read (`jwk.rs`), tokens checked
//! (`jwt.rs`), with bounded work whatever a client sends.

pub mod authn;
pub mod authz;
pub mod body_key;
mod der;
pub mod jwk;
pub mod jwt;
pub mod kong;
pub mod pattern;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use prometheus_client::metrics::counter::Counter;

use authn::{Authn, Identity, JwtRule};
use authz::Rule;

/// What the checks see of a request.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, without its query.
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// The authority (`Host`).
    pub authority: &'a str,
    /// The port it came to.
    pub port: u16,
    /// The peer's address.
    pub peer: IpAddr,
    /// The original client's address (`X-Forwarded-For` through trusted hops; else the peer).
    pub remote: IpAddr,
    /// The address it came to.
    pub destination: IpAddr,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The peer's identity, from its client certificate (`cluster.local/ns/NS/sa/SA`).
    pub principal: Option<&'a str>,
    /// The body, when it has none or has been read for the checks (empty when it was too
    /// large to search); `None` while it is unread (see [`wants_body`]).
    pub body: Option<&'a [u8]>,
}

/// The original client's address: with `trusted` proxies in front, the `trusted`-th address
/// from the right of `X-Forwarded-For`; with none (the default), or too few addresses, the
/// peer's. A client cannot make itself someone else by sending the header.
pub fn remote_ip(headers: &HeaderMap, peer: IpAddr, trusted: u32) -> IpAddr {
    if trusted == 0 {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let Some(i) = hops.len().checked_sub(trusted as usize) else {
        return peer;
    };
    hops[i].parse().unwrap_or(peer)
}

/// A change to the upstream request after the checks passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Remove a header (a token not forwarded).
    Remove(HeaderName),
    /// Set a header (a token's payload or claim).
    Set(HeaderName, HeaderValue),
    /// Remove a query parameter (a credential not forwarded).
    RemoveParam(String),
    /// Send this body instead (a credential taken out of it).
    SetBody(bytes::Bytes),
}

/// The counters of one policy's decisions.
#[derive(Clone, Debug, Default)]
pub struct AuthCounters {
    /// Requests it let through.
    pub allowed: Counter,
    /// Requests it refused.
    pub denied: Counter,
    /// Requests it saw without credentials.
    pub unauthenticated: Counter,
    /// Requests it refused for bad credentials.
    pub invalid_token: Counter,
}

impl From<[Counter; 4]> for AuthCounters {
    fn from([allowed, denied, unauthenticated, invalid_token]: [Counter; 4]) -> Self {
        AuthCounters {
            allowed,
            denied,
            unauthenticated,
            invalid_token,
        }
    }
}

/// An AuthorizationPolicy of a scope.
#[derive(Debug)]
pub struct Policy {
    /// `NAMESPACE/NAME`.
    pub name: Arc<str>,
    /// Its rules; it matches a request that matches any.
    pub rules: Vec<Rule>,
    /// Its decisions.
    pub counters: AuthCounters,
}

impl Policy {
    fn matches(&self, f: &Facts<'_>, id: Option<&Identity>) -> bool {
        self.rules.iter().any(|r| r.matches(f, id))
    }
}

/// The checks of one place (a gateway, a destination's workload).
#[derive(Debug)]
pub struct Scope {
    /// What it is (`gateway NS/NAME`, `service HOST`), for logs.
    pub name: Arc<str>,
    /// Its RequestAuthentications' rules.
    pub jwt: Vec<Arc<JwtRule>>,
    /// The counters of each RequestAuthentication, by name.
    pub authn_counters: Vec<(Arc<str>, AuthCounters)>,
    /// DENY policies.
    pub deny: Vec<Policy>,
    /// AUDIT policies.
    pub audit: Vec<Policy>,
    /// ALLOW policies.
    pub allow: Vec<Policy>,
    /// Counts denials when no ALLOW policy matched.
    pub unmatched: AuthCounters,
    /// A Kong route's plugins.
    pub kong: Option<kong::Chain>,
}

/// A refusal: what the client gets, and who decided.
#[derive(Debug)]
pub struct Denial {
    /// 401 or 403 (or a configured status).
    pub status: StatusCode,
    /// The body.
    pub body: String,
    /// `WWW-Authenticate`, for a 401.
    pub challenge: Option<HeaderValue>,
    /// The policy that decided.
    pub policy: Arc<str>,
    /// The body is JSON (Kong's `{"message": ...}`), else plain text.
    pub json: bool,
}

/// The body of Istio's (Envoy's RBAC filter's) 403.
pub const RBAC_DENIED: &str = "RBAC: access denied";

impl Scope {
    /// The query parameters it reads credentials from (tokens, API keys).
    pub fn credential_params(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .jwt
            .iter()
            .flat_map(|r| r.spec.from.iter())
            .filter_map(|l| match l {
                authn::Location::Param(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        if let Some(k) = &self.kong {
            for (p, _, _) in &k.plugins {
                match p {
                    kong::Plugin::KeyAuth {
                        key_names,
                        in_query: true,
                        ..
                    } => out.extend(key_names.iter().map(String::as_str)),
                    kong::Plugin::Jwt { params, .. } => {
                        out.extend(params.iter().map(String::as_str))
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Judges a request; `now` in seconds since the epoch.
    fn check(&self, f: &Facts<'_>, now: i64, out: &mut Granted) -> Result<(), Box<Denial>> {
        if let Some(chain) = &self.kong {
            let passed = chain.check(f, now, &mut out.edits)?;
            if passed.consumer.is_some() {
                out.consumer = passed.consumer;
            }
        }
        let edits = &mut out.edits;
        let counters = |policy: &str| {
            self.authn_counters
                .iter()
                .find(|(n, _)| &**n == policy)
                .map(|(_, c)| c)
        };
        let identity = if self.jwt.is_empty() {
            None
        } else {
            match authn::authenticate(&self.jwt, f, now) {
                Ok(Authn::NoToken) => {
                    for (_, c) in &self.authn_counters {
                        c.unauthenticated.inc();
                    }
                    None
                }
                Ok(Authn::Valid(id, more)) => {
                    edits.extend(more);
                    Some(id)
                }
                Err(refused) => {
                    if let Some(c) = counters(&refused.policy) {
                        c.invalid_token.inc();
                    }
                    tracing::debug!(scope = %self.name, policy = %refused.policy, "Token refused: {}", refused.error);
                    return Err(Box::new(Denial {
                        status: StatusCode::UNAUTHORIZED,
                        body: refused.error.to_string(),
                        challenge: HeaderValue::from_str(&format!(
                            "Bearer realm=\"http://{}{}\", error=\"invalid_token\"",
                            f.authority, f.path
                        ))
                        .ok(),
                        policy: refused.policy,
                        json: false,
                    }));
                }
            }
        };
        let id = identity.as_ref();
        let forbidden = |policy: Arc<str>| {
            Err(Box::new(Denial {
                status: StatusCode::FORBIDDEN,
                body: RBAC_DENIED.to_owned(),
                challenge: None,
                policy,
                json: false,
            }))
        };
        if let Some(p) = self.deny.iter().find(|p| p.matches(f, id)) {
            p.counters.denied.inc();
            return forbidden(p.name.clone());
        }
        for p in self.audit.iter().filter(|p| p.matches(f, id)) {
            p.counters.allowed.inc();
            tracing::info!(policy = %p.name, method = f.method, path = f.path, peer = %f.peer, "AUDIT policy matched.");
        }
        if self.allow.is_empty() {
            return Ok(());
        }
        match self.allow.iter().find(|p| p.matches(f, id)) {
            Some(p) => {
                p.counters.allowed.inc();
                Ok(())
            }
            None => {
                self.unmatched.denied.inc();
                forbidden(Arc::from("none"))
            }
        }
    }
}

/// What the checks established for a request they let through.
#[derive(Debug, Default)]
pub struct Granted {
    /// Changes to the upstream request.
    pub edits: Vec<Edit>,
    /// The Kong consumer, if one was found (for `limit_by: consumer`).
    pub consumer: Option<Arc<str>>,
}

/// Judges a request in every scope, in order.
pub fn check<'s>(
    scopes: impl Iterator<Item = &'s Scope>,
    f: &Facts<'_>,
) -> Result<Granted, Box<Denial>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut granted = Granted::default();
    for s in scopes {
        s.check(f, now, &mut granted)?;
    }
    Ok(granted)
}

/// Whether the checks need the request's body, which is unread: Kong's `key-auth` with
/// `key_in_body` and no key in the headers or the query. The request path then reads it (up to
/// a bound) and asks again.
pub fn wants_body<'s>(mut scopes: impl Iterator<Item = &'s Scope>, f: &Facts<'_>) -> bool {
    f.body.is_none() && scopes.any(|s| s.kong.as_ref().is_some_and(|k| k.wants_body(f)))
}

/// The body the edits replace the request's with, if any.
pub fn new_body(edits: &[Edit]) -> Option<&bytes::Bytes> {
    edits.iter().rev().find_map(|e| match e {
        Edit::SetBody(b) => Some(b),
        _ => None,
    })
}

/// Applies the edits to the upstream request's headers (query edits: [`strip_params`]).
pub fn apply(edits: &[Edit], headers: &mut HeaderMap) {
    for e in edits {
        match e {
            Edit::Remove(name) => {
                headers.remove(name);
            }
            Edit::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            Edit::RemoveParam(_) | Edit::SetBody(_) => {}
        }
    }
}

/// `path_and_query` without the query parameters the edits remove; `None` when they remove
/// none of its parameters.
pub fn strip_params(edits: &[Edit], path_and_query: &str) -> Option<String> {
    let names: Vec<&str> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::RemoveParam(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let (path, query) = path_and_query.split_once('?')?;
    if names.is_empty() {
        return None;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| !names.contains(&kv.split_once('=').map_or(*kv, |(k, _)| k)))
        .collect();
    Some(if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

#[cfg(test)]
mod tests;
