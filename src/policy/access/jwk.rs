//! JSON Web Keys (RFC 7517) and the signature algorithms weir verifies (RFC 7518), on `ring`
//! (already linked through rustls: one crypto stack).
//!
//! A key is only ever used with the algorithms of its type: an RSA key verifies RS*/PS*
//! signatures, an EC key ES256/ES384, an OKP key EdDSA, a symmetric key HS*. A token that names
//! HS256 is therefore never checked against an RSA public key taken as an HMAC secret (the
//! algorithm-confusion attack), and `none` is no algorithm at all.

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;

/// The largest key set read (bytes): anything bigger is refused, not parsed.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// The most keys kept from one set.
pub const MAX_KEYS: usize = 100;

/// A signature algorithm (JWS `alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// The algorithm named `name` (`none` and unknown names are none).
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    /// Its JWS name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// What a key verifies with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Material {
    /// An RSA public key: modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Exponent.
        e: Vec<u8>,
    },
    /// An EC public key on P-256 or P-384: the uncompressed point.
    Ec {
        /// P-384 (else P-256).
        p384: bool,
        /// `04 || x || y`.
        point: Vec<u8>,
    },
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
    /// A symmetric (HMAC) secret.
    Secret(Vec<u8>),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret is never printed.
        f.write_str(match self {
            Material::Rsa { .. } => "RSA",
            Material::Ec { p384: false, .. } => "EC P-256",
            Material::Ec { p384: true, .. } => "EC P-384",
            Material::Ed25519(_) => "OKP Ed25519",
            Material::Secret(_) => "oct (secret)",
        })
    }
}

impl Material {
    /// Whether this key may verify `alg`.
    pub fn fits(&self, alg: Alg) -> bool {
        match self {
            Material::Rsa { .. } => matches!(
                alg,
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ),
            Material::Ec { p384: false, .. } => alg == Alg::Es256,
            Material::Ec { p384: true, .. } => alg == Alg::Es384,
            Material::Ed25519(_) => alg == Alg::EdDsa,
            Material::Secret(_) => matches!(alg, Alg::Hs256 | Alg::Hs384 | Alg::Hs512),
        }
    }

    /// Whether `sig` is this key's signature of `msg` with `alg` (false for an algorithm the
    /// key does not fit).
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match self {
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            Material::Ec { p384, point } => {
                let alg: &dyn signature::VerificationAlgorithm = if *p384 {
                    &signature::ECDSA_P384_SHA384_FIXED
                } else {
                    &signature::ECDSA_P256_SHA256_FIXED
                };
                UnparsedPublicKey::new(alg, point).verify(msg, sig).is_ok()
            }
            Material::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(msg, sig)
                .is_ok(),
            Material::Secret(secret) => {
                let alg = match alg {
                    Alg::Hs256 => ring::hmac::HMAC_SHA256,
                    Alg::Hs384 => ring::hmac::HMAC_SHA384,
                    _ => ring::hmac::HMAC_SHA512,
                };
                // Compared in constant time by ring.
                ring::hmac::verify(&ring::hmac::Key::new(alg, secret), msg, sig).is_ok()
            }
        }
    }
}

/// One key of a set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Jwk {
    /// Its `kid`.
    pub kid: Option<String>,
    /// The one algorithm it is for (`alg`), if it says.
    pub alg: Option<Alg>,
    /// The key.
    pub material: Material,
}

impl Jwk {
    /// Whether this key may check a token signed with `alg` under `kid`: a token's `kid` must
    /// be the key's when both have one.
    pub fn candidate(&self, alg: Alg, kid: Option<&str>) -> bool {
        self.material.fits(alg)
            && self.alg.is_none_or(|a| a == alg)
            && match (kid, &self.kid) {
                (Some(t), Some(k)) => t == k,
                _ => true,
            }
    }
}

/// A set of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySet {
    /// The keys, in the set's order.
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Whether some key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Base64url, with or without padding (RFC 7515 asks for none; some issuers pad).
pub fn b64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

