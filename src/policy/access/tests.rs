//! The attack table of the access checks, one test each, against real keys: Istio's published
//! sample key pair (tests/data/istio-jwt) and keys made here.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use ring::rand::SystemRandom;
use ring::signature;
use rustls_pki_types::PrivatePkcs1KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use super::authn::{
    Authn, Jwks, JwtRule, JwtRuleSpec, KeySource, Location, authenticate, b64url_encode, facts_with,
};
use super::jwk::{KeySet, parse_jwks};
use super::jwt::{self, JwtError};
use super::*;

const ISTIO_JWKS: &str = include_str!("../../../tests/data/istio-jwt/jwks.json");
const ISTIO_KEY: &str = include_str!("../../../tests/data/istio-jwt/key.pem");
const DEMO_JWT: &str = include_str!("../../../tests/data/istio-jwt/demo.jwt");
const GROUPS_JWT: &str = include_str!("../../../tests/data/istio-jwt/groups-scope.jwt");
const ISTIO_KID: &str = "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ";
const ISS: &str = "testing@secure.istio.io";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `header.payload` of JSON values.
fn unsigned(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    )
}

/// A token signed with Istio's sample RSA key (RS256).
fn rs256(claims: serde_json::Value) -> String {
    rs256_kid(claims, ISTIO_KID)
}

fn rs256_kid(claims: serde_json::Value, kid: &str) -> String {
    let der = PrivatePkcs1KeyDer::from_pem_slice(ISTIO_KEY.as_bytes()).unwrap();
    let key = signature::RsaKeyPair::from_der(der.secret_pkcs1_der()).unwrap();
    let msg = unsigned(&json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), &claims);
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{msg}.{}", b64url_encode(&sig))
}

fn hs256(secret: &[u8], header: serde_json::Value, claims: serde_json::Value) -> String {
    let msg = unsigned(&header, &claims);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        msg.as_bytes(),
    );
    format!("{msg}.{}", b64url_encode(tag.as_ref()))
}

fn source(jwks: Jwks) -> Arc<KeySource> {
    Arc::new(KeySource::new(
        jwks,
        Duration::from_secs(5),
        Gauge::default(),
        Counter::default(),
    ))
}

fn rule_with(keys: Arc<KeySource>, audiences: &[&str]) -> Arc<JwtRule> {
    Arc::new(JwtRule {
        spec: JwtRuleSpec {
            policy: Arc::from("foo/jwt-example"),
            issuer: ISS.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            jwks: keys.jwks.clone(),
            timeout: Duration::from_secs(5),
            from: Location::defaults(),
            forward: false,
            payload_header: None,
            claim_headers: Vec::new(),
        },
        keys,
    })
}

