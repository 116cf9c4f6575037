//! Istio's `RequestAuthentication` and `AuthorizationPolicy`, checked and compiled, and the
//! scopes each rule is judged in.
//!
//! weir has no pods for a `selector` to pick. What a policy attaches to:
//! - a **Gateway** (the requests that come in on its listeners): a policy in the root namespace
//!   (`istio-system`) or the Gateway's, without a selector; one whose `selector.matchLabels`
//!   are all among the Gateway's `spec.selector` (or metadata) labels; one whose `targetRef`
//!   names it (`kind: Gateway`).
//! - a **service** (the requests routed to its host, from any listener): a policy in the root
//!   namespace or the ServiceEntry's, without a selector; one whose labels are all among the
//!   service's (its ServiceEntry's labels, those every endpoint carries, and `app: NAME` for a
//!   host `NAME...`, Kubernetes' convention); one whose `targetRef` names it (`kind: Service`
//!   or `ServiceEntry`, by resource name or the host's first label).
//!
//! A rule is judged in its listener's gateway scope, then in the scope of each host it may
//! route to: it passes only if every scope lets it, as a request in Istio passes the gateway
//! and then the destination's sidecar.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::{Checker, ListenerModel};
use crate::config::istio::{
    AuthorizationPolicy, AuthzAction, AuthzRule, Condition as IstioCondition, JwtRule as IstioJwt,
    PolicyTargetReference, RequestAuthentication, WorkloadSelector,
};
use crate::config::{Resource, ResourceSet, Spec};
use crate::policy::access::authn::{Jwks, JwtRuleSpec, Location};
use crate::policy::access::authz::{Condition, Field, Key, Operation, Rule, Source, Values};
use crate::policy::access::jwk::parse_jwks;
use crate::policy::access::kong::{Consumers, Plugin};
use crate::policy::access::pattern::{IpBlock, StrPat};

/// Istio's root namespace: its policies without a selector apply everywhere.
const ROOT_NAMESPACE: &str = "istio-system";
/// How long a fetch of a JWKS may take when the rule says nothing (Istio's default).
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// An AuthorizationPolicy, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySpec {
    /// `NAMESPACE/NAME`.
    pub name: Arc<str>,
    /// Its rules (none: it matches nothing).
    pub rules: Vec<Rule>,
}

/// The checks of one scope, as validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSpec {
    /// `gateway NAME` or `service HOST`.
    pub name: String,
    /// The rules of its RequestAuthentications.
    pub jwt: Vec<JwtRuleSpec>,
    /// Its RequestAuthentications, by name.
    pub authn: Vec<Arc<str>>,
    /// DENY policies.
    pub deny: Vec<PolicySpec>,
    /// AUDIT policies.
    pub audit: Vec<PolicySpec>,
    /// ALLOW policies.
    pub allow: Vec<PolicySpec>,
    /// A Kong route's plugins.
    pub kong: Option<KongSpec>,
}

/// A Kong route's plugins (in the order they run, each with its label) and the consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KongSpec {
    /// The plugins.
    pub plugins: Vec<(Plugin, Arc<str>)>,
    /// Every consumer of the configuration.
    pub consumers: Arc<Consumers>,
}

/// What a policy may attach to.
enum Target<'a> {
    Gateway {
        name: &'a str,
        namespace: &'a str,
        labels: BTreeMap<String, String>,
    },
    Service {
        host: &'a str,
        resource: &'a str,
        namespace: &'a str,
        labels: BTreeMap<String, String>,
    },
}

/// Where a policy is attached.
struct Attach<'a> {
    namespace: &'a str,
    selector: Option<&'a WorkloadSelector>,
    refs: Vec<&'a PolicyTargetReference>,
}

