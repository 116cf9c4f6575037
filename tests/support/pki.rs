//! Test certificates: a CA made with rcgen, the certificates it signs as PEM files, and
//! rustls server configurations made from them.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::scratch_dir;

/// A CA, and certificates it signs, written as PEM files into a scratch directory.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = scratch_dir();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    /// Writes `NAME.pem` and `NAME-key.pem` for `names`; the certificate's DER.
    pub fn issue(&self, file: &str, names: &[&str]) -> CertificateDer<'static> {
        self.issue_with(file, names, None)
    }

    /// As `issue`, with a SPIFFE identity (`spiffe://...`) among the names when given.
    #[allow(dead_code)] // not every test binary makes workload identities
    pub fn issue_with(
        &self,
        file: &str,
        names: &[&str],
        spiffe: Option<&str>,
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if let Some(uri) = spiffe {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        }
        let cert = params.signed_by(&key, &self.ca).unwrap();
        // Written whole, then renamed, as certificate tools do.
        for (path, text) in [
            (
                self.dir.join(format!("{file}-key.pem")),
                key.serialize_pem(),
            ),
            (self.dir.join(format!("{file}.pem")), cert.pem()),
        ] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        cert.der().clone()
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// A TLS server configuration with the certificate `file` (from `pki`), offering `alpn`; with
/// `clients_of`, it requires client certificates signed by that CA.
pub fn server_config(
    pki: &Pki,
    file: &str,
    alpn: &[&[u8]],
    clients_of: Option<&Pki>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients_of {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.ca.der().clone()).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let cert = CertificateDer::from_pem_file(pki.dir.join(format!("{file}.pem"))).unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.dir.join(format!("{file}-key.pem"))).unwrap();
    let mut config = builder.with_single_cert(vec![cert], key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
