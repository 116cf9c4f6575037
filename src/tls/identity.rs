//! A client's identity from its certificate: the SPIFFE URI in its subject alternative names
//! (`spiffe://cluster.local/ns/NS/sa/SA`), as Istio's `principals` name it (without the
//! scheme). The certificate was verified by the handshake; this only reads it, with a small
//! DER reader that checks every length against what is left and never recurses without bound.

use crate::der::{OCTET_STRING, OID, SEQUENCE, element, elements};

/// `[3]` EXPLICIT: the extensions of a TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `[6]` IMPLICIT IA5String: a URI general name.
const URI: u8 = 0x86;
/// subjectAltName, 2.5.29.17.
const SAN_OID: [u8; 3] = [0x55, 0x1d, 0x11];

/// The certificate's SPIFFE identity, without `spiffe://`.
pub fn principal(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, body, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(body)? else {
        return None;
    };
    let (_, extensions) = elements(tbs).find(|(tag, _)| *tag == EXTENSIONS)?;
    let (SEQUENCE, list, _) = element(extensions)? else {
        return None;
    };
    for (tag, ext) in elements(list) {
        if tag != SEQUENCE {
            continue;
        }
        let mut parts = elements(ext);
        if parts.next() != Some((OID, &SAN_OID[..])) {
            continue;
        }
        // An optional `critical` boolean, then the OCTET STRING holding the names.
        let value = parts.find(|(tag, _)| *tag == OCTET_STRING)?.1;
        let (SEQUENCE, names, _) = element(value)? else {
            return None;
        };
        return elements(names)
            .filter(|(tag, _)| *tag == URI)
            .filter_map(|(_, uri)| std::str::from_utf8(uri).ok())
            .find_map(|uri| uri.strip_prefix("spiffe://"))
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spiffe_uri_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
                .try_into()
                .unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            principal(cert.der()).as_deref(),
            Some("cluster.local/ns/default/sa/bookinfo-productpage")
        );
        // No URI: no identity.
        let plain = rcgen::CertificateParams::new(vec!["x.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(principal(plain.der()), None);
    }

    #[test]
    fn garbage_is_no_identity() {
        let mut rng = fastrand::Rng::with_seed(3);
        for n in 0..2000 {
            let len = rng.usize(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if n % 2 == 0 && !bytes.is_empty() {
                bytes[0] = SEQUENCE;
            }
            assert_eq!(principal(&bytes), None);
        }
        assert_eq!(principal(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
