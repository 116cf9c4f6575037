//! A Gateway listener's TLS. Each Gateway server with `tls` is a site: its hosts,
//! certificate and key, and for `MUTUAL` the CAs that client certificates must chain to. A
//! handshake reads the ClientHello first and answers with the site whose hosts match the SNI
//! name; ALPN offers `h2` and `http/1.1`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::files::{Watched, certificates, private_key, provider, roots};

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
struct Site {
    spec: SiteSpec,
    config: Watched<ServerConfig>,
}

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
            let files = [
                Some(&spec.certificate),
                Some(&spec.private_key),
                spec.client_ca.as_ref(),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
            let config = Watched::new(files, || load(&spec)).map_err(|e| (i, e))?;
            sites.push(Site { spec, config });
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
        let config = site.config.get(|| load(&site.spec));
        start.into_stream(config).await
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

fn versions(tls13_only: bool) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if tls13_only {
        &TLS13
    } else {
        rustls::ALL_VERSIONS
    }
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
