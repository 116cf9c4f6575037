//! TLS settings: Gateway `servers[].tls` (grouped per listener address) and DestinationRule
//! `tls` for upstreams. Both are checked and their files loaded here, so that a bad file is an
//! error with its position, not a failed handshake later.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::decode::Spanned;
use crate::tls::upstream::system_bundle;
use crate::tls::{ClientSpec, ClientTls, ServerTls, SiteSpec, Trust, UpstreamTls};

/// What a Gateway server does with TLS.
#[derive(Debug)]
pub(super) enum ServerSide {
    /// Plain HTTP.
    Plain,
    /// Plain HTTP that redirects every request to HTTPS (`httpsRedirect`).
    Redirect,
    /// TLS terminated with these settings.
    Tls(SiteSpec, Pos),
}

/// A listener's TLS, once its servers are put together.
#[derive(Debug, Default)]
pub struct ListenerTls {
    /// TLS sites (none: plain).
    pub server: Option<Arc<ServerTls>>,
    /// Plain requests are redirected to HTTPS.
    pub https_redirect: bool,
}

impl Checker<'_> {
    /// A server's TLS settings; `None` after reporting errors.
    pub(super) fn server_side(
        &mut self,
        r: &Resource,
        s: &istio::Server,
        protocol: &str,
    ) -> Option<ServerSide> {
        let https = matches!(protocol, "HTTPS");
        let Some(tls) = &s.tls else {
            if https {
                self.err(r, s.port.pos, "an HTTPS server needs `tls`");
                return None;
            }
            return Some(ServerSide::Plain);
        };
        if !https {
            if tls.mode.is_some() || tls.server_certificate.is_some() {
                self.err(
                    r,
                    tls.pos,
                    format!("a {protocol} server takes only `tls.httpsRedirect`; terminate TLS with protocol HTTPS"),
                );
                return None;
            }
            return Some(if tls.https_redirect == Some(true) {
                ServerSide::Redirect
            } else {
                ServerSide::Plain
            });
        }
        let before = self.errors.len();
        let mutual = match tls.mode.as_ref().map(|m| m.value.as_str()) {
            None | Some("SIMPLE") => false,
            Some("MUTUAL") => true,
            Some(other) => {
                let at = tls.mode.as_ref().map_or(tls.pos, |m| m.pos);
                self.err(
                    r,
                    at,
                    format!(
                        "tls.mode {other} is not supported: weir terminates TLS (SIMPLE or MUTUAL)"
                    ),
                );
                return None;
            }
        };
        if tls.credential_name.is_some() || !tls.credential_names.is_empty() {
            self.err(
                r,
                tls.pos,
                "credentialName names a Kubernetes secret, which weir cannot read: give serverCertificate and privateKey files",
            );
        }
        for (set, field) in [
            (!tls.subject_alt_names.is_empty(), "subjectAltNames"),
            (
                !tls.verify_certificate_spki.is_empty(),
                "verifyCertificateSpki",
            ),
            (
                !tls.verify_certificate_hash.is_empty(),
                "verifyCertificateHash",
            ),
            (tls.ca_crl.is_some(), "caCrl"),
        ] {
            if set {
                self.err(r, tls.pos, format!("tls.{field} is not supported yet"));
            }
        }
        if !tls.cipher_suites.is_empty() {
            self.warn(
                r,
                tls.pos,
                "tls.cipherSuites is ignored: weir offers rustls' safe suites",
            );
        }
        let tls13_only = self.tls_versions(r, tls);
        let certificate = self.tls_file(r, tls.pos, &tls.server_certificate, "serverCertificate");
        let private_key = self.tls_file(r, tls.pos, &tls.private_key, "privateKey");
        let client_ca = match (&tls.ca_certificates, mutual) {
            (Some(ca), _) => Some(resolve(r, &ca.value)),
            (None, true) => {
                self.err(r, tls.pos, "MUTUAL needs caCertificates to verify clients");
                None
            }
            (None, false) => None,
        };
        if self.errors.len() > before {
            return None;
        }
        Some(ServerSide::Tls(
            SiteSpec {
                hosts: s.hosts.clone(),
                certificate: certificate?,
                private_key: private_key?,
                client_ca: client_ca.filter(|_| mutual),
                tls13_only,
            },
            tls.pos,
        ))
    }

    fn tls_file(
        &mut self,
        r: &Resource,
        at: Pos,
        field: &Option<Spanned<String>>,
        name: &str,
    ) -> Option<PathBuf> {
        match field {
            Some(f) => Some(resolve(r, &f.value)),
            None => {
                self.err(r, at, format!("an HTTPS server needs tls.{name}"));
                None
            }
        }
    }

    /// Whether only TLS 1.3 is allowed.
    fn tls_versions(&mut self, r: &Resource, tls: &istio::ServerTlsSettings) -> bool {
        let mut tls13_only = false;
        if let Some(min) = &tls.min_protocol_version {
            match min.value.as_str() {
                "TLS_AUTO" | "TLSV1_2" => {}
                "TLSV1_3" => tls13_only = true,
                other => self.err(
                    r,
                    min.pos,
                    format!("minProtocolVersion {other}: weir speaks TLS 1.2 and 1.3 only"),
                ),
            }
        }
        if let Some(max) = &tls.max_protocol_version
            && !matches!(max.value.as_str(), "TLS_AUTO" | "TLSV1_3")
        {
            self.err(
                r,
                max.pos,
                format!(
                    "maxProtocolVersion {}: weir always offers TLS 1.3",
                    max.value
                ),
            );
        }
        tls13_only
    }

    /// Puts a listener's servers together: all plain (perhaps redirecting) or all TLS, the
    /// certificates loaded.
    pub(super) fn listener_tls(
        &mut self,
        r: &Resource,
        addr: SocketAddr,
        sides: Vec<ServerSide>,
    ) -> ListenerTls {
        let mut sites = Vec::new();
        let mut positions = Vec::new();
        let mut plain = false;
        let mut https_redirect = false;
        for side in sides {
            match side {
                ServerSide::Plain => plain = true,
                ServerSide::Redirect => https_redirect = true,
                ServerSide::Tls(spec, pos) => {
                    sites.push(spec);
                    positions.push(pos);
                }
            }
        }
        if sites.is_empty() {
            return ListenerTls {
                server: None,
                https_redirect: https_redirect && !plain,
            };
        }
        if plain || https_redirect {
            self.err(
                r,
                positions[0],
                format!("{addr} has plain and TLS servers; give each its own port"),
            );
            return ListenerTls::default();
        }
        match ServerTls::new(sites) {
            Ok(server) => ListenerTls {
                server: Some(Arc::new(server)),
                https_redirect: false,
            },
            Err((i, e)) => {
                self.err(r, positions[i], format!("TLS: {e}"));
                ListenerTls::default()
            }
        }
    }
}

