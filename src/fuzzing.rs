//! Entry points for the fuzz targets in `fuzz/`, which reach weir's private parsers only
//! through here.

use crate::edge::ServerPolicy;
use crate::http1::{Chunk, Decoder, Reader, Step};

/// The request and response head parsers and the chunked body decoder over arbitrary bytes.
/// Must never panic, and decoding must stay within the input.
pub fn http1_parse(data: &[u8]) {
    let mut fields = Vec::new();
    let mut r = Reader::from_bytes((), data);
    let policy = ServerPolicy::default();
    while let Ok(Some(_)) = crate::http1::server::take_head(&mut r, &mut fields, &policy) {}
    let mut r = Reader::from_bytes((), data);
    while let Ok(Some(_)) = crate::upstream::h1_head::take_head(&mut r, &mut fields) {}
    let mut r = Reader::from_bytes((), data);
    let mut decoder = Decoder::Chunked(Chunk::Size);
    let mut total = 0;
    while let Ok(Step::Data(chunk)) = decoder.step(&mut r) {
        total += chunk.len();
    }
    assert!(total <= data.len());
}

/// The access checks' parsers over arbitrary input: a token (read, timed, verified against
/// Istio's sample keys), a key set, a PEM public key, a client certificate's identity, and a
/// RequestAuthentication and AuthorizationPolicy whose values are the input. Must never panic.
pub fn access_parse(data: &[u8]) {
    use crate::policy::access::{jwk, jwt, kong};
    let _ = crate::tls::identity::principal(data);
    let text = String::from_utf8_lossy(data);
    if let Ok(token) = jwt::decode(&text) {
        let _ = token.check_time(0, jwt::CLOCK_SKEW_SECS);
        if let Ok(keys) = jwk::parse_jwks(include_str!("../tests/data/istio-jwt/jwks.json")) {
            let _ = token.verify(&keys);
        }
    }
    let _ = jwk::parse_jwks(&text);
    let _ = kong::jwt_key(jwk::Alg::Rs256, None, Some(&text));
    let value = serde_json::Value::String(text.into_owned()).to_string();
    let yaml = format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: istio-system}}
spec:
  rules:
  - from: [{{source: {{ipBlocks: [{value}], requestPrincipals: [{value}]}}}}]
    to: [{{operation: {{paths: [{value}], ports: [{value}], hosts: [{value}]}}}}]
    when: [{{key: {value}, values: [{value}]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: r, namespace: istio-system}}
spec:
  jwtRules: [{{issuer: {value}, jwks: {value}, fromHeaders: [{{name: {value}}}]}}]
"
    );
    if let Ok(set) = crate::config::parse_set("fuzz.yaml", &yaml) {
        let _ = crate::config::validate(
            &set,
            "127.0.0.1:15001"
                .parse()
                .unwrap_or(([127, 0, 0, 1], 15001).into()),
        );
    }
}
