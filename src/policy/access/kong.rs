//! Kong's authentication and access plugins on a route: `jwt`, `key-auth`, `basic-auth`,
//! `ip-restriction`, `acl` (run in Kong's priority order), with the declarative config's
//! consumers and their credentials, and the upstream headers Kong adds.
//!
//! Credentials are held as MACs under a key made at start (API keys and basic-auth passwords
//! never stay in memory as written) and compared in constant time. A route with any of these
//! plugins never forwards a client's own `X-Consumer-*`, `X-Credential-Identifier` or
//! `X-Anonymous-Consumer` headers: only what the plugins established.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use http::{HeaderName, HeaderValue, StatusCode};
use ring::hmac;

use super::body_key::{self, Field};
use super::jwk::{Alg, KeySet, Material};
use super::jwt;
use super::pattern::IpBlock;
use super::{AuthCounters, Denial, Edit, Facts};

/// The key credentials are MACed under, made once per process.
static MAC_KEY: LazyLock<hmac::Key> = LazyLock::new(|| {
    let rng = ring::rand::SystemRandom::new();
    hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
        // No system randomness: a fixed key still keeps secrets out of plain sight.
        hmac::Key::new(hmac::HMAC_SHA256, b"weir credential key")
    })
});

fn mac(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&MAC_KEY);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let tag = ctx.sign();
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `parts` MAC to `tag`, compared in constant time.
fn mac_ok(parts: &[&[u8]], tag: &[u8; 32]) -> bool {
    let mut msg = Vec::new();
    for p in parts {
        msg.extend_from_slice(&(p.len() as u64).to_be_bytes());
        msg.extend_from_slice(p);
    }
    hmac::verify(&MAC_KEY, &msg, tag).is_ok()
}

/// A consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// `id` (or one derived from the username).
    pub id: Arc<str>,
    /// `username`.
    pub username: Option<Arc<str>>,
    /// `custom_id`.
    pub custom_id: Option<Arc<str>>,
    /// ACL groups.
    pub groups: Vec<Arc<str>>,
}

/// A `jwt_secrets` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtCredential {
    /// The consumer (index).
    pub consumer: usize,
    /// Its `key` (the value of the key claim, `iss` by default).
    pub key: Arc<str>,
    /// The algorithm tokens must use.
    pub alg: Alg,
    /// The key that checks them (the secret, or the RSA/EC public key).
    pub keys: KeySet,
    /// The secret read as base64 (for `secret_is_base64`), when it is.
    pub keys_base64: Option<KeySet>,
}

/// A basic-auth credential: its consumer, the password's salt and MAC, its id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BasicCredential {
    consumer: usize,
    salt: [u8; 16],
    tag: [u8; 32],
    id: Arc<str>,
}

/// Why an auth plugin found no consumer: were the credentials missing (else invalid), and
/// what the client gets.
#[derive(Debug)]
struct Failed {
    missing: bool,
    status: StatusCode,
    message: &'static str,
    challenge: Option<String>,
}

impl Failed {
    fn invalid(message: &'static str) -> Failed {
        Failed {
            missing: false,
            status: StatusCode::UNAUTHORIZED,
            message,
            challenge: None,
        }
    }

    fn missing(message: &'static str, challenge: Option<String>) -> Failed {
        Failed {
            missing: true,
            status: StatusCode::UNAUTHORIZED,
            message,
            challenge,
        }
    }
}

/// Every consumer and credential of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumers {
    /// The consumers.
    pub list: Vec<Consumer>,
    /// API keys, by MAC: (consumer, credential id).
    keys: HashMap<[u8; 32], (usize, Arc<str>)>,
    /// basic-auth, by username.
    basic: HashMap<String, BasicCredential>,
    /// jwt secrets, by key.
    jwt: HashMap<String, JwtCredential>,
}

impl Consumers {
    /// Adds an API key of `consumer`; false if another consumer has it.
    pub fn add_key(&mut self, consumer: usize, key: &str, id: Arc<str>) -> bool {
        let tag = mac(&[b"key-auth", key.as_bytes()]);
        if self.keys.contains_key(&tag) {
            return false;
        }
        self.keys.insert(tag, (consumer, id));
        true
    }

    /// Adds a basic-auth credential; false if the username is taken.
    pub fn add_basic(&mut self, consumer: usize, username: &str, password: &str) -> bool {
        if self.basic.contains_key(username) {
            return false;
        }
        let mut salt = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        let tag = mac(&[b"basic-auth", &salt, password.as_bytes()]);
        self.basic.insert(
            username.to_owned(),
            BasicCredential {
                consumer,
                salt,
                tag,
                id: Arc::from(username),
            },
        );
        true
    }

