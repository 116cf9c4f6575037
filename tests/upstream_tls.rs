//! DestinationRule `tls` for upstreams: SIMPLE and MUTUAL against real TLS backends, name
//! checks (SNI, `sni`, `subjectAltNames`), `insecureSkipVerify`, HTTP/2 by ALPN, connection
//! reuse, and verification failures answered with 503 and a log line.
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use support::pki::{Pki, server_config};
use support::*;

const HOST: &str = "web.internal";

/// weir routing `web.internal` to `backend`, whose port speaks `protocol`, with this
/// DestinationRule `tls` (a YAML flow mapping).
fn config(backend: &Backend, protocol: &str, tls: &str) -> String {
    format!(
        "{se}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: {HOST}
  trafficPolicy:
    tls: {tls}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [{HOST}]
  http:
  - route: [{{destination: {{host: {HOST}}}}}]
",
        se = loopback_service(HOST, protocol, &[backend.addr.port()])
    )
}

/// A CA for upstreams, a certificate for `web.internal` and one for another name, and a
/// second CA that signs weir's client certificate.
fn setup() -> (Pki, Pki) {
    let upstream = Pki::new();
    upstream.issue("web", &[HOST]);
    upstream.issue("other", &["other.example.com"]);
    let clients = Pki::new();
    clients.issue("weir", &["weir.example.com"]);
    (upstream, clients)
}

async fn get_status(weir: &Weir) -> (http::StatusCode, String) {
    let (status, _, body) = send(&client(), weir.mesh(), HOST, "/", &[]).await;
    (status, body)
}

