//! Kong's access plugins (`key-auth`, `basic-auth`, `jwt`, `acl`, `ip-restriction`) and the
//! declarative config's consumers and credentials, checked and compiled (for validation, and
//! for the Kong translation, which reports a plugin's errors at its own place): credentials are
//! MACed as they are read (no key or password is kept as written), every error is reported at
//! its place without repeating the secret.

use std::sync::Arc;

use crate::config::decode::ConfigError;
use crate::config::kong::{
    AclConfig, BasicAuthConfig, IpRestrictionConfig, JwtPluginConfig, KeyAuthConfig, KongConfig,
    KongPlugin, decode_config,
};
use crate::config::yaml::Pos;
use crate::config::{Resource, ResourceSet, Spec};
use crate::policy::access::jwk::Alg;
use crate::policy::access::kong::{Consumer, Consumers, JwtCredential, Plugin, jwt_key};
use crate::policy::access::pattern::IpBlock;

/// The plugins weir runs here, in Kong's priority order.
pub(crate) const ACCESS_PLUGINS: [&str; 5] =
    ["jwt", "key-auth", "basic-auth", "ip-restriction", "acl"];

/// A UUID (version 5 form) for `name`, for entities the config gives no id.
fn uuid_for(name: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("weir:{name}").as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

struct Errs<'e> {
    file: Arc<str>,
    out: &'e mut Vec<ConfigError>,
}

impl Errs<'_> {
    fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.out.push(ConfigError {
            file: self.file.clone(),
            pos,
            message: message.into(),
        });
    }
}

/// Every consumer and credential of the Kong declarative configs in `set`.
pub(crate) fn consumers(set: &ResourceSet, errors: &mut Vec<ConfigError>) -> Consumers {
    let mut out = Consumers::default();
    let configs: Vec<(&Resource, &KongConfig)> = set
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Kong(k) => Some((r, &**k)),
            _ => None,
        })
        .collect();
    // Each declared consumer's index (none for one refused).
    let mut declared: Vec<Vec<Option<usize>>> = Vec::new();
    for (r, k) in &configs {
        let mut e = Errs {
            file: r.file.clone(),
            out: errors,
        };
        let mut indices = Vec::new();
        for c in &k.consumers {
            indices.push(None);
            let Some(name) = c
                .username
                .as_ref()
                .map(|u| u.value.clone())
                .or(c.id.clone())
            else {
                e.at(c.pos, "a consumer needs a username or an id");
                continue;
            };
            if out.find(&name).is_some() {
                e.at(c.pos, format!("consumer `{name}` is declared twice"));
                continue;
            }
            *indices.last_mut().unwrap_or(&mut None) = Some(out.list.len());
            if let Some(p) = &c.plugins {
                e.at(
                    p.pos,
                    "plugins scoped to a consumer are not supported: attach them to a route, a service or globally",
                );
            }
            out.list.push(Consumer {
                id: Arc::from(
                    c.id.clone()
                        .unwrap_or_else(|| uuid_for(&format!("consumer:{name}"))),
                ),
                username: c.username.as_ref().map(|u| Arc::from(u.value.as_str())),
                custom_id: c.custom_id.as_deref().map(Arc::from),
                groups: Vec::new(),
            });
        }
        declared.push(indices);
    }
    // Credentials nested in their consumer, then top-level ones naming it.
    for ((r, k), indices) in configs.iter().zip(&declared) {
        let mut e = Errs {
            file: r.file.clone(),
            out: errors,
        };
        for (c, i) in k.consumers.iter().zip(indices) {
            let Some(i) = *i else { continue };
            let name = out.list[i].id.to_string();
            for (n, cred) in c.keyauth_credentials.iter().enumerate() {
                key(&mut out, &mut e, i, &name, n, cred);
            }
            for cred in &c.basicauth_credentials {
                basic(&mut out, &mut e, i, cred);
            }
            for cred in &c.jwt_secrets {
                jwt_secret(&mut out, &mut e, i, cred);
            }
            for a in &c.acls {
                out.list[i].groups.push(Arc::from(a.group.value.as_str()));
            }
        }
        let owner = |out: &Consumers,
                     e: &mut Errs<'_>,
                     pos: Pos,
                     r: &Option<crate::config::kong::ServiceRef>| {
            let Some(r) = r else {
                e.at(pos, "a top-level credential needs `consumer`");
                return None;
            };
            let found = out.find(&r.0.value);
            if found.is_none() {
                e.at(r.0.pos, format!("no consumer named `{}`", r.0.value));
            }
            found
        };
        for (n, cred) in k.keyauth_credentials.iter().enumerate() {
            if let Some(i) = owner(&out, &mut e, cred.pos, &cred.consumer) {
                let name = out.list[i].id.to_string();
                key(&mut out, &mut e, i, &name, 1000 + n, cred);
            }
        }
        for cred in &k.basicauth_credentials {
            if let Some(i) = owner(&out, &mut e, cred.pos, &cred.consumer) {
                basic(&mut out, &mut e, i, cred);
            }
        }
        for cred in &k.jwt_secrets {
            if let Some(i) = owner(&out, &mut e, cred.pos, &cred.consumer) {
                jwt_secret(&mut out, &mut e, i, cred);
            }
        }
        for a in &k.acls {
            if let Some(i) = owner(&out, &mut e, a.pos, &a.consumer) {
                out.list[i].groups.push(Arc::from(a.group.value.as_str()));
            }
        }
    }
    out
}