impl Checker<'_> {
    /// A DestinationRule's `tls` (at the rule, subset or port level): checked, and its files
    /// loaded once per distinct setting.
    pub(super) fn client_tls(&mut self, r: &Resource, tls: &istio::ClientTlsSettings) {
        match tls.mode.unwrap_or_default() {
            istio::ClientTlsMode::Disable => return,
            istio::ClientTlsMode::IstioMutual => {
                self.warn(
                    r,
                    tls.pos,
                    "ISTIO_MUTUAL needs mesh identities; weir sends plain text",
                );
                return;
            }
            istio::ClientTlsMode::Simple | istio::ClientTlsMode::Mutual => {}
        }
        let before = self.errors.len();
        if tls.credential_name.is_some() {
            self.err(
                r,
                tls.pos,
                "credentialName names a Kubernetes secret, which weir cannot read: give clientCertificate and privateKey files",
            );
        }
        if tls.ca_crl.is_some() {
            self.err(r, tls.pos, "tls.caCrl is not supported yet");
        }
        if tls.mode == Some(istio::ClientTlsMode::Mutual)
            && (tls.client_certificate.is_none() || tls.private_key.is_none())
        {
            self.err(r, tls.pos, "MUTUAL needs clientCertificate and privateKey");
        }
        for name in &tls.subject_alt_names {
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                self.err(
                    r,
                    tls.pos,
                    format!("subjectAltNames: {name:?} is not a DNS name or IP address (URI names are not supported)"),
                );
            }
        }
        if tls.ca_certificates.is_none()
            && tls.insecure_skip_verify != Some(true)
            && system_bundle().is_none()
        {
            self.err(
                r,
                tls.pos,
                "no caCertificates and no system CA bundle found (set SSL_CERT_FILE or caCertificates)",
            );
        }
        if self.errors.len() > before {
            return;
        }
        let Some(spec) = client_spec(r, tls) else {
            return;
        };
        if self.client_tls.contains_key(&spec) {
            return;
        }
        match ClientTls::new(spec.clone()) {
            Ok(client) => {
                self.client_tls.insert(spec, Arc::new(client));
            }
            Err(e) => self.err(r, tls.pos, format!("TLS: {e}")),
        }
    }

    /// A cluster's upstream TLS, from its merged `tls` setting; `host` is the SNI name when
    /// `sni` is not set. `None` for plain text (and after errors, reported here or by
    /// [`Checker::client_tls`]).
    pub(super) fn upstream_tls(
        &mut self,
        r: &Resource,
        tls: &istio::ClientTlsSettings,
        host: &str,
    ) -> Option<UpstreamTls> {
        let client = self.client_tls.get(&client_spec(r, tls)?)?.clone();
        let name = tls.sni.as_deref().unwrap_or(host);
        match rustls_pki_types::ServerName::try_from(name.to_owned()) {
            Ok(server_name) => Some(UpstreamTls {
                client,
                server_name,
            }),
            Err(_) => {
                self.err(
                    r,
                    tls.pos,
                    format!("{name:?} cannot be a TLS server name: set tls.sni"),
                );
                None
            }
        }
    }
}

/// What weir runs for a DestinationRule's `tls`; `None` for plain text.
fn client_spec(r: &Resource, tls: &istio::ClientTlsSettings) -> Option<ClientSpec> {
    let identity = match tls.mode.unwrap_or_default() {
        istio::ClientTlsMode::Simple => None,
        istio::ClientTlsMode::Mutual => Some((
            resolve(r, tls.client_certificate.as_ref()?),
            resolve(r, tls.private_key.as_ref()?),
        )),
        istio::ClientTlsMode::Disable | istio::ClientTlsMode::IstioMutual => return None,
    };
    let trust = match (&tls.ca_certificates, tls.insecure_skip_verify) {
        (_, Some(true)) => Trust::Any,
        (Some(ca), _) => Trust::Ca(resolve(r, ca)),
        (None, _) => Trust::System(system_bundle()?),
    };
    Some(ClientSpec {
        trust,
        identity,
        subject_alt_names: tls.subject_alt_names.clone(),
    })
}

/// A file path from a config file: relative ones are taken from the config file's directory.
fn resolve(r: &Resource, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_owned();
    }
    match Path::new(&*r.file).parent() {
        Some(dir) if Path::new(&*r.file).exists() => dir.join(p),
        _ => p.to_owned(),
    }
}