/// Reads a JWKS document (`{"keys": [...]}`). Keys of other uses (`use: enc`), types or curves
/// are left out; a set with no key weir can use is an error, as is one over the limits.
pub fn parse_jwks(text: &str) -> Result<KeySet, String> {
    if text.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "the key set is {} bytes, over the limit of {MAX_JWKS_BYTES}",
            text.len()
        ));
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err("not a JWKS document: no `keys` array".to_owned());
    };
    if keys.len() > MAX_KEYS {
        return Err(format!("{} keys, over the limit of {MAX_KEYS}", keys.len()));
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match parse_jwk(key) {
            Ok(Some(k)) => out.push(k),
            Ok(None) => {}
            Err(e) => skipped.push(format!("key {i}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(if skipped.is_empty() {
            "no signing key weir can use (RSA, EC P-256/P-384, Ed25519, oct)".to_owned()
        } else {
            skipped.join("; ")
        });
    }
    Ok(KeySet { keys: out })
}

/// One key: `None` for a key that is not for signatures or of a type weir does not use.
fn parse_jwk(key: &Value) -> Result<Option<Jwk>, String> {
    let field = |name: &str| key.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("no `{name}`"))?;
        b64url(text).map_err(|_| format!("`{name}` is not base64url"))
    };
    if field("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match field("alg") {
        Some(name) => match Alg::parse(name) {
            Some(a) => Some(a),
            // A key for an algorithm weir does not verify is never a candidate.
            None => return Ok(None),
        },
        None => None,
    };
    let material = match field("kty") {
        Some("RSA") => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            if n.is_empty() || e.is_empty() {
                return Err("empty `n` or `e`".to_owned());
            }
            Material::Rsa { n, e }
        }
        Some("EC") => {
            let p384 = match field("crv") {
                Some("P-256") => false,
                Some("P-384") => true,
                _ => return Ok(None),
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            let size = if p384 { 48 } else { 32 };
            if x.len() != size || y.len() != size {
                return Err("`x` and `y` do not fit the curve".to_owned());
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::Ec { p384, point }
        }
        Some("OKP") if field("crv") == Some("Ed25519") => {
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 `x` is 32 bytes".to_owned());
            }
            Material::Ed25519(x)
        }
        Some("oct") => {
            let k = bytes("k")?;
            if k.is_empty() {
                return Err("empty `k`".to_owned());
            }
            Material::Secret(k)
        }
        _ => return Ok(None),
    };
    let jwk = Jwk {
        kid: field("kid").map(str::to_owned),
        alg,
        material,
    };
    if let Some(a) = alg
        && !jwk.material.fits(a)
    {
        return Err(format!(
            "`alg` {} does not fit a {:?} key",
            a.name(),
            jwk.material
        ));
    }
    Ok(Some(jwk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_key_types_and_leaves_out_the_rest() {
        let set = parse_jwks(
            r#"{"keys":[
              {"kty":"RSA","kid":"r","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX","e":"AQAB"},
              {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},
              {"kty":"EC","crv":"P-521","x":"AA","y":"AA"},
              {"kty":"oct","k":"c2VjcmV0","alg":"HS256"},
              {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
            ]}"#,
        )
        .unwrap();
        let kinds: Vec<String> = set
            .keys
            .iter()
            .map(|k| format!("{:?}", k.material))
            .collect();
        assert_eq!(kinds, ["RSA", "oct (secret)", "OKP Ed25519"]);
        assert!(set.has_kid("r"));
        // A symmetric key never checks an RSA signature, nor an RSA key an HMAC.
        assert!(!set.keys[1].candidate(Alg::Rs256, None));
        assert!(!set.keys[0].candidate(Alg::Hs256, None));
        assert!(set.keys[0].candidate(Alg::Ps256, Some("r")));
        assert!(!set.keys[0].candidate(Alg::Rs256, Some("other")));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "",
            "[]",
            r#"{"keys":{}}"#,
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#,
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"RS256"}]}"#,
        ] {
            assert!(parse_jwks(bad).is_err(), "{bad}");
        }
        let many = format!(
            r#"{{"keys":[{}]}}"#,
            vec![r#"{"kty":"oct","k":"c2VjcmV0"}"#; MAX_KEYS + 1].join(",")
        );
        assert!(parse_jwks(&many).unwrap_err().contains("over the limit"));
    }

    #[test]
    fn a_secret_is_never_printed() {
        let m = Material::Secret(b"hunter2".to_vec());
        assert!(!format!("{m:?}").contains("hunter2"));
    }
}