impl Attach<'_> {
    fn applies(&self, t: &Target<'_>) -> bool {
        if !self.refs.is_empty() {
            return self.refs.iter().any(|r| {
                let ns = r.namespace.as_deref().unwrap_or(self.namespace);
                match t {
                    Target::Gateway {
                        name, namespace, ..
                    } => r.kind.value == "Gateway" && r.name.value == *name && ns == *namespace,
                    Target::Service {
                        host,
                        resource,
                        namespace,
                        ..
                    } => {
                        matches!(r.kind.value.as_str(), "Service" | "ServiceEntry")
                            && (r.name.value == *resource
                                || host.split('.').next() == Some(r.name.value.as_str()))
                            && ns == *namespace
                    }
                }
            });
        }
        let (namespace, labels) = match t {
            Target::Gateway {
                namespace, labels, ..
            }
            | Target::Service {
                namespace, labels, ..
            } => (*namespace, labels),
        };
        if self.namespace != ROOT_NAMESPACE && self.namespace != namespace {
            return false;
        }
        match self.selector {
            None => true,
            Some(s) => s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }
}

fn namespace_of(r: &Resource) -> &str {
    r.metadata.namespace.as_deref().unwrap_or("default")
}

fn policy_name(r: &Resource) -> Arc<str> {
    Arc::from(format!("{}/{}", namespace_of(r), r.name()))
}

