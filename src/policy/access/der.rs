//! Public keys written as PEM (`rsa_public_key` of Kong's jwt secrets): SubjectPublicKeyInfo
//! (`PUBLIC KEY`) of RSA, EC P-256/P-384 or Ed25519 keys, or PKCS#1 (`RSA PUBLIC KEY`).

use super::jwk::Material;
use crate::der::{BIT_STRING, INTEGER, OID, SEQUENCE, element, elements, pem};

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7.
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1, 1.3.132.0.34.
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// Ed25519, 1.3.101.112.
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The key in a PEM text.
pub(super) fn public_key(text: &str) -> Result<Material, String> {
    if let Some(der) = pem(text, "RSA PUBLIC KEY") {
        return rsa(&der).ok_or_else(|| "not an RSA public key".to_owned());
    }
    let der = pem(text, "PUBLIC KEY")
        .ok_or("not a PEM public key (-----BEGIN PUBLIC KEY----- or RSA PUBLIC KEY)")?;
    spki(&der)
        .ok_or_else(|| "not an RSA, EC P-256/P-384 or Ed25519 public key weir can read".to_owned())
}

fn spki(der: &[u8]) -> Option<Material> {
    let (SEQUENCE, body, _) = element(der)? else {
        return None;
    };
    let mut parts = elements(body);
    let (SEQUENCE, algorithm) = parts.next()? else {
        return None;
    };
    let (BIT_STRING, bits) = parts.next()? else {
        return None;
    };
    // The first byte counts unused bits: always 0 for a key.
    let (0, key) = bits.split_first()? else {
        return None;
    };
    let mut alg = elements(algorithm);
    let (OID, oid) = alg.next()? else {
        return None;
    };
    match oid {
        RSA => rsa(key),
        EC => {
            let (OID, curve) = alg.next()? else {
                return None;
            };
            let (p384, size) = match curve {
                P256 => (false, 65),
                P384 => (true, 97),
                _ => return None,
            };
            (key.len() == size && key[0] == 4).then(|| Material::Ec {
                p384,
                point: key.to_vec(),
            })
        }
        ED25519 => (key.len() == 32).then(|| Material::Ed25519(key.to_vec())),
        _ => None,
    }
}

/// PKCS#1 `RSAPublicKey`: modulus and exponent.
fn rsa(der: &[u8]) -> Option<Material> {
    let (SEQUENCE, body, _) = element(der)? else {
        return None;
    };
    let mut parts = elements(body);
    let (INTEGER, n) = parts.next()? else {
        return None;
    };
    let (INTEGER, e) = parts.next()? else {
        return None;
    };
    let strip = |x: &[u8]| {
        let i = x.iter().position(|b| *b != 0).unwrap_or(x.len());
        x[i..].to_vec()
    };
    let (n, e) = (strip(n), strip(e));
    (!n.is_empty() && !e.is_empty()).then_some(Material::Rsa { n, e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_public_keys_of_certificates_tools_make() {
        let key = rcgen::KeyPair::generate().unwrap();
        let m = public_key(&key.public_key_pem()).unwrap();
        assert!(matches!(m, Material::Ec { p384: false, .. }));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(matches!(
            public_key(&key.public_key_pem()).unwrap(),
            Material::Ed25519(_)
        ));
        assert!(public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(public_key("hello").is_err());
    }
}
