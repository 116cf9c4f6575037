//! Istio `RequestAuthentication`: where a request's tokens are, which issuers and keys they
//! are checked against, and what a valid one tells the upstream. A request without a token
//! passes on unauthenticated (for the authorization policies to decide); one with a token
//! that fails any check is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::jwk::KeySet;
use super::jwt::{self, JwtError, Token};
use super::{Edit, Facts};

/// The fewest seconds between two fetches asked for by tokens with an unknown `kid`: a
/// stream of made-up `kid`s costs the key server one request per interval, not one per token.
pub const ASK_EVERY: Duration = Duration::from_secs(30);

/// The most tokens a key source remembers as verified (once full it starts afresh), and the
/// longest one it remembers: at most 16 MiB per source, held only for valid tokens.
const VERIFIED_MAX: usize = 4096;
const VERIFIED_TOKEN_MAX: usize = 4096;

/// Tokens whose signature a key set verified. A client sends the same token on every request
/// until it expires, and checking an RSA signature costs tens of microseconds: a token seen
/// before is looked up instead. Only tokens with a valid signature are held, each for the set
/// that verified it (a new set starts afresh, so a key removed stops its tokens at once); the
/// audience and time checks run on every request.
#[derive(Debug, Default)]
struct Verified {
    keys: Option<Arc<KeySet>>,
    tokens: std::collections::HashSet<Box<str>>,
}

/// Where a rule's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Jwks {
    /// Written in the rule.
    Inline(KeySet),
    /// Fetched from this URL.
    Uri(String),
    /// Found by OpenID discovery: the `jwks_uri` of this issuer's
    /// `/.well-known/openid-configuration`.
    Discovery(String),
}

impl Jwks {
    /// Where the keys come from, for logs and metrics (`inline` for written ones).
    pub fn label(&self) -> &str {
        match self {
            Jwks::Inline(_) => "inline",
            Jwks::Uri(u) | Jwks::Discovery(u) => u,
        }
    }
}

/// A key set that requests read and a fetcher keeps fresh, shared by every rule (and every
/// snapshot) that names the same source.
#[derive(Debug)]
pub struct KeySource {
    /// Where the keys come from.
    pub jwks: Jwks,
    /// How long a fetch may take.
    pub timeout: Duration,
    keys: ArcSwapOption<KeySet>,
    /// Wakes the fetcher (a token named a `kid` the set does not have).
    pub wake: Arc<Notify>,
    born: Instant,
    /// When a fetch was last asked for, in ms since `born` (0: never).
    asked_ms: AtomicU64,
    held: Gauge,
    errors: Counter,
    /// A fetcher was started for it.
    claimed: std::sync::atomic::AtomicBool,
    verified: std::sync::RwLock<Verified>,
}

impl KeySource {
    /// A source (inline keys are held at once); `held` and `errors` count its keys and failed
    /// fetches.
    pub fn new(jwks: Jwks, timeout: Duration, held: Gauge, errors: Counter) -> KeySource {
        let keys = match &jwks {
            Jwks::Inline(set) => Some(Arc::new(set.clone())),
            _ => None,
        };
        held.set(keys.as_ref().map_or(0, |k| k.keys.len() as i64));
        KeySource {
            jwks,
            timeout,
            keys: ArcSwapOption::new(keys),
            wake: Arc::new(Notify::new()),
            born: Instant::now(),
            asked_ms: AtomicU64::new(0),
            held,
            errors,
            claimed: std::sync::atomic::AtomicBool::new(false),
            verified: std::sync::RwLock::default(),
        }
    }