fn istio_rule() -> Arc<JwtRule> {
    rule_with(source(Jwks::Inline(parse_jwks(ISTIO_JWKS).unwrap())), &[])
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

/// What authenticating `token` (in `Authorization: Bearer`) against `rule` gives.
fn outcome(rule: &Arc<JwtRule>, token: &str) -> Result<Identity, JwtError> {
    let h = bearer(token);
    match authenticate(std::slice::from_ref(rule), &facts_with(&h, None), now()) {
        Ok(Authn::Valid(id, _)) => Ok(id),
        Ok(Authn::NoToken) => panic!("no token found"),
        Err(r) => Err(r.error),
    }
}

#[test]
fn istios_sample_tokens_verify_with_its_sample_keys() {
    let rule = istio_rule();
    let id = outcome(&rule, DEMO_JWT.trim()).unwrap();
    assert_eq!(
        id.principal,
        "testing@secure.istio.io/testing@secure.istio.io"
    );
    let id = outcome(&rule, GROUPS_JWT.trim()).unwrap();
    assert_eq!(id.claim_values(&["groups".into()]), ["group1", "group2"]);
}

#[test]
fn alg_none_is_refused() {
    let claims = json!({"iss": ISS, "sub": "x"});
    let token = format!("{}.", unsigned(&json!({"alg": "none"}), &claims));
    assert_eq!(
        outcome(&istio_rule(), &token),
        Err(JwtError::UnsupportedAlg)
    );
    // Nor with a signature attached, nor in other spellings.
    for alg in ["none", "None", "NONE", ""] {
        let token = format!("{}.c2ln", unsigned(&json!({"alg": alg}), &claims));
        assert_eq!(
            outcome(&istio_rule(), &token),
            Err(JwtError::UnsupportedAlg)
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The algorithm-confusion attack: the public key (as its PEM, its modulus or the JWKS
    // text) used as an HMAC secret.
    let set = parse_jwks(ISTIO_JWKS).unwrap();
    let super::jwk::Material::Rsa { n, .. } = &set.keys[0].material else {
        panic!("not RSA");
    };
    let claims = json!({"iss": ISS, "sub": "mallory", "exp": now() + 600});
    for secret in [n.as_slice(), ISTIO_JWKS.as_bytes(), b"AQAB"] {
        let token = hs256(
            secret,
            json!({"alg": "HS256", "kid": ISTIO_KID}),
            claims.clone(),
        );
        assert_eq!(outcome(&istio_rule(), &token), Err(JwtError::NoKey));
    }
}

#[test]
fn a_signature_over_a_tampered_payload_is_refused() {
    let good = rs256(json!({"iss": ISS, "sub": "alice", "exp": now() + 600}));
    assert!(outcome(&istio_rule(), &good).is_ok());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = b64url_encode(
        json!({"iss": ISS, "sub": "admin", "exp": now() + 600})
            .to_string()
            .as_bytes(),
    );
    let token = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_eq!(outcome(&istio_rule(), &token), Err(JwtError::Signature));
    // A signature cut short, or of another token.
    let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
    assert_eq!(outcome(&istio_rule(), &short), Err(JwtError::Signature));
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused_with_a_stated_skew() {
    let skew = jwt::CLOCK_SKEW_SECS;
    let at = |exp: i64, nbf: i64| rs256(json!({"iss": ISS, "sub": "a", "exp": exp, "nbf": nbf}));
    let t = now();
    assert_eq!(
        outcome(&istio_rule(), &at(t - skew - 5, t - 3600)),
        Err(JwtError::Expired)
    );
    assert_eq!(
        outcome(&istio_rule(), &at(t + 3600, t + skew + 5)),
        Err(JwtError::NotYetValid)
    );
    // Within the skew either way: accepted.
    assert!(outcome(&istio_rule(), &at(t - skew + 5, t + skew - 5)).is_ok());
    // A time claim that is not a number.
    let token = rs256(json!({"iss": ISS, "exp": "tomorrow"}));
    assert_eq!(
        outcome(&istio_rule(), &token),
        Err(JwtError::BadTime("exp"))
    );
}

#[test]
fn a_wrong_issuer_or_audience_is_refused() {
    let token = rs256(json!({"iss": "evil@example.com", "sub": "a"}));
    assert_eq!(outcome(&istio_rule(), &token), Err(JwtError::UnknownIssuer));
    let keys = source(Jwks::Inline(parse_jwks(ISTIO_JWKS).unwrap()));
    let rule = rule_with(keys, &["bookstore"]);
    let token = rs256(json!({"iss": ISS, "aud": "other"}));
    assert_eq!(outcome(&rule, &token), Err(JwtError::Audience));
    let token = rs256(json!({"iss": ISS}));
    assert_eq!(outcome(&rule, &token), Err(JwtError::Audience));
    let token = rs256(json!({"iss": ISS, "aud": ["x", "bookstore"]}));
    assert!(outcome(&rule, &token).is_ok());
}

#[test]
fn oversized_and_malformed_tokens_are_refused_with_bounded_work() {
    let rule = istio_rule();
    let big = "a".repeat(jwt::MAX_TOKEN_BYTES + 1);
    assert_eq!(outcome(&rule, &big), Err(JwtError::TooLarge));
    for (token, want) in [
        ("abc", JwtError::BadFormat),
        ("a.b", JwtError::BadFormat),
        ("a.b.c.d", JwtError::BadFormat),
        (".b.c", JwtError::BadFormat),
        ("!!.b.c", JwtError::HeaderBase64),
        ("e30.!!.c", JwtError::NoAlg),
        ("bnVsbA.e30.c", JwtError::HeaderJson),
    ] {
        assert_eq!(outcome(&rule, token), Err(want), "{token}");
    }
    let header = b64url_encode(br#"{"alg":"RS256"}"#);
    let token = format!("{header}.!!.c");
    assert_eq!(outcome(&rule, &token), Err(JwtError::PayloadBase64));
    let token = format!("{header}.{}.c", b64url_encode(b"[1,2]"));
    assert_eq!(outcome(&rule, &token), Err(JwtError::PayloadJson));
    let token = format!("{header}.{}.!!", b64url_encode(b"{}"));
    assert_eq!(outcome(&rule, &token), Err(JwtError::SignatureBase64));
    // Deeply nested JSON is refused by the parser's depth limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    let token = format!("{header}.{}.c", b64url_encode(deep.as_bytes()));
    assert_eq!(outcome(&rule, &token), Err(JwtError::PayloadJson));
    // Extensions weir does not understand.
    let crit = b64url_encode(br#"{"alg":"RS256","crit":["exp"]}"#);
    let token = format!("{crit}.{}.c", b64url_encode(b"{}"));
    assert_eq!(outcome(&rule, &token), Err(JwtError::Critical));
}

#[test]
fn random_bytes_never_panic() {
    let rule = istio_rule();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2000 {
        let len = rng.usize(0..300);
        let text: String = (0..len)
            .map(|_| *rng.choice(b"ab.-_=eyJ0{}\"".iter()).unwrap() as char)
            .collect();
        let h = bearer(&text);
        let _ = authenticate(std::slice::from_ref(&rule), &facts_with(&h, None), now());
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_kids_ask_for_the_keys_at_most_once_per_interval() {
    let keys = source(Jwks::Uri("https://idp.example/jwks".to_owned()));
    keys.store(parse_jwks(ISTIO_JWKS).unwrap());
    let rule = rule_with(keys.clone(), &[]);
    let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = wakes.clone();
    let watcher = keys.clone();
    let task = tokio::spawn(async move {
        loop {
            watcher.wake.notified().await;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    for i in 0..1000 {
        let token = rs256_kid(json!({"iss": ISS}), &format!("made-up-{i}"));
        assert_eq!(outcome(&rule, &token), Err(JwtError::NoKey));
        tokio::task::yield_now().await;
    }
    assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    tokio::time::advance(authn::ASK_EVERY + Duration::from_secs(1)).await;
    let token = rs256_kid(json!({"iss": ISS}), "made-up-again");
    assert_eq!(outcome(&rule, &token), Err(JwtError::NoKey));
    tokio::task::yield_now().await;
    assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 2);
    // A known kid asks for nothing.
    assert!(outcome(&rule, &rs256(json!({"iss": ISS}))).is_ok());
    task.abort();
}

#[test]
fn a_token_verified_before_stops_passing_when_its_key_leaves() {
    let keys = source(Jwks::Uri("https://idp.example/jwks".to_owned()));
    keys.store(parse_jwks(ISTIO_JWKS).unwrap());
    let rule = rule_with(keys.clone(), &[]);
    let token = rs256(json!({"iss": ISS, "sub": "a", "exp": now() + 2}));
    for _ in 0..3 {
        assert!(outcome(&rule, &token).is_ok(), "verified, then remembered");
    }
    // A remembered token still gets its time checked.
    let h = bearer(&token);
    let later = authenticate(
        std::slice::from_ref(&rule),
        &facts_with(&h, None),
        now() + 300,
    );
    assert_eq!(later.unwrap_err().error, JwtError::Expired);
    // A changed token is not the remembered one.
    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert!(outcome(&rule, &tampered).is_err());
    // The key rotates out: the token it verified is refused from the next request on.
    let other = r#"{"keys":[{"kty":"oct","kid":"other","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#;
    keys.store(parse_jwks(other).unwrap());
    assert_eq!(outcome(&rule, &token), Err(JwtError::NoKey));
    keys.store(parse_jwks(ISTIO_JWKS).unwrap());
    assert!(outcome(&rule, &token).is_ok(), "back with its key");
}

#[test]
fn keys_never_fetched_refuse_every_token() {
    let rule = rule_with(source(Jwks::Uri("http://127.0.0.1:9/jwks".into())), &[]);
    assert_eq!(
        outcome(&rule, DEMO_JWT.trim()),
        Err(JwtError::NoKeys),
        "fail closed"
    );
}

#[test]
fn tokens_are_found_where_the_rule_says() {
    let rule = istio_rule();
    let token = DEMO_JWT.trim();
    // The default places: a bearer header (any case of the scheme), `access_token`.
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("bearer {token}").parse().unwrap());
    let found = authenticate(std::slice::from_ref(&rule), &facts_with(&h, None), now());
    let Ok(Authn::Valid(_, edits)) = found else {
        panic!("{found:?}");
    };
    assert_eq!(edits, [Edit::Remove(http::header::AUTHORIZATION)]);
    let empty = HeaderMap::new();
    let q = format!("a=1&access_token={token}");
    assert!(matches!(
        authenticate(
            std::slice::from_ref(&rule),
            &facts_with(&empty, Some(&q)),
            now()
        ),
        Ok(Authn::Valid(..))
    ));
    // Elsewhere, or another scheme: no token, so unauthenticated (not refused).
    let mut h = HeaderMap::new();
    h.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    h.insert("cookie", format!("session={token}").parse().unwrap());
    assert!(matches!(
        authenticate(std::slice::from_ref(&rule), &facts_with(&h, None), now()),
        Ok(Authn::NoToken)
    ));
}

#[test]
fn the_original_client_is_taken_only_through_trusted_hops() {
    let peer: std::net::IpAddr = "10.0.0.9".parse().unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
    assert_eq!(remote_ip(&h, peer, 0), peer, "never by default");
    assert_eq!(
        remote_ip(&h, peer, 1),
        "5.6.7.8".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        remote_ip(&h, peer, 2),
        "1.2.3.4".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(remote_ip(&h, peer, 3), peer, "too few hops");
    h.insert("x-forwarded-for", "garbage".parse().unwrap());
    assert_eq!(remote_ip(&h, peer, 1), peer);
}

#[test]
fn a_key_set_without_keys_weir_uses_is_not_a_key_set() {
    assert!(parse_jwks(r#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#).is_err());
    let _ = KeySet::default();
}