    /// Adds a jwt secret; false if its key is taken.
    pub fn add_jwt(&mut self, cred: JwtCredential) -> bool {
        if self.jwt.contains_key(&*cred.key) {
            return false;
        }
        self.jwt.insert(cred.key.to_string(), cred);
        true
    }

    /// The consumer `reference` names (its id or username).
    pub fn find(&self, reference: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|c| &*c.id == reference || c.username.as_deref() == Some(reference))
    }
}

/// A plugin, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plugin {
    /// `key-auth`.
    KeyAuth {
        /// The names a key is looked for under, in order.
        key_names: Vec<String>,
        /// In headers.
        in_header: bool,
        /// In the query.
        in_query: bool,
        /// In the body (a form, JSON or multipart field).
        in_body: bool,
        /// Remove the key before proxying.
        hide: bool,
        /// The consumer a request without a valid key becomes.
        anonymous: Option<usize>,
        /// Authenticate CORS preflights too.
        preflight: bool,
    },
    /// `basic-auth`.
    BasicAuth {
        /// Remove the credentials before proxying.
        hide: bool,
        /// The consumer a request without valid credentials becomes.
        anonymous: Option<usize>,
        /// `WWW-Authenticate` realm.
        realm: String,
        /// Authenticate CORS preflights too.
        preflight: bool,
    },
    /// `jwt`.
    Jwt {
        /// Query parameters tokens may be in.
        params: Vec<String>,
        /// Cookies tokens may be in.
        cookies: Vec<String>,
        /// Headers tokens may be in (`Bearer ` stripped).
        headers: Vec<HeaderName>,
        /// `exp` checked.
        exp: bool,
        /// `nbf` checked.
        nbf: bool,
        /// The claim naming the credential (`iss`).
        key_claim: String,
        /// The longest life a token may have left (seconds; 0: any).
        max_exp: u64,
        /// Secrets are written in base64.
        secret_is_base64: bool,
        /// The consumer a request without a valid token becomes.
        anonymous: Option<usize>,
        /// Authenticate CORS preflights too.
        preflight: bool,
    },
    /// `ip-restriction`.
    IpRestriction {
        /// Allowed addresses (when any).
        allow: Vec<IpBlock>,
        /// Refused addresses.
        deny: Vec<IpBlock>,
        /// Status of a refusal.
        status: StatusCode,
        /// Message of a refusal.
        message: String,
    },
    /// `acl`.
    Acl {
        /// Groups allowed (when any).
        allow: Vec<String>,
        /// Groups refused.
        deny: Vec<String>,
        /// Do not send `X-Consumer-Groups`.
        hide_groups: bool,
    },
}

impl Plugin {
    /// Kong's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Plugin::KeyAuth { .. } => "key-auth",
            Plugin::BasicAuth { .. } => "basic-auth",
            Plugin::Jwt { .. } => "jwt",
            Plugin::IpRestriction { .. } => "ip-restriction",
            Plugin::Acl { .. } => "acl",
        }
    }

    /// Kong's priority: higher runs first.
    pub fn priority(&self) -> u32 {
        match self {
            Plugin::Jwt { .. } => 1450,
            Plugin::KeyAuth { .. } => 1250,
            Plugin::BasicAuth { .. } => 1100,
            Plugin::IpRestriction { .. } => 990,
            Plugin::Acl { .. } => 950,
        }
    }
}

/// A route's plugins, in order, with the consumers they know.
#[derive(Debug)]
pub struct Chain {
    /// (plugin, its label in metrics and logs, its counters).
    pub plugins: Vec<(Plugin, Arc<str>, AuthCounters)>,
    /// The consumers.
    pub consumers: Arc<Consumers>,
}

/// Who a request was found to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    consumer: usize,
    /// The credential's id; `None` for the anonymous consumer.
    credential: Option<usize>,
}

/// The headers Kong sets upstream, removed first on every route with these plugins.
const CONSUMER_HEADERS: [&str; 6] = [
    "x-consumer-id",
    "x-consumer-custom-id",
    "x-consumer-username",
    "x-credential-identifier",
    "x-anonymous-consumer",
    "x-consumer-groups",
];

/// What a passed chain established: the consumer (for `limit_by: consumer`).
#[derive(Debug, Default)]
pub struct Passed {
    /// The consumer's id.
    pub consumer: Option<Arc<str>>,
}