/// A compiled policy and where it attaches.
enum Compiled<'a> {
    Authn(Attach<'a>, Arc<str>, Vec<JwtRuleSpec>),
    Authz(Attach<'a>, AuthzAction, PolicySpec),
}

impl<'a> Checker<'a> {
    /// A scope's index, adding it if new.
    pub(super) fn intern_scope(&mut self, spec: ScopeSpec) -> usize {
        if let Some(i) = self.scopes.iter().position(|s| *s == spec) {
            return i;
        }
        self.scopes.push(spec);
        self.scopes.len() - 1
    }

    /// Compiles the security policies, gives each listener its trusted hops and each rule
    /// the scopes it is judged in (before those of its Kong plugins, already given).
    pub(super) fn access(&mut self, set: &'a ResourceSet, listeners: &mut [ListenerModel]) {
        let mut compiled = Vec::new();
        for r in &set.resources {
            match &r.spec {
                Spec::RequestAuthentication(ra) => {
                    if let Some(c) = self.request_authentication(r, ra) {
                        compiled.push(c);
                    }
                }
                Spec::AuthorizationPolicy(ap) => {
                    if let Some(c) = self.authorization_policy(r, ap) {
                        compiled.push(c);
                    }
                }
                _ => {}
            }
        }
        for l in listeners.iter_mut() {
            if let Some(g) = &l.gateway
                && let Some(r) = gateway_resource(set, g)
            {
                l.trusted_hops = self.trusted_hops(r);
            }
        }
        if compiled.is_empty() {
            return;
        }
        let intern = |c: &mut Self, spec: ScopeSpec| -> Option<usize> {
            let empty = spec.jwt.is_empty()
                && spec.deny.is_empty()
                && spec.audit.is_empty()
                && spec.allow.is_empty();
            (!empty).then(|| c.intern_scope(spec))
        };
        // The scope of each service host, made once.
        let mut host_scopes: HashMap<String, Option<usize>> = HashMap::new();
        for l in listeners.iter_mut() {
            let gateway_scope = l.gateway.as_ref().and_then(|g| {
                let r = gateway_resource(set, g)?;
                let Spec::Gateway(gw) = &r.spec else {
                    return None;
                };
                let mut labels = r.metadata.labels.clone();
                labels.extend(gw.selector.clone());
                let target = Target::Gateway {
                    name: r.name(),
                    namespace: namespace_of(r),
                    labels,
                };
                intern(
                    self,
                    scope_of(format!("gateway {}", r.name()), &compiled, &target),
                )
            });
            for rule in l.table.rules_mut() {
                let mut ids: Vec<usize> = gateway_scope.into_iter().collect();
                let hosts: Vec<String> = match &rule.action {
                    crate::route::Action::Forward(split) => split
                        .dests
                        .iter()
                        .map(|d| self.stats[d.stats].service.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                for host in hosts {
                    let id = match host_scopes.get(&host) {
                        Some(id) => *id,
                        None => {
                            let spec = self.services.get(&host).map(|s| {
                                let target = Target::Service {
                                    host: &s.host,
                                    resource: s.res.name(),
                                    namespace: namespace_of(s.res),
                                    labels: service_labels(s.res, s.entry, &s.host),
                                };
                                scope_of(format!("service {host}"), &compiled, &target)
                            });
                            let id = spec.and_then(|spec| intern(self, spec));
                            host_scopes.insert(host.clone(), id);
                            id
                        }
                    };
                    if let Some(id) = id
                        && !ids.contains(&id)
                    {
                        ids.push(id);
                    }
                }
                // The route's own (Kong) checks come after.
                ids.extend(rule.access.iter().flat_map(|a| a.iter().copied()));
                if !ids.is_empty() {
                    rule.access = Some(ids.into());
                }
            }
        }
    }

    fn attach(
        &mut self,
        r: &'a Resource,
        selector: Option<&'a WorkloadSelector>,
        target_ref: Option<&'a PolicyTargetReference>,
        target_refs: &'a [PolicyTargetReference],
    ) -> Attach<'a> {
        let refs: Vec<&PolicyTargetReference> = target_ref.into_iter().chain(target_refs).collect();
        for t in &refs {
            if !matches!(
                t.kind.value.as_str(),
                "Gateway" | "Service" | "ServiceEntry"
            ) {
                self.err(
                    r,
                    t.kind.pos,
                    format!(
                        "targetRef kind `{}`: weir attaches policies to a Gateway, Service or ServiceEntry",
                        t.kind.value
                    ),
                );
            }
        }
        if selector.is_some() && !refs.is_empty() {
            self.err(r, r.pos, "selector and targetRef cannot both be set");
        }
        Attach {
            namespace: namespace_of(r),
            selector,
            refs,
        }
    }

    fn request_authentication(
        &mut self,
        r: &'a Resource,
        ra: &'a RequestAuthentication,
    ) -> Option<Compiled<'a>> {
        let attach = self.attach(
            r,
            ra.selector.as_ref(),
            ra.target_ref.as_ref(),
            &ra.target_refs,
        );
        let name = policy_name(r);
        let rules = ra
            .jwt_rules
            .iter()
            .filter_map(|j| self.jwt_rule(r, j, &name))
            .collect();
        Some(Compiled::Authn(attach, name, rules))
    }

    fn jwt_rule(&mut self, r: &Resource, j: &IstioJwt, policy: &Arc<str>) -> Option<JwtRuleSpec> {
        let issuer = j.issuer.value.trim();
        if issuer.is_empty() {
            self.err(r, j.pos, "a jwtRule needs an issuer");
            return None;
        }
        let jwks = match (&j.jwks, &j.jwks_uri) {
            (Some(_), Some(uri)) => {
                self.err(r, uri.pos, "set jwks or jwksUri, not both");
                return None;
            }
            (Some(inline), None) => match parse_jwks(&inline.value) {
                Ok(set) => Jwks::Inline(set),
                Err(e) => {
                    self.err(r, inline.pos, format!("jwks: {e}"));
                    return None;
                }
            },
            (None, Some(uri)) => {
                if !is_http_url(&uri.value) {
                    self.err(
                        r,
                        uri.pos,
                        format!("jwksUri `{}` is not an http:// or https:// URL", uri.value),
                    );
                    return None;
                }
                Jwks::Uri(uri.value.clone())
            }
            (None, None) if is_http_url(issuer) => Jwks::Discovery(issuer.to_owned()),
            (None, None) => {
                self.err(
                    r,
                    j.issuer.pos,
                    format!(
                        "no jwksUri or jwks, and issuer `{issuer}` is not a URL to discover the keys from"
                    ),
                );
                return None;
            }
        };
        let mut from = Vec::new();
        for h in &j.from_headers {
            match HeaderName::from_bytes(h.name.value.trim().as_bytes()) {
                Ok(name) => from.push(Location::Header(name, h.prefix.clone().unwrap_or_default())),
                Err(_) => self.err(
                    r,
                    h.name.pos,
                    format!("`{}` is not a header name", h.name.value),
                ),
            }
        }
        from.extend(j.from_params.iter().map(|p| Location::Param(p.clone())));
        from.extend(j.from_cookies.iter().map(|c| Location::Cookie(c.clone())));
        if from.is_empty() {
            from = Location::defaults();
        }
        let header = |c: &mut Checker<'_>, name: &crate::config::decode::Spanned<String>| {
            HeaderName::from_bytes(name.value.trim().as_bytes())
                .map_err(|_| {
                    c.err(
                        r,
                        name.pos,
                        format!("`{}` is not a header name", name.value),
                    )
                })
                .ok()
        };
        let payload_header = match &j.output_payload_to_header {
            Some(h) => Some(header(self, h)?),
            None => None,
        };
        let mut claim_headers = Vec::new();
        for c in &j.output_claim_to_headers {
            let h = header(self, &c.header)?;
            if c.claim.value.trim().is_empty() {
                self.err(r, c.claim.pos, "an empty claim name");
                return None;
            }
            claim_headers.push((h, c.claim.value.split('.').map(str::to_owned).collect()));
        }
        Some(JwtRuleSpec {
            policy: policy.clone(),
            issuer: issuer.to_owned(),
            audiences: j.audiences.clone(),
            jwks,
            timeout: j.timeout.as_ref().map_or(JWKS_TIMEOUT, |d| d.0),
            from,
            forward: j.forward_original_token.unwrap_or(false),
            payload_header,
            claim_headers,
        })
    }

    fn authorization_policy(
        &mut self,
        r: &'a Resource,
        ap: &'a AuthorizationPolicy,
    ) -> Option<Compiled<'a>> {
        let attach = self.attach(
            r,
            ap.selector.as_ref(),
            ap.target_ref.as_ref(),
            &ap.target_refs,
        );
        let action = ap.action.as_ref().map_or(AuthzAction::Allow, |a| a.value);
        if action == AuthzAction::Custom {
            let pos = ap.action.as_ref().map_or(ap.pos, |a| a.pos);
            self.err(
                r,
                pos,
                "action CUSTOM hands the decision to an external authorizer (meshConfig \
                 extensionProviders), which weir does not have: write the rules as ALLOW or DENY",
            );
            return None;
        }
        let rules = ap
            .rules
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|rule| self.authz_rule(r, rule))
            .collect::<Option<Vec<Rule>>>()?;
        Some(Compiled::Authz(
            attach,
            action,
            PolicySpec {
                name: policy_name(r),
                rules,
            },
        ))
    }

    fn authz_rule(&mut self, r: &Resource, rule: &AuthzRule) -> Option<Rule> {
        let mut out = Rule::default();
        let mut ok = true;
        for f in &rule.from {
            let s = &f.source;
            let src = Source {
                principals: strs(&s.principals, &s.not_principals),
                request_principals: strs(&s.request_principals, &s.not_request_principals),
                namespaces: strs(&s.namespaces, &s.not_namespaces),
                service_accounts: strs(&s.service_accounts, &s.not_service_accounts),
                ip_blocks: self.ips(r, &s.ip_blocks, &s.not_ip_blocks, &mut ok),
                remote_ip_blocks: self.ips(
                    r,
                    &s.remote_ip_blocks,
                    &s.not_remote_ip_blocks,
                    &mut ok,
                ),
            };
            let given = [
                &s.principals,
                &s.not_principals,
                &s.request_principals,
                &s.not_request_principals,
                &s.namespaces,
                &s.not_namespaces,
                &s.service_accounts,
                &s.not_service_accounts,
                &s.ip_blocks,
                &s.not_ip_blocks,
                &s.remote_ip_blocks,
                &s.not_remote_ip_blocks,
            ];
            if given.iter().all(|l| l.is_empty()) {
                self.err(r, f.pos, "a `from` source must set at least one field");
                ok = false;
            }
            out.from.push(src);
        }
        for t in &rule.to {
            let o = &t.operation;
            let mut ports = Field::default();
            for (list, into) in [(&o.ports, &mut ports.any), (&o.not_ports, &mut ports.none)] {
                for p in list {
                    match p.value.trim().parse::<u16>() {
                        Ok(n) if n > 0 => into.push(n),
                        _ => {
                            self.err(r, p.pos, format!("`{}` is not a port (1-65535)", p.value));
                            ok = false;
                        }
                    }
                }
            }
            let mut paths = Field::default();
            for (list, into) in [(&o.paths, &mut paths.any), (&o.not_paths, &mut paths.none)] {
                for p in list {
                    match StrPat::parse_path(&p.value) {
                        Ok(pat) => into.push(pat),
                        Err(e) => {
                            self.err(r, p.pos, e);
                            ok = false;
                        }
                    }
                }
            }
            let op = Operation {
                hosts: strs(&o.hosts, &o.not_hosts),
                ports,
                methods: strs(&o.methods, &o.not_methods),
                paths,
            };
            let given = [
                &o.hosts,
                &o.not_hosts,
                &o.ports,
                &o.not_ports,
                &o.methods,
                &o.not_methods,
                &o.paths,
                &o.not_paths,
            ];
            if given.iter().all(|l| l.is_empty()) {
                self.err(r, t.pos, "a `to` operation must set at least one field");
                ok = false;
            }
            out.to.push(op);
        }
        for c in &rule.when {
            match self.condition(r, c) {
                Some(cond) => out.when.push(cond),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn ips(
        &mut self,
        r: &Resource,
        any: &[crate::config::decode::Spanned<String>],
        none: &[crate::config::decode::Spanned<String>],
        ok: &mut bool,
    ) -> Field<IpBlock> {
        let mut field = Field::default();
        for (list, into) in [(any, &mut field.any), (none, &mut field.none)] {
            for v in list {
                match IpBlock::parse(&v.value) {
                    Ok(b) => into.push(b),
                    Err(e) => {
                        self.err(r, v.pos, e);
                        *ok = false;
                    }
                }
            }
        }
        field
    }

    fn condition(&mut self, r: &Resource, c: &IstioCondition) -> Option<Condition> {
        let key_text = c.key.value.trim();
        if c.values.is_empty() && c.not_values.is_empty() {
            self.err(
                r,
                c.key.pos,
                format!("condition `{key_text}` needs values or notValues"),
            );
            return None;
        }
        let key = match parse_key(key_text) {
            Ok(k) => k,
            Err(e) => {
                self.err(r, c.key.pos, e);
                return None;
            }
        };
        let values = match key {
            Key::SourceIp | Key::RemoteIp | Key::DestinationIp => {
                let mut ok = true;
                let f = self.ips(r, &c.values, &c.not_values, &mut ok);
                if !ok {
                    return None;
                }
                Values::Ip(f)
            }
            _ => Values::Str(strs(&c.values, &c.not_values)),
        };
        Some(Condition { key, values })
    }

    /// `numTrustedProxies` of a Gateway's `proxy.istio.io/config` annotation (0 without it).
    fn trusted_hops(&mut self, r: &Resource) -> u32 {
        let Some(text) = r.metadata.annotations.get("proxy.istio.io/config") else {
            return 0;
        };
        match trusted_hops_of(text) {
            Ok(n) => n,
            Err(e) => {
                self.err(
                    r,
                    r.metadata.pos,
                    format!("annotation proxy.istio.io/config: {e}"),
                );
                0
            }
        }
    }
}

/// `gatewayTopology.numTrustedProxies` of a `proxy.istio.io/config` value (JSON, or the YAML
/// `key: value` lines Istio also accepts).
fn trusted_hops_of(text: &str) -> Result<u32, String> {
    let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let found = match value {
        Some(v) => v
            .get("gatewayTopology")
            .and_then(|g| g.get("numTrustedProxies"))
            .cloned(),
        None => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("numTrustedProxies:"))
            .map(|v| serde_json::Value::from(v.trim().parse::<u64>().unwrap_or(u64::MAX))),
    };
    match found {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= 64)
            .ok_or_else(|| format!("numTrustedProxies must be a number of hops 0-64, not {v}")),
    }
}

