//! A DestinationRule's `tls`: connections to upstreams over TLS (`SIMPLE`), with a client
//! certificate (`MUTUAL`).
//!
//! The server's certificate must chain to `caCertificates` (else the system's trust store)
//! and carry the name weir connects to: one of `subjectAltNames` when given, else the SNI
//! name (`sni`, else the service host). `insecureSkipVerify` accepts any certificate. ALPN
//! offers the one protocol the cluster speaks (`h2` or `http/1.1`).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::files::{RECHECK, Watched, certificates, private_key, provider, roots};

/// Where Debian, Fedora and BSD-like systems keep the trusted CAs (`SSL_CERT_FILE` first).
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A DestinationRule's `tls`, as configured (everything but the name to connect to).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientSpec {
    /// What the server's certificate is checked against.
    pub trust: Trust,
    /// For `MUTUAL`: the certificate chain and private key weir presents.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Names the server's certificate must carry one of (empty: the SNI name).
    pub subject_alt_names: Vec<String>,
}

/// What an upstream's certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The configured CA bundle (`caCertificates`).
    Ca(PathBuf),
    /// The system's CA bundle (certificates rustls cannot use in it are skipped).
    System(PathBuf),
    /// Nothing: any certificate is accepted (`insecureSkipVerify`).
    Any,
}

impl ClientSpec {
    /// `MUTUAL` or `SIMPLE`.
    pub fn mode(&self) -> &'static str {
        if self.identity.is_some() {
            "MUTUAL"
        } else {
            "SIMPLE"
        }
    }
}

/// The system's CA bundle: `SSL_CERT_FILE`, else the first of the usual places that exists.
pub fn system_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Loaded client configurations for one [`ClientSpec`]: one offering `http/1.1`, one `h2`.
#[derive(Debug)]
pub struct ClientTls {
    spec: ClientSpec,
    configs: Watched<[Arc<ClientConfig>; 2]>,
    /// When a failed handshake was last logged (one line a second at most).
    warned: Mutex<Option<Instant>>,
}

impl ClientTls {
    /// Loads the files; `Err` says which one failed and why.
    pub fn new(spec: ClientSpec) -> Result<ClientTls, String> {
        let ca = match &spec.trust {
            Trust::Ca(p) | Trust::System(p) => Some(p),
            Trust::Any => None,
        };
        let files = ca
            .into_iter()
            .chain(spec.identity.iter().flat_map(|(c, k)| [c, k]))
            .cloned()
            .collect();
        Ok(ClientTls {
            configs: Watched::new(files, || load(&spec))?,
            spec,
            warned: Mutex::new(None),
        })
    }

    /// The settings.
    pub fn spec(&self) -> &ClientSpec {
        &self.spec
    }

    /// Completes a TLS handshake on a new upstream connection.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        name: &ServerName<'static>,
        h2: bool,
    ) -> io::Result<TlsStream<TcpStream>> {
        let configs = self.configs.get(|| load(&self.spec));
        TlsConnector::from(configs[usize::from(h2)].clone())
            .connect(name.clone(), tcp)
            .await
    }

    /// Whether a failed handshake should be logged now (once a second at most).
    pub fn should_warn(&self) -> bool {
        let Ok(mut last) = self.warned.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < RECHECK) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// A cluster's upstream TLS: the loaded settings and the name to connect to (sent as SNI).
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// The settings.
    pub client: Arc<ClientTls>,
    /// The SNI name, and the name verified when no `subjectAltNames` are given.
    pub server_name: ServerName<'static>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.client.spec == other.client.spec && self.server_name == other.server_name
    }
}

impl Eq for UpstreamTls {}

impl std::hash::Hash for UpstreamTls {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.client.spec.hash(state);
        self.server_name.hash(state);
    }
}

fn load(spec: &ClientSpec) -> Result<[Arc<ClientConfig>; 2], String> {
    let roots = match &spec.trust {
        Trust::Ca(ca) => Some((ca, roots(ca)?)),
        Trust::System(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certificates(ca)?);
            Some((ca, roots))
        }
        Trust::Any => None,
    };
    let webpki = match roots {
        Some((ca, roots)) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?,
        ),
        None => None,
    };
    let names = spec
        .subject_alt_names
        .iter()
        .map(|n| ServerName::try_from(n.clone()).map_err(|e| format!("{n}: {e}")))
        .collect::<Result<_, _>>()?;
    let verifier = Verifier {
        webpki,
        names,
        algorithms: provider().signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &spec.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| format!("{}: {e}", key.display()))?,
        None => builder.with_no_client_auth(),
    };
    let with_alpn = |alpn: &[u8]| {
        let mut c = config.clone();
        c.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(c)
    };
    Ok([with_alpn(b"http/1.1"), with_alpn(b"h2")])
}

/// Verifies the server's certificate against the CAs and a name: one of the configured
/// `subjectAltNames`, else the SNI name. Without a webpki verifier (`insecureSkipVerify`) any
/// certificate is accepted; handshake signatures are checked either way.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    names: Vec<ServerName<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        if self.names.is_empty() {
            return webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        }
        let mut last = None;
        for name in &self.names {
            match webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(rustls::Error::General("no subjectAltNames".into())))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