fn refuse(status: StatusCode, message: &str, label: &Arc<str>) -> Box<Denial> {
    Box::new(Denial {
        status,
        body: serde_json::json!({ "message": message }).to_string(),
        challenge: None,
        policy: label.clone(),
        json: true,
    })
}

impl Chain {
    /// Whether a key-auth plugin would look for its key in the body, unread.
    pub fn wants_body(&self, f: &Facts<'_>) -> bool {
        self.plugins.iter().any(|(p, _, _)| match p {
            Plugin::KeyAuth {
                key_names,
                in_header,
                in_query,
                in_body: true,
                ..
            } => matches!(
                find_key(key_names, (*in_header, *in_query, true), f),
                Looked::BodyUnread
            ),
            _ => false,
        })
    }

    /// Runs the plugins; `now` in seconds since the epoch.
    pub fn check(
        &self,
        f: &Facts<'_>,
        now: i64,
        edits: &mut Vec<Edit>,
    ) -> Result<Passed, Box<Denial>> {
        let preflight = f.method == "OPTIONS"
            && f.headers.contains_key("origin")
            && f.headers.contains_key("access-control-request-method");
        for h in CONSUMER_HEADERS {
            edits.push(Edit::Remove(HeaderName::from_static(h)));
        }
        let mut found: Option<Found> = None;
        let mut creds: Vec<Arc<str>> = Vec::new();
        for (plugin, label, counters) in &self.plugins {
            let (anonymous, runs_on_preflight) = match plugin {
                Plugin::KeyAuth {
                    anonymous,
                    preflight,
                    ..
                }
                | Plugin::BasicAuth {
                    anonymous,
                    preflight,
                    ..
                }
                | Plugin::Jwt {
                    anonymous,
                    preflight,
                    ..
                } => (*anonymous, *preflight),
                _ => (None, true),
            };
            if preflight && !runs_on_preflight {
                continue;
            }
            let outcome = match plugin {
                Plugin::KeyAuth { .. } | Plugin::BasicAuth { .. } | Plugin::Jwt { .. } => {
                    // With `anonymous`, a request another plugin already authenticated is not
                    // asked again (Kong's "any of them" for several auth plugins).
                    if anonymous.is_some() && found.is_some_and(|f| f.credential.is_some()) {
                        continue;
                    }
                    self.authenticate(plugin, f, now, edits)
                }
                Plugin::IpRestriction {
                    allow,
                    deny,
                    status,
                    message,
                } => {
                    let ip = f.remote;
                    let refused = deny.iter().any(|b| b.contains(ip))
                        || (!allow.is_empty() && !allow.iter().any(|b| b.contains(ip)));
                    if refused {
                        counters.denied.inc();
                        return Err(refuse(*status, message, label));
                    }
                    counters.allowed.inc();
                    continue;
                }
                Plugin::Acl {
                    allow,
                    deny,
                    hide_groups,
                } => {
                    let Some(who) = found else {
                        counters.unauthenticated.inc();
                        return Err(refuse(StatusCode::UNAUTHORIZED, "Unauthorized", label));
                    };
                    let groups = &self.consumers.list[who.consumer].groups;
                    let member =
                        |list: &[String]| groups.iter().any(|g| list.iter().any(|x| **g == **x));
                    if (!deny.is_empty() && member(deny)) || (!allow.is_empty() && !member(allow)) {
                        counters.denied.inc();
                        return Err(refuse(
                            StatusCode::FORBIDDEN,
                            "You cannot consume this service",
                            label,
                        ));
                    }
                    counters.allowed.inc();
                    if !hide_groups
                        && !groups.is_empty()
                        && let Ok(v) = HeaderValue::from_str(
                            &groups.iter().map(|g| &**g).collect::<Vec<_>>().join(", "),
                        )
                    {
                        edits.push(Edit::Set(HeaderName::from_static("x-consumer-groups"), v));
                    }
                    continue;
                }
            };
            match outcome {
                Ok((consumer, credential)) => {
                    counters.allowed.inc();
                    found = Some(Found {
                        consumer,
                        credential: Some(creds.len()),
                    });
                    creds.push(credential);
                }
                Err(failed) => {
                    if failed.missing {
                        counters.unauthenticated.inc();
                    } else {
                        counters.invalid_token.inc();
                    }
                    match anonymous {
                        Some(a) => {
                            if found.is_none() {
                                found = Some(Found {
                                    consumer: a,
                                    credential: None,
                                });
                            }
                        }
                        None => {
                            let mut d = refuse(failed.status, failed.message, label);
                            if let Some(c) = failed.challenge {
                                d.challenge = HeaderValue::from_str(&c).ok();
                            }
                            return Err(d);
                        }
                    }
                }
            }
        }
        let Some(who) = found else {
            return Ok(Passed::default());
        };
        let c = &self.consumers.list[who.consumer];
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                edits.push(Edit::Set(HeaderName::from_static(name), v));
            }
        };
        set("x-consumer-id", &c.id);
        if let Some(u) = &c.username {
            set("x-consumer-username", u);
        }
        if let Some(cid) = &c.custom_id {
            set("x-consumer-custom-id", cid);
        }
        match who.credential {
            Some(i) => set("x-credential-identifier", &creds[i]),
            None => set("x-anonymous-consumer", "true"),
        }
        Ok(Passed {
            consumer: Some(c.id.clone()),
        })
    }

    /// One auth plugin: the consumer and the credential's id.
    fn authenticate(
        &self,
        plugin: &Plugin,
        f: &Facts<'_>,
        now: i64,
        edits: &mut Vec<Edit>,
    ) -> Result<(usize, Arc<str>), Failed> {
        let invalid = || Failed::invalid("Invalid authentication credentials");
        match plugin {
            Plugin::KeyAuth {
                key_names,
                in_header,
                in_query,
                in_body,
                hide,
                ..
            } => {
                let (key, name) = match find_key(key_names, (*in_header, *in_query, *in_body), f) {
                    Looked::Found(key, name) => (key, name),
                    Looked::Duplicate => {
                        return Err(Failed::invalid("Duplicate API key found"));
                    }
                    Looked::Missing | Looked::BodyUnread => (Cow::Borrowed(""), ""),
                };
                if key.is_empty() {
                    return Err(Failed::missing(
                        "No API key found in request",
                        Some("Key realm=\"kong\"".to_owned()),
                    ));
                }
                // As Kong: the name is cleared from the query, the headers and the body, wherever
                // the key was found.
                if *hide {
                    edits.push(Edit::RemoveParam(name.to_owned()));
                    if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
                        edits.push(Edit::Remove(h));
                    }
                    if *in_body
                        && let Some(body) = f.body
                        && let Some(b) = body_key::remove(content_type(f), body, name)
                    {
                        edits.push(Edit::SetBody(b));
                    }
                }
                // Keys are held as their MAC under this process's secret key, and looked up
                // by it: how long a lookup takes depends on MACs nobody can predict, never on
                // the stored keys themselves.
                match self
                    .consumers
                    .keys
                    .get(&mac(&[b"key-auth", key.as_bytes()]))
                {
                    Some((consumer, id)) => Ok((*consumer, id.clone())),
                    None => Err(invalid()),
                }
            }
            Plugin::BasicAuth { hide, realm, .. } => {
                let challenge = format!("Basic realm=\"{realm}\"");
                let header = ["authorization", "proxy-authorization"]
                    .into_iter()
                    .find_map(|h| {
                        let v = f.headers.get(h)?.to_str().ok()?;
                        let (scheme, rest) = v.split_once(' ')?;
                        scheme
                            .eq_ignore_ascii_case("basic")
                            .then(|| (h, rest.trim()))
                    });
                let Some((name, encoded)) = header else {
                    return Err(Failed::missing("Unauthorized", Some(challenge)));
                };
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                let refused = || Failed {
                    challenge: Some(challenge.clone()),
                    ..invalid()
                };
                let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':'))
                else {
                    return Err(refused());
                };
                let ok = self.consumers.basic.get(user).and_then(|b| {
                    mac_ok(&[b"basic-auth", &b.salt, password.as_bytes()], &b.tag)
                        .then(|| (b.consumer, b.id.clone()))
                });
                if *hide {
                    edits.push(Edit::Remove(HeaderName::from_static(name)));
                }
                ok.ok_or_else(refused)
            }
            Plugin::Jwt {
                params,
                cookies,
                headers,
                exp,
                nbf,
                key_claim,
                max_exp,
                secret_is_base64,
                ..
            } => self.jwt(
                f,
                now,
                (params, cookies, headers),
                (*exp, *nbf),
                key_claim,
                (*max_exp, *secret_is_base64),
            ),
            _ => Err(invalid()),
        }
    }

    fn jwt(
        &self,
        f: &Facts<'_>,
        now: i64,
        (params, cookies, headers): (&[String], &[String], &[HeaderName]),
        (exp, nbf): (bool, bool),
        key_claim: &str,
        (max_exp, base64): (u64, bool),
    ) -> Result<(usize, Arc<str>), Failed> {
        let bad = |m: &'static str| Err(Failed::invalid(m));
        let token = params
            .iter()
            .find_map(|p| query_param(f.query, p))
            .or_else(|| {
                cookies.iter().find_map(|c| {
                    f.headers
                        .get_all(http::header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(';'))
                        .filter_map(|kv| kv.trim().split_once('='))
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| v)
                })
            })
            .or_else(|| {
                headers.iter().find_map(|h| {
                    let v = f.headers.get(h)?.to_str().ok()?.trim();
                    match v.get(..7) {
                        Some(p) if p.eq_ignore_ascii_case("bearer ") => Some(v[7..].trim()),
                        _ => Some(v),
                    }
                })
            });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Failed::missing("Unauthorized", None));
        };
        let Ok(tok) = jwt::decode(token) else {
            return bad("Bad token; invalid JSON");
        };
        let Some(key) = tok.claim_str(key_claim) else {
            return bad("No mandatory 'iss' in claims");
        };
        let Some(cred) = self.consumers.jwt.get(key) else {
            return bad("No credentials found for given 'iss'");
        };
        if tok.alg != cred.alg {
            return bad("Invalid algorithm");
        }
        let keys = match (base64, &cred.keys_base64) {
            (true, Some(k)) => k,
            (true, None) => return bad("Invalid key/secret"),
            (false, _) => &cred.keys,
        };
        if tok.verify(keys).is_err() {
            return bad("Invalid signature");
        }
        let time = |name: &str| tok.claims.get(name).and_then(serde_json::Value::as_f64);
        if exp {
            match time("exp") {
                Some(t) if (t as i64) > now => {}
                _ => return bad("token expired"),
            }
        }
        if nbf {
            match time("nbf") {
                Some(t) if (t as i64) <= now => {}
                _ => return bad("token not valid yet"),
            }
        }
        if max_exp > 0 {
            match time("exp") {
                Some(t) if (t as i64) - now <= max_exp as i64 => {}
                _ => return bad("exceeds maximum allowed expiration"),
            }
        }
        Ok((cred.consumer, cred.key.clone()))
    }
}

