//! TLS with rustls: a Gateway listener's certificates, picked by SNI and reloaded when their
//! files change.
//!
//! Each Gateway server with `tls` is a [`Site`]: its hosts, certificate and key, and for
//! `MUTUAL` the CAs that client certificates must chain to. A handshake reads the ClientHello
//! first and answers with the site whose hosts match the SNI name; ALPN offers `h2` and
//! `http/1.1`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// How often a site's files are looked at for changes (at most, on handshakes).
const RECHECK: Duration = Duration::from_secs(1);

/// A Gateway server's TLS settings, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// Hosts (SNI names; `*.example.com` and `*` as wildcards).
    pub hosts: Vec<String>,
    /// The certificate chain file (PEM).
    pub certificate: PathBuf,
    /// The private key file (PEM).
    pub private_key: PathBuf,
    /// For mutual TLS: the CA bundle client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// The lowest TLS version allowed: 1.2 (default) or 1.3.
    pub tls13_only: bool,
}

/// One Gateway server's TLS: its settings and the loaded configuration.
#[derive(Debug)]
pub struct Site {
    spec: SiteSpec,
    config: ArcSwap<ServerConfig>,
    /// When the files were last looked at, and what they were then.
    seen: Mutex<(Instant, Stamp)>,
}

/// What a site's files looked like (modification time and length of each).
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The TLS side of a Gateway listener: its sites.
#[derive(Debug)]
pub struct ServerTls {
    sites: Vec<Site>,
}

impl ServerTls {
    /// Loads every site; `Err` names the first one that fails (its index) and why.
    pub fn new(specs: Vec<SiteSpec>) -> Result<ServerTls, (usize, String)> {
        let mut sites = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let config = load(&spec).map_err(|e| (i, e))?;
            sites.push(Site {
                seen: Mutex::new((Instant::now(), stamp(&spec))),
                config: ArcSwap::from_pointee(config),
                spec,
            });
        }
        Ok(ServerTls { sites })
    }

    /// The sites' settings, in order.
    pub fn specs(&self) -> impl Iterator<Item = &SiteSpec> {
        self.sites.iter().map(|s| &s.spec)
    }

    /// Completes a TLS handshake on an accepted connection.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let acceptor = rustls::server::Acceptor::default();
        let start = LazyConfigAcceptor::new(acceptor, stream).await?;
        let site = self
            .pick(start.client_hello().server_name())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "no certificate for that name")
            })?;
        site.refresh();
        start.into_stream(site.config.load_full()).await
    }

    /// The site for an SNI name: an exact host, then the longest wildcard, then `*`; without
    /// a name, the first site.
    fn pick(&self, name: Option<&str>) -> Option<&Site> {
        let Some(name) = name else {
            return self.sites.first();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<(usize, &Site)> = None;
        for site in &self.sites {
            for host in &site.spec.hosts {
                let host = host.rsplit_once('/').map_or(host.as_str(), |(_, h)| h);
                let score = if host.eq_ignore_ascii_case(&name) {
                    usize::MAX
                } else if let Some(suffix) = host.strip_prefix('*') {
                    if suffix.is_empty() || name.ends_with(&suffix.to_ascii_lowercase()) {
                        suffix.len() + 1
                    } else {
                        continue;
                    }
                } else {
                    continue;
                };
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, site));
                }
            }
        }
        best.map(|(_, s)| s)
    }
}

impl Site {
    /// Reloads the certificate and key if their files changed (looked at once a second at
    /// most). A reload that fails keeps the old ones, and says so in the log.
    fn refresh(&self) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.0.elapsed() < RECHECK {
            return;
        }
        seen.0 = Instant::now();
        let now = stamp(&self.spec);
        if now == seen.1 {
            return;
        }
        seen.1 = now;
        match load(&self.spec) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                tracing::info!(certificate = %self.spec.certificate.display(), "Certificate reloaded.");
            }
            Err(e) => tracing::error!(
                certificate = %self.spec.certificate.display(),
                error = %e,
                "Certificate reload failed; keeping the previous one."
            ),
        }
    }
}

fn stamp(spec: &SiteSpec) -> Stamp {
    [
        Some(&spec.certificate),
        Some(&spec.private_key),
        spec.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
    .collect()
}

/// Reads a PEM certificate chain.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a PEM CA bundle into a root store.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn versions(tls13_only: bool) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if tls13_only {
        &TLS13
    } else {
        rustls::ALL_VERSIONS
    }
}

/// The crypto provider (ring), named so that nothing depends on a process-wide default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(spec: &SiteSpec) -> Result<ServerConfig, String> {
    let certs = certificates(&spec.certificate)?;
    let key = private_key(&spec.private_key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(spec.tls13_only))
        .map_err(|e| e.to_string())?;
    let builder = match &spec.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", spec.private_key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
