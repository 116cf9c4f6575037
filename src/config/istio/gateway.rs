//! `Gateway`: the servers (ports, hosts, TLS) weir listens on.

use crate::config::decode::Spanned;
use crate::decode_struct;
use std::collections::BTreeMap;

decode_struct! {
    /// `Gateway.spec`.
    pub struct Gateway ("Gateway spec") {
        /// Workload selector (no meaning here).
        selector: BTreeMap<String, String> = "selector",
        /// Servers: each a listener.
        servers: Vec<Server> = "servers",
    }
}

decode_struct! {
    /// `Server`: a port weir listens on for the gateway.
    pub struct Server ("Server") {
        /// Port.
        port: GatewayPort = "port",
        /// Address to bind (default 0.0.0.0).
        bind: Option<Spanned<String>> = "bind",
        /// Hosts served.
        hosts: Vec<String> = "hosts",
        /// TLS settings.
        tls: Option<ServerTlsSettings> = "tls",
        /// Name.
        name: Option<String> = "name",
        /// Default endpoint (parsed only).
        default_endpoint: Option<String> = "defaultEndpoint",
    }
}

decode_struct! {
    /// `Port` of a gateway server.
    pub struct GatewayPort ("Port") {
        /// Port number.
        number: Spanned<u32> = "number",
        /// Protocol: HTTP, HTTPS, HTTP2, ...
        protocol: Option<String> = "protocol",
        /// Name.
        name: Option<String> = "name",
        /// Target port (parsed only).
        target_port: Option<u32> = "targetPort",
    }
}

decode_struct! {
    /// `ServerTLSSettings`.
    pub struct ServerTlsSettings ("ServerTLSSettings") {
        /// Redirect plain HTTP to HTTPS.
        https_redirect: Option<bool> = "httpsRedirect",
        /// Mode: SIMPLE or MUTUAL (PASSTHROUGH and the Istio modes are refused).
        mode: Option<Spanned<String>> = "mode",
        /// Certificate file.
        server_certificate: Option<Spanned<String>> = "serverCertificate",
        /// Key file.
        private_key: Option<Spanned<String>> = "privateKey",
        /// CA bundle for client certificates.
        ca_certificates: Option<Spanned<String>> = "caCertificates",
        /// Kubernetes secret (not supported).
        credential_name: Option<String> = "credentialName",
        /// Kubernetes secrets (not supported).
        credential_names: Vec<String> = "credentialNames",
        /// Accepted client SANs.
        subject_alt_names: Vec<String> = "subjectAltNames",
        /// Pinned SPKI hashes.
        verify_certificate_spki: Vec<String> = "verifyCertificateSpki",
        /// Pinned certificate hashes.
        verify_certificate_hash: Vec<String> = "verifyCertificateHash",
        /// Lowest TLS version.
        min_protocol_version: Option<Spanned<String>> = "minProtocolVersion",
        /// Highest TLS version.
        max_protocol_version: Option<Spanned<String>> = "maxProtocolVersion",
        /// Cipher suites.
        cipher_suites: Vec<String> = "cipherSuites",
        /// CRL file.
        ca_crl: Option<String> = "caCrl",
    }
}
