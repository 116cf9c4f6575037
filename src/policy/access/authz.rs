//! Istio `AuthorizationPolicy` rules, compiled: what a request must be (`from`), do (`to`) and
//! carry (`when`) for a rule to match.

use std::net::IpAddr;

use super::pattern::{IpBlock, StrPat};
use super::{Facts, Identity};

/// Values a field must match (any) and must not match (none); both empty: not asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field<T> {
    /// Any of these.
    pub any: Vec<T>,
    /// None of these.
    pub none: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Field {
            any: Vec::new(),
            none: Vec::new(),
        }
    }
}

impl<T> Field<T> {
    /// Whether `hit` holds for the request's value as this field asks.
    fn check(&self, hit: impl Fn(&T) -> bool) -> bool {
        (self.any.is_empty() || self.any.iter().any(&hit)) && !self.none.iter().any(hit)
    }
}

impl Field<StrPat> {
    /// For a value that may be absent: an absent value matches no pattern.
    fn check_opt(&self, value: Option<&str>) -> bool {
        self.check(|p| value.is_some_and(|v| p.matches(v)))
    }
}

/// `Rule.From.source`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// Peer identities.
    pub principals: Field<StrPat>,
    /// `ISS/SUB` of the request's token.
    pub request_principals: Field<StrPat>,
    /// The peer identity's namespace.
    pub namespaces: Field<StrPat>,
    /// The peer identity's `NS/SA`.
    pub service_accounts: Field<StrPat>,
    /// The peer's address.
    pub ip_blocks: Field<IpBlock>,
    /// The original client's address.
    pub remote_ip_blocks: Field<IpBlock>,
}

/// `Rule.To.operation`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operation {
    /// The authority (case-insensitive; a pattern without a port matches any port).
    pub hosts: Field<StrPat>,
    /// The destination port.
    pub ports: Field<u16>,
    /// The method.
    pub methods: Field<StrPat>,
    /// The path, without its query.
    pub paths: Field<StrPat>,
}

/// An attribute a `when` condition reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// `request.headers[NAME]` (several values: joined with `,`).
    Header(http::HeaderName),
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.serviceAccount`.
    SourceServiceAccount,
    /// `request.auth.principal`.
    AuthPrincipal,
    /// `request.auth.audiences`.
    AuthAudiences,
    /// `request.auth.presenter`.
    AuthPresenter,
    /// `request.auth.claims[A][B]...`.
    AuthClaim(Vec<String>),
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
}

/// A condition's values: strings, or IP blocks for the address keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    /// String patterns.
    Str(Field<StrPat>),
    /// IP blocks.
    Ip(Field<IpBlock>),
}

/// `Rule.when[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The attribute.
    pub key: Key,
    /// What it must be.
    pub values: Values,
}

/// `Rule`: `from` (any), `to` (any) and `when` (all) must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Sources.
    pub from: Vec<Source>,
    /// Operations.
    pub to: Vec<Operation>,
    /// Conditions.
    pub when: Vec<Condition>,
}

impl Rule {
    /// Whether the request matches.
    pub fn matches(&self, f: &Facts<'_>, id: Option<&Identity>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(f, id)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(f)))
            && self.when.iter().all(|c| c.matches(f, id))
    }
}

impl Source {
    fn matches(&self, f: &Facts<'_>, id: Option<&Identity>) -> bool {
        let peer = f.principal;
        self.principals.check_opt(peer)
            && self
                .request_principals
                .check_opt(id.map(|i| i.principal.as_str()))
            && self.namespaces.check_opt(peer.and_then(namespace_of))
            && self
                .service_accounts
                .check_opt(peer.and_then(service_account_of).as_deref())
            && self.ip_blocks.check(|b| b.contains(f.peer))
            && self.remote_ip_blocks.check(|b| b.contains(f.remote))
    }
}

impl Operation {
    fn matches(&self, f: &Facts<'_>) -> bool {
        self.hosts.check(|p| host_matches(p, f.authority))
            && self.ports.check(|p| *p == f.port)
            && self.methods.check(|p| p.matches(f.method))
            && self.paths.check(|p| p.matches(f.path))
    }
}