fn gateway_resource<'s>(set: &'s ResourceSet, name: &str) -> Option<&'s Resource> {
    set.resources
        .iter()
        .find(|r| matches!(r.spec, Spec::Gateway(_)) && r.name() == name)
}

/// A service's labels: its ServiceEntry's, those all its endpoints carry, and `app` from its
/// host's first label.
fn service_labels(
    r: &Resource,
    se: &crate::config::istio::ServiceEntry,
    host: &str,
) -> BTreeMap<String, String> {
    let mut labels = r.metadata.labels.clone();
    if let Some((first, rest)) = se.endpoints.split_first() {
        for (k, v) in &first.labels {
            if rest.iter().all(|e| e.labels.get(k) == Some(v)) {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(app) = host.split('.').next() {
        labels
            .entry("app".to_owned())
            .or_insert_with(|| app.to_owned());
    }
    labels
}

fn strs(
    any: &[crate::config::decode::Spanned<String>],
    none: &[crate::config::decode::Spanned<String>],
) -> Field<StrPat> {
    Field {
        any: any.iter().map(|v| StrPat::parse(v.value.trim())).collect(),
        none: none.iter().map(|v| StrPat::parse(v.value.trim())).collect(),
    }
}

fn is_http_url(s: &str) -> bool {
    s.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
}

/// A `when` key.
fn parse_key(text: &str) -> Result<Key, String> {
    let bracketed = |prefix: &str| -> Option<Vec<String>> {
        let rest = text.strip_prefix(prefix)?;
        let mut out = Vec::new();
        let mut rest = rest;
        while let Some(r) = rest.strip_prefix('[') {
            let (name, tail) = r.split_once(']')?;
            if name.is_empty() {
                return None;
            }
            out.push(name.to_owned());
            rest = tail;
        }
        (rest.is_empty() && !out.is_empty()).then_some(out)
    };
    Ok(match text {
        "source.ip" => Key::SourceIp,
        "remote.ip" => Key::RemoteIp,
        "source.principal" => Key::SourcePrincipal,
        "source.namespace" => Key::SourceNamespace,
        "source.serviceAccount" => Key::SourceServiceAccount,
        "request.auth.principal" => Key::AuthPrincipal,
        "request.auth.audiences" => Key::AuthAudiences,
        "request.auth.presenter" => Key::AuthPresenter,
        "destination.ip" => Key::DestinationIp,
        "destination.port" => Key::DestinationPort,
        _ => {
            if let Some(mut names) = bracketed("request.headers") {
                if names.len() != 1 {
                    return Err(format!("`{text}`: one header name in brackets"));
                }
                let name = names.remove(0);
                Key::Header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("`{name}` is not a header name"))?,
                )
            } else if let Some(path) = bracketed("request.auth.claims") {
                Key::AuthClaim(path)
            } else {
                return Err(format!(
                    "condition key `{text}` is not one weir knows: request.headers[NAME], \
                     source.ip, remote.ip, source.principal, source.namespace, \
                     source.serviceAccount, request.auth.principal, request.auth.audiences, \
                     request.auth.presenter, request.auth.claims[NAME], destination.ip, \
                     destination.port"
                ));
            }
        }
    })
}

/// The scope of `target`: every compiled policy that applies to it.
fn scope_of(name: String, compiled: &[Compiled<'_>], target: &Target<'_>) -> ScopeSpec {
    let mut s = ScopeSpec {
        name,
        ..ScopeSpec::default()
    };
    for c in compiled {
        match c {
            Compiled::Authn(a, name, rules) if a.applies(target) => {
                s.jwt.extend(rules.iter().cloned());
                s.authn.push(name.clone());
            }
            Compiled::Authz(a, action, p) if a.applies(target) => match action {
                AuthzAction::Deny => s.deny.push(p.clone()),
                AuthzAction::Audit => s.audit.push(p.clone()),
                _ => s.allow.push(p.clone()),
            },
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_keys() {
        assert_eq!(
            parse_key("request.auth.claims[groups]"),
            Ok(Key::AuthClaim(vec!["groups".into()]))
        );
        assert_eq!(
            parse_key("request.auth.claims[a][b]"),
            Ok(Key::AuthClaim(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_key("request.headers[x-token]"),
            Ok(Key::Header(HeaderName::from_static("x-token")))
        );
        for bad in [
            "request.headers[]",
            "request.headers[a][b]",
            "request.auth.claims",
            "connection.sni2",
            "request.headers[a",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_hops_from_the_gateway_annotation() {
        assert_eq!(
            trusted_hops_of(r#"{"gatewayTopology" : { "numTrustedProxies": 2 } }"#),
            Ok(2)
        );
        assert_eq!(
            trusted_hops_of("gatewayTopology:\n  numTrustedProxies: 1\n"),
            Ok(1)
        );
        assert_eq!(trusted_hops_of("{}"), Ok(0));
        assert!(trusted_hops_of(r#"{"gatewayTopology":{"numTrustedProxies":-1}}"#).is_err());
        assert!(trusted_hops_of("gatewayTopology:\n  numTrustedProxies: x\n").is_err());
    }
}