fn key(
    out: &mut Consumers,
    e: &mut Errs<'_>,
    consumer: usize,
    name: &str,
    n: usize,
    cred: &crate::config::kong::KeyAuthCredential,
) {
    if cred.key.0.value.is_empty() {
        e.at(cred.key.0.pos, "an empty key");
        return;
    }
    let id = cred
        .id
        .clone()
        .unwrap_or_else(|| uuid_for(&format!("keyauth:{name}:{n}")));
    if !out.add_key(consumer, &cred.key.0.value, Arc::from(id)) {
        // The key itself is never repeated in a message.
        e.at(cred.key.0.pos, "this key is another credential's too");
    }
}

fn basic(
    out: &mut Consumers,
    e: &mut Errs<'_>,
    consumer: usize,
    cred: &crate::config::kong::BasicAuthCredential,
) {
    let user = &cred.username.value;
    if user.is_empty() || user.contains(':') {
        e.at(
            cred.username.pos,
            "a basic-auth username is not empty and has no `:`",
        );
        return;
    }
    if !out.add_basic(consumer, user, &cred.password.0.value) {
        e.at(
            cred.username.pos,
            format!("basic-auth username `{user}` is taken"),
        );
    }
}

fn jwt_secret(
    out: &mut Consumers,
    e: &mut Errs<'_>,
    consumer: usize,
    cred: &crate::config::kong::JwtSecretCredential,
) {
    let Some(key) = &cred.key else {
        e.at(
            cred.pos,
            "a jwt secret needs `key` (the value of the token's key claim)",
        );
        return;
    };
    let alg = match &cred.algorithm {
        None => Alg::Hs256,
        Some(a) => match Alg::parse(&a.value) {
            Some(alg) => alg,
            None => {
                e.at(
                    a.pos,
                    format!(
                        "algorithm `{}`: weir verifies HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA",
                        a.value
                    ),
                );
                return;
            }
        },
    };
    let secret = cred.secret.as_ref().map(|s| s.0.value.as_bytes());
    let pem = cred.rsa_public_key.as_ref().map(|p| p.value.as_str());
    let keys = match jwt_key(alg, secret, pem) {
        Ok(k) => k,
        Err(why) => {
            let pos = cred.rsa_public_key.as_ref().map_or(cred.pos, |p| p.pos);
            e.at(pos, format!("jwt secret `{}`: {why}", key.value));
            return;
        }
    };
    use base64::Engine;
    let decoded = secret
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|s| jwt_key(alg, Some(&s), None).ok());
    let cred = JwtCredential {
        consumer,
        key: Arc::from(key.value.as_str()),
        alg,
        keys,
        keys_base64: decoded,
    };
    if !out.add_jwt(cred) {
        e.at(key.pos, format!("jwt secret key `{}` is taken", key.value));
    }
}