    /// Whether `keys` (this source's) verified `token` before.
    fn verified_before(&self, keys: &Arc<KeySet>, token: &str) -> bool {
        let v = self
            .verified
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) && v.tokens.contains(token)
    }

    /// Remembers that `keys` verified `token`. Keys no longer current (a fetch came meanwhile)
    /// are not remembered for.
    fn remember(&self, keys: &Arc<KeySet>, token: &str) {
        if token.len() > VERIFIED_TOKEN_MAX {
            return;
        }
        let mut v = self
            .verified
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !v.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            if !self
                .keys
                .load()
                .as_ref()
                .is_some_and(|k| Arc::ptr_eq(k, keys))
            {
                return;
            }
            v.keys = Some(keys.clone());
            v.tokens.clear();
        }
        if v.tokens.len() >= VERIFIED_MAX {
            v.tokens.clear();
        }
        v.tokens.insert(token.into());
    }

    /// True once, for the first caller: the one that starts its fetcher. Inline keys need none.
    pub fn claim(&self) -> bool {
        !matches!(self.jwks, Jwks::Inline(_)) && !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// Where its keys come from, for logs and metrics.
    pub fn label(&self) -> &str {
        self.jwks.label()
    }

    /// The keys held, if any were ever fetched.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Takes a freshly fetched set.
    pub fn store(&self, set: KeySet) {
        self.held.set(set.keys.len() as i64);
        self.keys.store(Some(Arc::new(set)));
    }

    /// Counts a failed fetch (the keys held stay).
    pub fn failed(&self) {
        self.errors.inc();
    }

    /// Asks the fetcher for the keys again, unless it was asked within [`ASK_EVERY`]; true if
    /// asked.
    pub fn ask(&self) -> bool {
        if matches!(self.jwks, Jwks::Inline(_)) {
            return false;
        }
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let last = self.asked_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < ASK_EVERY.as_millis() as u64 {
            return false;
        }
        if self
            .asked_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.wake.notify_one();
        true
    }
}

/// Where a token may be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A header, after a prefix (matched without regard to ASCII case).
    Header(HeaderName, String),
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl Location {
    /// Istio's default places: `Authorization: Bearer <token>`, then `?access_token=`.
    pub fn defaults() -> Vec<Location> {
        vec![
            Location::Header(http::header::AUTHORIZATION, "Bearer ".to_owned()),
            Location::Param("access_token".to_owned()),
        ]
    }

    /// The token at this place in the request, if any.
    fn find<'a>(&self, f: &Facts<'a>) -> Option<&'a str> {
        match self {
            Location::Header(name, prefix) => {
                let v = f.headers.get(name)?.to_str().ok()?;
                let head = v.get(..prefix.len())?;
                head.eq_ignore_ascii_case(prefix)
                    .then(|| v[prefix.len()..].trim())
                    .filter(|t| !t.is_empty())
            }
            Location::Param(name) => f
                .query?
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .filter(|t| !t.is_empty()),
            Location::Cookie(name) => f
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .filter(|t| !t.is_empty()),
        }
    }
}

/// A `jwtRules` entry, as validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JwtRuleSpec {
    /// The RequestAuthentication it is written in (`NAMESPACE/NAME`).
    pub policy: Arc<str>,
    /// The `iss` it is for.
    pub issuer: String,
    /// Accepted audiences (none: any).
    pub audiences: Vec<String>,
    /// Its keys.
    pub jwks: Jwks,
    /// How long a fetch of them may take.
    pub timeout: Duration,
    /// Where its tokens are.
    pub from: Vec<Location>,
    /// Keep the token in the upstream request.
    pub forward: bool,
    /// A header for the payload upstream.
    pub payload_header: Option<HeaderName>,
    /// Claims (paths into the payload) copied into upstream headers.
    pub claim_headers: Vec<(HeaderName, Vec<String>)>,
}

/// A rule with its keys.
#[derive(Debug)]
pub struct JwtRule {
    /// What it checks.
    pub spec: JwtRuleSpec,
    /// Its keys.
    pub keys: Arc<KeySource>,
}

/// Who a valid token says the request is from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// `ISS/SUB`.
    pub principal: String,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
}

impl Identity {
    /// The values of the claim at `path` (a string, each string of a list, a number or a
    /// boolean as text).
    pub fn claim_values(&self, path: &[String]) -> Vec<String> {
        claim_values(&self.claims, path)
    }
}