/// What a key-auth plugin found.
enum Looked<'a> {
    /// A key, under this name.
    Found(Cow<'a, str>, &'a str),
    /// A name given twice.
    Duplicate,
    /// No key.
    Missing,
    /// None in the headers or the query; the body, unread, may hold one.
    BodyUnread,
}

fn content_type<'a>(f: &Facts<'a>) -> Option<&'a str> {
    f.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Kong's key lookup: for each name in order, the headers, then the query, then the body.
fn find_key<'a>(
    names: &'a [String],
    (in_header, in_query, in_body): (bool, bool, bool),
    f: &Facts<'a>,
) -> Looked<'a> {
    for name in names {
        let mut v = Field::Missing;
        if in_header {
            let mut all = f.headers.get_all(name.as_str()).iter();
            v = match (all.next(), all.next()) {
                (Some(_), Some(_)) => Field::Duplicate,
                (Some(h), None) => h
                    .to_str()
                    .map_or(Field::Missing, |s| Field::One(Cow::Borrowed(s))),
                _ => Field::Missing,
            };
        }
        if v == Field::Missing
            && in_query
            && let Some(q) = f.query
        {
            v = body_key::form_field(q.as_bytes(), name);
        }
        if v == Field::Missing && in_body {
            match f.body {
                None => return Looked::BodyUnread,
                Some(b) => v = body_key::find(content_type(f), b, name),
            }
        }
        match v {
            Field::One(key) => return Looked::Found(key, name),
            Field::Duplicate => return Looked::Duplicate,
            Field::Missing => {}
        }
    }
    Looked::Missing
}

/// The value of query parameter `name`.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A jwt secret's verification key: the secret (HS*), or the public key from its PEM
/// (`rsa_public_key`, also for EC keys as Kong takes them).
pub fn jwt_key(alg: Alg, secret: Option<&[u8]>, pem: Option<&str>) -> Result<KeySet, String> {
    let material = match alg {
        Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => {
            let s = secret
                .filter(|s| !s.is_empty())
                .ok_or("an HS* secret needs `secret`")?;
            Material::Secret(s.to_vec())
        }
        _ => {
            let pem = pem.ok_or_else(|| format!("{} needs `rsa_public_key`", alg.name()))?;
            super::der::public_key(pem)?
        }
    };
    if !material.fits(alg) {
        return Err(format!("the key does not fit {}", alg.name()));
    }
    Ok(KeySet {
        keys: vec![super::jwk::Jwk {
            kid: None,
            alg: Some(alg),
            material,
        }],
    })
}