/// A host pattern against an authority: with the port as written, or without it when the
/// pattern names none.
fn host_matches(p: &StrPat, authority: &str) -> bool {
    if p.matches_ignore_case(authority) {
        return true;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            p.matches_ignore_case(host)
        }
        _ => false,
    }
}

/// The namespace of a peer identity (`cluster.local/ns/NS/sa/SA`).
fn namespace_of(principal: &str) -> Option<&str> {
    let rest = principal.split("/ns/").nth(1)?;
    rest.split('/').next()
}

/// `NS/SA` of a peer identity.
fn service_account_of(principal: &str) -> Option<String> {
    let ns = namespace_of(principal)?;
    let sa = principal.split("/sa/").nth(1)?;
    Some(format!("{ns}/{sa}"))
}

impl Condition {
    fn matches(&self, f: &Facts<'_>, id: Option<&Identity>) -> bool {
        match &self.values {
            Values::Ip(field) => {
                let ip: IpAddr = match self.key {
                    Key::SourceIp => f.peer,
                    Key::RemoteIp => f.remote,
                    _ => f.destination,
                };
                field.check(|b| b.contains(ip))
            }
            Values::Str(field) => match &self.key {
                Key::Header(name) => {
                    let mut all = f
                        .headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok());
                    let first = all.next();
                    let joined = match (first, all.next()) {
                        (Some(a), None) => Some(std::borrow::Cow::Borrowed(a)),
                        (Some(a), Some(b)) => {
                            let mut s = format!("{a},{b}");
                            for v in all {
                                s.push(',');
                                s.push_str(v);
                            }
                            Some(std::borrow::Cow::Owned(s))
                        }
                        (None, _) => None,
                    };
                    field.check_opt(joined.as_deref())
                }
                Key::SourcePrincipal => field.check_opt(f.principal),
                Key::SourceNamespace => field.check_opt(f.principal.and_then(namespace_of)),
                Key::SourceServiceAccount => {
                    field.check_opt(f.principal.and_then(service_account_of).as_deref())
                }
                Key::AuthPrincipal => field.check_opt(id.map(|i| i.principal.as_str())),
                Key::AuthPresenter => field.check_opt(id.and_then(|i| i.presenter.as_deref())),
                Key::AuthAudiences => {
                    let auds: &[String] = id.map_or(&[], |i| &i.audiences);
                    list_matches(field, auds.iter().map(String::as_str))
                }
                Key::AuthClaim(path) => {
                    let values = id.map(|i| i.claim_values(path)).unwrap_or_default();
                    list_matches(field, values.iter().map(String::as_str))
                }
                Key::DestinationPort => field.check(|p| p.matches(&f.port.to_string())),
                Key::SourceIp | Key::RemoteIp | Key::DestinationIp => {
                    let ip = match self.key {
                        Key::SourceIp => f.peer,
                        Key::RemoteIp => f.remote,
                        _ => f.destination,
                    };
                    field.check(|p| p.matches(&ip.to_string()))
                }
            },
        }
    }
}

/// A field against a value that is a list (claims, audiences): some element matches some
/// value, and no element matches a `notValues` entry.
fn list_matches<'v>(field: &Field<StrPat>, values: impl Iterator<Item = &'v str> + Clone) -> bool {
    let any = field.any.is_empty()
        || values
            .clone()
            .any(|v| field.any.iter().any(|p| p.matches(v)));
    let mut vs = values;
    any && !vs.any(|v| field.none.iter().any(|p| p.matches(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_identities() {
        let p = "cluster.local/ns/default/sa/bookinfo-productpage";
        assert_eq!(namespace_of(p), Some("default"));
        assert_eq!(
            service_account_of(p).as_deref(),
            Some("default/bookinfo-productpage")
        );
        assert_eq!(namespace_of("spiffe-less"), None);
    }

    #[test]
    fn hosts_with_and_without_ports() {
        let p = StrPat::parse("bookinfo.com");
        assert!(host_matches(&p, "bookinfo.com"));
        assert!(host_matches(&p, "BookInfo.com:8080"));
        assert!(!host_matches(&p, "bookinfo.com.evil"));
        assert!(host_matches(
            &StrPat::parse("bookinfo.com:80"),
            "bookinfo.com:80"
        ));
        assert!(!host_matches(
            &StrPat::parse("bookinfo.com:80"),
            "bookinfo.com:81"
        ));
    }
}