/// Log lines written while it lives (on this thread: the tests run on one).
struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Logs {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        Logs {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn simple_tls_verifies_the_upstream_and_reuses_connections() {
    let (pki, _) = setup();
    let backend = Backend::start_tls("v1", server_config(&pki, "web", &[b"http/1.1"], None)).await;
    let tls = format!("{{mode: SIMPLE, caCertificates: {}}}", pki.path("ca.pem"));
    let weir = Weir::start(&config(&backend, "HTTP", &tls)).await;
    let c = client();
    for _ in 0..3 {
        let (status, _, body) = send(&c, weir.mesh(), HOST, "/", &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(backend.hits(), 3);
    let handshakes = backend.handshakes.lock().unwrap().clone();
    // One connection carried all three requests; SNI is the service host.
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    assert_eq!(handshakes[0].sni.as_deref(), Some(HOST));
    assert_eq!(handshakes[0].alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(!handshakes[0].client_certificate);
    // What /clusters says: the mode and the names, never key material.
    let clusters = raw(
        weir.admin(),
        "GET /clusters HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(clusters.contains("\"mode\": \"SIMPLE\""), "{clusters}");
    assert!(clusters.contains("\"sni\": \"web.internal\""), "{clusters}");
    assert!(!clusters.contains("PRIVATE KEY"), "{clusters}");
}

#[tokio::test]
async fn an_unverified_upstream_gets_503_and_a_log_line() {
    let logs = Logs::capture();
    let (pki, clients) = setup();
    let backend = Backend::start_tls("v1", server_config(&pki, "web", &[b"http/1.1"], None)).await;
    // Trusting another CA: the upstream's certificate does not chain to it.
    let tls = format!(
        "{{mode: SIMPLE, caCertificates: {}}}",
        clients.path("ca.pem")
    );
    let weir = Weir::start(&config(&backend, "HTTP", &tls)).await;
    let (status, body) = get_status(&weir).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("TLS handshake failed"), "{body}");
    assert!(body.contains("invalid peer certificate"), "{body}");
    assert_eq!(backend.hits(), 0);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("Upstream TLS handshake failed."))
        .unwrap_or_else(|| panic!("no log line in {text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&backend.addr.to_string()), "{line}");
    assert!(line.contains("invalid peer certificate"), "{line}");
}

#[tokio::test]
async fn the_certificate_must_carry_the_name() {
    let (pki, _) = setup();
    // The upstream presents a certificate for other.example.com.
    let backend =
        Backend::start_tls("v1", server_config(&pki, "other", &[b"http/1.1"], None)).await;
    let ca = pki.path("ca.pem");
    let weir = Weir::start(&config(
        &backend,
        "HTTP",
        &format!("{{mode: SIMPLE, caCertificates: {ca}}}"),
    ))
    .await;
    let (status, body) = get_status(&weir).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not valid for name"), "{body}");
    // `sni` sends (and checks) that name instead of the host.
    assert!(
        weir.rewrite(&config(
            &backend,
            "HTTP",
            &format!("{{mode: SIMPLE, caCertificates: {ca}, sni: other.example.com}}"),
        ))
        .await
    );
    let (status, body) = get_status(&weir).await;
    assert_eq!(status, 200, "{body}");
    let last = backend.handshakes.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.sni.as_deref(), Some("other.example.com"));
    // `subjectAltNames` checks those names, whatever the SNI.
    for (sans, ok) in [("[other.example.com]", true), ("[web.internal]", false)] {
        assert!(
            weir.rewrite(&config(
                &backend,
                "HTTP",
                &format!("{{mode: SIMPLE, caCertificates: {ca}, subjectAltNames: {sans}}}"),
            ))
            .await
        );
        let (status, body) = get_status(&weir).await;
        assert_eq!(status == 200, ok, "{sans}: {status} {body}");
    }
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    // A certificate from a CA weir was never told about.
    let (pki, _) = setup();
    let backend =
        Backend::start_tls("v1", server_config(&pki, "other", &[b"http/1.1"], None)).await;
    let weir = Weir::start(&config(
        &backend,
        "HTTP",
        "{mode: SIMPLE, insecureSkipVerify: true}",
    ))
    .await;
    let (status, body) = get_status(&weir).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let (pki, clients) = setup();
    // The upstream requires a client certificate signed by the clients' CA.
    let backend = Backend::start_tls(
        "v1",
        server_config(&pki, "web", &[b"http/1.1"], Some(&clients)),
    )
    .await;
    let ca = pki.path("ca.pem");
    let weir = Weir::start(&config(
        &backend,
        "HTTP",
        &format!("{{mode: SIMPLE, caCertificates: {ca}}}"),
    ))
    .await;
    // Without one, the upstream refuses the handshake (with TLS 1.3 the refusal may come
    // after weir has sent the request: 502 or 503, never a response).
    let (status, body) = get_status(&weir).await;
    assert!(matches!(status.as_u16(), 502 | 503), "{status} {body}");
    assert_eq!(backend.hits(), 0);
    assert!(
        weir.rewrite(&config(
            &backend,
            "HTTP",
            &format!(
                "{{mode: MUTUAL, caCertificates: {ca}, clientCertificate: {}, privateKey: {}}}",
                clients.path("weir.pem"),
                clients.path("weir-key.pem")
            ),
        ))
        .await
    );
    let (status, body) = get_status(&weir).await;
    assert_eq!(status, 200, "{body}");
    let last = backend.handshakes.lock().unwrap().last().cloned().unwrap();
    assert!(last.client_certificate);
}

#[tokio::test]
async fn http2_upstreams_are_reached_over_tls_by_alpn() {
    let (pki, _) = setup();
    let backend = Backend::start_tls(
        "v1",
        server_config(&pki, "web", &[b"h2", b"http/1.1"], None),
    )
    .await;
    let tls = format!("{{mode: SIMPLE, caCertificates: {}}}", pki.path("ca.pem"));
    let weir = Weir::start(&config(&backend, "HTTP2", &tls)).await;
    let c = client();
    for _ in 0..2 {
        let (status, _, body) = send(&c, weir.mesh(), HOST, "/", &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(version_of(&body), http::Version::HTTP_2, "{body}");
    }
    let handshakes = backend.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    assert_eq!(handshakes[0].alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn large_bodies_cross_tls_both_ways() {
    let (pki, _) = setup();
    let backend = Backend::start_tls("v1", server_config(&pki, "web", &[b"http/1.1"], None)).await;
    let tls = format!("{{mode: SIMPLE, caCertificates: {}}}", pki.path("ca.pem"));
    let weir = Weir::start(&config(&backend, "HTTP", &tls)).await;
    let body = Bytes::from(vec![b'x'; 3 << 20]);
    let (status, _, echoed) =
        request(&client(), weir.mesh(), "POST", HOST, "/", &[], body.clone()).await;
    assert_eq!(status, 200);
    assert!(echoed.len() > body.len(), "{}", echoed.len());
    let (status, _, big) = send(&client(), weir.mesh(), HOST, "/bytes/4194304", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(big.len(), 4 << 20);
}