/// A plugin's runtime form; `None` (errors reported) when it cannot run.
pub(crate) fn plugin(
    p: &KongPlugin,
    file: &Arc<str>,
    consumers: &Consumers,
    errors: &mut Vec<ConfigError>,
) -> Option<Plugin> {
    let mut e = Errs {
        file: file.clone(),
        out: errors,
    };
    let config = p.config.as_ref();
    let anonymous = |e: &mut Errs<'_>, a: &Option<crate::config::decode::Spanned<String>>| {
        let a = a.as_ref().filter(|a| !a.value.is_empty())?;
        let found = consumers.find(&a.value);
        if found.is_none() {
            e.at(a.pos, format!("anonymous: no consumer `{}`", a.value));
        }
        found
    };
    Some(match p.name.value.as_str() {
        "key-auth" => {
            let c: KeyAuthConfig = decode_config(config, file, e.out)?;
            let key_names: Vec<String> = match &c.key_names {
                Some(names) => names.iter().map(|n| n.value.clone()).collect(),
                None => vec!["apikey".to_owned()],
            };
            for n in c.key_names.iter().flatten() {
                if http::HeaderName::from_bytes(n.value.as_bytes()).is_err() {
                    e.at(
                        n.pos,
                        format!("key-auth: `{}` is not a header name", n.value),
                    );
                    return None;
                }
            }
            Plugin::KeyAuth {
                key_names,
                in_header: c.key_in_header.unwrap_or(true),
                in_query: c.key_in_query.unwrap_or(true),
                in_body: c.key_in_body.unwrap_or(false),
                hide: c.hide_credentials.unwrap_or(false),
                anonymous: anonymous(&mut e, &c.anonymous),
                preflight: c.run_on_preflight.unwrap_or(true),
            }
        }
        "basic-auth" => {
            let c: BasicAuthConfig = decode_config(config, file, e.out)?;
            Plugin::BasicAuth {
                hide: c.hide_credentials.unwrap_or(false),
                anonymous: anonymous(&mut e, &c.anonymous),
                realm: c.realm.unwrap_or_else(|| "service".to_owned()),
                preflight: true,
            }
        }
        "jwt" => {
            let c: JwtPluginConfig = decode_config(config, file, e.out)?;
            let mut headers = Vec::new();
            for h in c.header_names.iter().flatten() {
                match http::HeaderName::from_bytes(h.value.as_bytes()) {
                    Ok(n) => headers.push(n),
                    Err(_) => {
                        e.at(h.pos, format!("jwt: `{}` is not a header name", h.value));
                        return None;
                    }
                }
            }
            if c.header_names.is_none() {
                headers.push(http::header::AUTHORIZATION);
            }
            let (mut exp, mut nbf) = (false, false);
            for claim in &c.claims_to_verify {
                match claim.value.as_str() {
                    "exp" => exp = true,
                    "nbf" => nbf = true,
                    other => {
                        e.at(
                            claim.pos,
                            format!("jwt: claims_to_verify `{other}`: exp or nbf"),
                        );
                        return None;
                    }
                }
            }
            Plugin::Jwt {
                params: c.uri_param_names.unwrap_or_else(|| vec!["jwt".to_owned()]),
                cookies: c.cookie_names,
                headers,
                exp,
                nbf,
                key_claim: c.key_claim_name.unwrap_or_else(|| "iss".to_owned()),
                max_exp: c.maximum_expiration.unwrap_or(0),
                secret_is_base64: c.secret_is_base64.unwrap_or(false),
                anonymous: anonymous(&mut e, &c.anonymous),
                preflight: c.run_on_preflight.unwrap_or(true),
            }
        }
        "acl" => {
            let c: AclConfig = decode_config(config, file, e.out)?;
            if c.allow.is_empty() == c.deny.is_empty() {
                e.at(
                    config.map_or(p.pos, |c| c.pos),
                    "acl: set either allow or deny",
                );
                return None;
            }
            Plugin::Acl {
                allow: c.allow,
                deny: c.deny,
                hide_groups: c.hide_groups_header.unwrap_or(false),
            }
        }
        "ip-restriction" => {
            let c: IpRestrictionConfig = decode_config(config, file, e.out)?;
            let blocks = |list: &[crate::config::decode::Spanned<String>], e: &mut Errs<'_>| {
                let mut out = Vec::new();
                for b in list {
                    match IpBlock::parse(&b.value) {
                        Ok(ip) => out.push(ip),
                        Err(why) => e.at(b.pos, format!("ip-restriction: {why}")),
                    }
                }
                out
            };
            let before = e.out.len();
            let (allow, deny) = (blocks(&c.allow, &mut e), blocks(&c.deny, &mut e));
            if e.out.len() > before {
                return None;
            }
            if allow.is_empty() && deny.is_empty() {
                e.at(
                    config.map_or(p.pos, |c| c.pos),
                    "ip-restriction: set allow or deny",
                );
                return None;
            }
            let status = match &c.status {
                None => http::StatusCode::FORBIDDEN,
                Some(s) => match http::StatusCode::from_u16(s.value) {
                    Ok(code) if (100..600).contains(&s.value) => code,
                    _ => {
                        e.at(
                            s.pos,
                            format!("ip-restriction: status {} is not an HTTP status", s.value),
                        );
                        return None;
                    }
                },
            };
            Plugin::IpRestriction {
                allow,
                deny,
                status,
                message: c
                    .message
                    .unwrap_or_else(|| "Your IP address is not allowed".to_owned()),
            }
        }
        other => {
            e.at(
                p.name.pos,
                format!(
                    "`{other}` is not an access plugin: accessPlugins takes {}",
                    ACCESS_PLUGINS.join(", ")
                ),
            );
            return None;
        }
    })
}
