//! JSON Web Tokens (RFC 7519) in their compact JWS form: read with bounded work, checked for
//! time, then for signature. The errors read as Envoy's `jwt_authn` filter words them, so
//! clients and runbooks written for Istio keep working.

use serde_json::{Map, Value};

use super::jwk::{Alg, KeySet, b64url};

/// The longest token read (bytes); a longer one is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How far `exp` and `nbf` may be off (Envoy's default `clock_skew_seconds`).
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("Jwt is too large")]
    TooLarge,
    /// Not three dot-separated parts.
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    /// The header is not base64url.
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBase64,
    /// The header is not a JSON object.
    #[error("Jwt header is an invalid JSON")]
    HeaderJson,
    /// No `alg`, or not a string.
    #[error("Jwt header [alg] field is required and must be a string")]
    NoAlg,
    /// `none`, or an algorithm weir does not verify.
    #[error("Jwt header [alg] is not supported")]
    UnsupportedAlg,
    /// The header asks for extensions weir does not understand (`crit`).
    #[error("Jwt header [crit] is not supported")]
    Critical,
    /// The payload is not base64url.
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBase64,
    /// The payload is not a JSON object.
    #[error("Jwt payload is an invalid JSON")]
    PayloadJson,
    /// The signature is not base64url.
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBase64,
    /// A time claim that is not a number.
    #[error("Jwt {0} claim is not a number")]
    BadTime(&'static str),
    /// `exp` has passed.
    #[error("Jwt is expired")]
    Expired,
    /// `nbf` is to come.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// No rule is for this `iss`.
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    /// `aud` is none of those accepted.
    #[error("Audiences in Jwt are not allowed")]
    Audience,
    /// No key of the set is for this `kid` and `alg`.
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    NoKey,
    /// The keys were never fetched.
    #[error("Jwks remote fetch is failed")]
    NoKeys,
    /// No key's signature matches.
    #[error("Jwt verification fails")]
    Signature,
}

/// A token read but not yet verified.
#[derive(Debug)]
pub struct Token<'a> {
    /// The algorithm it names.
    pub alg: Alg,
    /// Its `kid`.
    pub kid: Option<String>,
    /// Its claims.
    pub claims: Map<String, Value>,
    /// `header.payload`: what is signed.
    pub signed: &'a str,
    /// The payload part, as written (base64url).
    pub payload: &'a str,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Reads a compact token. Bounded: the length is checked first, then each part is decoded
/// once; no key is touched.
pub fn decode(raw: &str) -> Result<Token<'_>, JwtError> {
    if raw.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = raw.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::BadFormat);
    };
    if h.is_empty() || p.is_empty() {
        return Err(JwtError::BadFormat);
    }
    let header = b64url(h).map_err(|_| JwtError::HeaderBase64)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|_| JwtError::HeaderJson)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::NoAlg)?;
    let alg = Alg::parse(alg).ok_or(JwtError::UnsupportedAlg)?;
    if header.contains_key("crit") {
        return Err(JwtError::Critical);
    }
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let payload = b64url(p).map_err(|_| JwtError::PayloadBase64)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| JwtError::PayloadJson)?;
    let signature = b64url(s).map_err(|_| JwtError::SignatureBase64)?;
    Ok(Token {
        alg,
        kid,
        claims,
        signed: &raw[..h.len() + 1 + p.len()],
        payload: p,
        signature,
    })
}

impl Token<'_> {
    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Checks `exp` and `nbf` against `now` (seconds since the epoch), with `skew` either way.
    /// A token without them is not refused for it.
    pub fn check_time(&self, now: i64, skew: i64) -> Result<(), JwtError> {
        let time = |name: &'static str| -> Result<Option<i64>, JwtError> {
            match self.claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| Some(f.floor() as i64))
                    .ok_or(JwtError::BadTime(name)),
            }
        };
        if let Some(exp) = time("exp")?
            && now > exp.saturating_add(skew)
        {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = time("nbf")?
            && now < nbf.saturating_sub(skew)
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }

    /// Whether `aud` (a string or a list) has one of `accepted` (none given: any).
    pub fn audience_ok(&self, accepted: &[String]) -> bool {
        if accepted.is_empty() {
            return true;
        }
        self.audiences()
            .iter()
            .any(|a| accepted.iter().any(|x| x == a))
    }

    /// The token's audiences.
    pub fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the signature with the keys of `set` that may have made it: those of the
    /// token's algorithm family (and `kid`, when both say). At most every key of the set is
    /// tried once.
    pub fn verify(&self, set: &KeySet) -> Result<(), JwtError> {
        let mut candidates = set
            .keys
            .iter()
            .filter(|k| k.candidate(self.alg, self.kid.as_deref()))
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::NoKey);
        }
        if candidates.any(|k| {
            k.material
                .verify(self.alg, self.signed.as_bytes(), &self.signature)
        }) {
            Ok(())
        } else {
            Err(JwtError::Signature)
        }
    }
}