/// The values of the claim at `path` in `claims`.
fn claim_values(claims: &Map<String, Value>, path: &[String]) -> Vec<String> {
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut v = claims.get(first);
    for p in rest {
        v = v.and_then(|x| x.get(p));
    }
    let text = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(other) => text(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// What authentication concluded.
#[derive(Debug)]
pub enum Authn {
    /// No token anywhere: unauthenticated, not refused.
    NoToken,
    /// Every token found is valid: the first one's identity, and the edits for upstream.
    Valid(Identity, Vec<Edit>),
}

/// A refused token: why, and the RequestAuthentication that refused it.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: JwtError,
    /// The policy (`NAMESPACE/NAME`).
    pub policy: Arc<str>,
}

/// Checks every token the rules look for; `now` in seconds since the epoch.
pub fn authenticate(rules: &[Arc<JwtRule>], f: &Facts<'_>, now: i64) -> Result<Authn, Refused> {
    // Each distinct (token, place) once.
    let mut found: Vec<(&str, &Location)> = Vec::new();
    for r in rules {
        for loc in &r.spec.from {
            if let Some(t) = loc.find(f)
                && !found.iter().any(|(ft, fl)| *ft == t && *fl == loc)
            {
                found.push((t, loc));
            }
        }
    }
    let Some(&(_, _)) = found.first() else {
        return Ok(Authn::NoToken);
    };
    let mut identity = None;
    let mut edits = Vec::new();
    for (raw, loc) in found {
        let refuse = |error, policy: &Arc<str>| Refused {
            error,
            policy: policy.clone(),
        };
        let first_policy = &rules[0].spec.policy;
        let token = jwt::decode(raw).map_err(|e| refuse(e, first_policy))?;
        let iss = token.claim_str("iss").unwrap_or_default();
        let mut candidates = rules
            .iter()
            .filter(|r| r.spec.issuer == iss && r.spec.from.contains(loc))
            .peekable();
        let Some(&first) = candidates.peek() else {
            return Err(refuse(JwtError::UnknownIssuer, first_policy));
        };
        let mut last = Refused {
            error: JwtError::Signature,
            policy: first.spec.policy.clone(),
        };
        let mut passed = None;
        for r in candidates {
            match check(r, &token, raw, now) {
                Ok(()) => {
                    passed = Some(r);
                    break;
                }
                Err(error) => {
                    last = Refused {
                        error,
                        policy: r.spec.policy.clone(),
                    }
                }
            }
        }
        let Some(rule) = passed else {
            return Err(last);
        };
        upstream_edits(rule, &token, loc, &mut edits);
        if identity.is_none() {
            identity = Some(identity_of(token));
        }
    }
    Ok(Authn::Valid(identity.unwrap_or_default(), edits))
}

/// One token against one rule: audience, time, then the signature (the costly part last).
fn check(rule: &JwtRule, token: &Token<'_>, raw: &str, now: i64) -> Result<(), JwtError> {
    if !token.audience_ok(&rule.spec.audiences) {
        return Err(JwtError::Audience);
    }
    token.check_time(now, jwt::CLOCK_SKEW_SECS)?;
    let Some(keys) = rule.keys.keys() else {
        return Err(JwtError::NoKeys);
    };
    if rule.keys.verified_before(&keys, raw) {
        return Ok(());
    }
    let verified = token.verify(&keys);
    if verified.is_ok() {
        rule.keys.remember(&keys, raw);
    }
    if verified == Err(JwtError::NoKey)
        && let Some(kid) = &token.kid
        && !keys.has_kid(kid)
    {
        // Keys may have rotated: fetch again (at most once per interval).
        rule.keys.ask();
    }
    verified
}

fn identity_of(token: Token<'_>) -> Identity {
    let principal = format!(
        "{}/{}",
        token.claim_str("iss").unwrap_or_default(),
        token.claim_str("sub").unwrap_or_default()
    );
    Identity {
        principal,
        audiences: token.audiences().into_iter().map(str::to_owned).collect(),
        presenter: token.claim_str("azp").map(str::to_owned),
        claims: token.claims,
    }
}

/// What a valid token changes in the upstream request: the token removed from its header
/// (unless `forwardOriginalToken`), the payload and claims in headers.
fn upstream_edits(rule: &JwtRule, token: &Token<'_>, loc: &Location, edits: &mut Vec<Edit>) {
    if !rule.spec.forward
        && let Location::Header(name, _) = loc
    {
        edits.push(Edit::Remove(name.clone()));
    }
    if let Some(h) = &rule.spec.payload_header
        && let Ok(v) = HeaderValue::from_str(token.payload)
    {
        edits.push(Edit::Set(h.clone(), v));
    }
    for (h, path) in &rule.spec.claim_headers {
        let values = claim_values(&token.claims, path);
        if !values.is_empty()
            && let Ok(v) = HeaderValue::from_str(&values.join(","))
        {
            edits.push(Edit::Set(h.clone(), v));
        }
    }
}

/// Base64url of `bytes` without padding (for tests and tools that make tokens).
pub fn b64url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Headers of a request, for [`Location::find`] in tests.
#[cfg(test)]
pub(crate) fn facts_with<'a>(headers: &'a http::HeaderMap, query: Option<&'a str>) -> Facts<'a> {
    Facts {
        method: "GET",
        path: "/",
        query,
        authority: "example.com",
        port: 80,
        peer: std::net::IpAddr::from([127, 0, 0, 1]),
        remote: std::net::IpAddr::from([127, 0, 0, 1]),
        destination: std::net::IpAddr::from([127, 0, 0, 1]),
        headers,
        principal: None,
        body: Some(&[]),
    }
}
