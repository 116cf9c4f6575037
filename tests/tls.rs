//! Gateway TLS: SIMPLE and MUTUAL servers on one port picked by SNI, ALPN h2 and http/1.1,
//! httpsRedirect, and certificates reloaded from their files without dropping connections.
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use support::pki::Pki;
use support::*;

fn config(pki: &Pki, backend: &Backend, https: u16, http: u16) -> String {
    let mut yaml = service_entry("web", &[("v1", backend)]);
    yaml.push_str(&format!(
        "---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  servers:
  - port: {{number: {https}, name: https-a, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [a.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {a}, privateKey: {a_key}}}
  - port: {{number: {https}, name: https-b, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [\"*.internal.example.com\"]
    tls: {{mode: MUTUAL, serverCertificate: {b}, privateKey: {b_key}, caCertificates: {ca}}}
  - port: {{number: {http}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [\"*\"]
    tls: {{httpsRedirect: true}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [a.example.com, b.internal.example.com]
  gateways: [edge]
  http:
  - route: [{{destination: {{host: web}}}}]
",
        a = pki.path("a.pem"),
        a_key = pki.path("a-key.pem"),
        b = pki.path("b.pem"),
        b_key = pki.path("b-key.pem"),
        ca = pki.path("ca.pem"),
    ));
    yaml
}

/// A TLS connection to `addr` for `name`, trusting the test CA, offering `alpn`, presenting
/// the client certificate `client` if given.
async fn connect(
    pki: &Pki,
    addr: SocketAddr,
    name: &str,
    alpn: &[&[u8]],
    client: Option<&str>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(file) => {
            let cert = CertificateDer::from_pem_file(pki.dir.join(format!("{file}.pem"))).unwrap();
            let key =
                PrivateKeyDer::from_pem_file(pki.dir.join(format!("{file}-key.pem"))).unwrap();
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One HTTP/1.1 request on an open TLS connection; the raw response head and body.
async fn exchange(tls: &mut TlsStream<TcpStream>, host: &str, close: bool) -> String {
    exchange_path(tls, host, "/", close).await
}

async fn exchange_path(
    tls: &mut TlsStream<TcpStream>,
    host: &str,
    path: &str,
    close: bool,
) -> String {
    let conn = if close { "close" } else { "keep-alive" };
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: {conn}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await
        else {
            break;
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && let Some(len) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
            && body.len() >= len.trim().parse::<usize>().unwrap_or(0)
        {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn peer_certificate(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

async fn start(pki: &Pki, backend: &Backend) -> (Weir, SocketAddr, SocketAddr) {
    let (https, http) = (free_port(), free_port());
    let weir = Weir::start(&config(pki, backend, https, http)).await;
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    (weir, addr(https), addr(http))
}

fn setup() -> (Pki, CertificateDer<'static>, CertificateDer<'static>) {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.example.com"]);
    let b = pki.issue("b", &["*.internal.example.com"]);
    pki.issue("client", &["client.example.com"]);
    (pki, a, b)
}

#[tokio::test]
async fn sni_picks_the_certificate_and_requests_arrive_as_https() {
    let (pki, a, b) = setup();
    let backend = Backend::start("v1").await;
    let (_weir, https, _) = start(&pki, &backend).await;
    let mut tls = connect(&pki, https, "a.example.com", &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(peer_certificate(&tls), a);
    let out = exchange(&mut tls, "a.example.com", true).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("\"x-forwarded-proto\":\"https\""), "{out}");
    // The wildcard site, with a client certificate.
    let mut tls = connect(
        &pki,
        https,
        "b.internal.example.com",
        &[b"http/1.1"],
        Some("client"),
    )
    .await
    .unwrap();
    assert_eq!(peer_certificate(&tls), b);
    let out = exchange(&mut tls, "b.internal.example.com", true).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    // A name no server has: no handshake.
    assert!(
        connect(&pki, https, "other.example.org", &[], None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn large_responses_are_written_whole_over_tls() {
    let (pki, _, _) = setup();
    let backend = Backend::start("v1").await;
    let (_weir, https, _) = start(&pki, &backend).await;
    let mut tls = connect(&pki, https, "a.example.com", &[b"http/1.1"], None)
        .await
        .unwrap();
    // Twice on one connection: the first body must end where its length says.
    for _ in 0..2 {
        let out = exchange_path(&mut tls, "a.example.com", "/bytes/5000000", false).await;
        assert!(
            out.starts_with("HTTP/1.1 200 "),
            "{}",
            &out[..out.len().min(200)]
        );
        let body = out.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body.len(), 5_000_000);
    }
}

#[tokio::test]
async fn a_mutual_gateway_knows_its_clients_by_their_spiffe_identity() {
    let (pki, _, _) = setup();
    pki.issue_with(
        "productpage",
        &["productpage.example.com"],
        Some("spiffe://cluster.local/ns/default/sa/bookinfo-productpage"),
    );
    pki.issue_with(
        "stranger",
        &["stranger.example.com"],
        Some("spiffe://cluster.local/ns/other/sa/stranger"),
    );
    let backend = Backend::start("v1").await;
    let (https, http) = (free_port(), free_port());
    // Istio's details-viewer, at the gateway: only the productpage workload may GET.
    let policy = "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: details-viewer, namespace: default}
spec:
  targetRef: {kind: Gateway, group: networking.istio.io, name: edge}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/bookinfo-productpage]
    to:
    - operation:
        methods: [GET]
";
    let _weir = Weir::start(&(config(&pki, &backend, https, http) + policy)).await;
    let https = SocketAddr::from(([127, 0, 0, 1], https));
    let host = "b.internal.example.com";
    for (client, want) in [
        ("productpage", "HTTP/1.1 200 "),
        ("stranger", "HTTP/1.1 403 "),
        ("client", "HTTP/1.1 403 "),
    ] {
        let mut tls = connect(&pki, https, host, &[b"http/1.1"], Some(client))
            .await
            .unwrap();
        let out = exchange(&mut tls, host, true).await;
        assert!(out.starts_with(want), "{client}: {out}");
    }
    // The SIMPLE site on the same port has no client identity.
    let mut tls = connect(&pki, https, "a.example.com", &[b"http/1.1"], None)
        .await
        .unwrap();
    let out = exchange(&mut tls, "a.example.com", true).await;
    assert!(out.starts_with("HTTP/1.1 403 "), "{out}");
    assert!(out.ends_with("RBAC: access denied"), "{out}");
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let (pki, _, _) = setup();
    let backend = Backend::start("v1").await;
    let (_weir, https, _) = start(&pki, &backend).await;
    // With TLS 1.3 the client may finish its side first; the refusal comes on the first read.
    let refused = match connect(&pki, https, "b.internal.example.com", &[], None).await {
        Err(_) => true,
        Ok(mut tls) => !exchange(&mut tls, "b.internal.example.com", true)
            .await
            .starts_with("HTTP/1.1 200"),
    };
    assert!(refused);
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn alpn_h2_is_served_over_tls() {
    let (pki, _, _) = setup();
    let backend = Backend::start("v1").await;
    let (_weir, https, _) = start(&pki, &backend).await;
    let tls = connect(&pki, https, "a.example.com", &[b"h2", b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.example.com/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("\"x-forwarded-proto\":\"https\""), "{body}");
}

#[tokio::test]
async fn plain_http_is_redirected_to_https() {
    let (pki, _, _) = setup();
    let backend = Backend::start("v1").await;
    let (_weir, _, http) = start(&pki, &backend).await;
    let out = raw(
        http,
        "GET /path?q=1 HTTP/1.1\r\nhost: a.example.com:8080\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 301 "), "{out}");
    assert!(
        out.contains("location: https://a.example.com/path?q=1\r\n"),
        "{out}"
    );
    assert_eq!(backend.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn certificates_are_reloaded_when_their_files_change() {
    let (pki, old, _) = setup();
    let backend = Backend::start("v1").await;
    let (_weir, https, _) = start(&pki, &backend).await;
    let mut before = connect(&pki, https, "a.example.com", &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(peer_certificate(&before), old);
    assert!(
        exchange(&mut before, "a.example.com", false)
            .await
            .starts_with("HTTP/1.1 200 ")
    );
    let new = pki.issue("a", &["a.example.com"]);
    assert_ne!(new, old);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = connect(&pki, https, "a.example.com", &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(peer_certificate(&after), new);
    // The connection made before the reload carries on.
    assert!(
        exchange(&mut before, "a.example.com", true)
            .await
            .starts_with("HTTP/1.1 200 ")
    );
    // A broken file is not taken: the last good certificate stays.
    std::fs::write(pki.dir.join("a.pem"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = connect(&pki, https, "a.example.com", &[b"http/1.1"], None)
        .await
        .unwrap();
    assert_eq!(peer_certificate(&still), new);
}
