//! Request body limits (docs/reliability.md section 3, case 10): a route's `maxRequestBytes` and the
//! `--max-request-body` default; `Expect: 100-continue` is answered only when the body is read,
//! so a body over the limit is refused without being sent.
mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::edge::ServerPolicy;

use support::*;

/// `/small` takes bodies up to 1,000 bytes (to v1); anything else goes to v2 unlimited (or the
/// listener's default).
fn routes(v1: &Backend, v2: &Backend) -> String {
    let mut yaml = service_entry("svc", &[("v1", v1), ("v2", v2)]);
    yaml.push_str(&destination_rule("svc", &["v1", "v2"]));
    yaml.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
  - match: [{uri: {exact: /small}}]
    maxRequestBytes: 1000
    route: [{destination: {host: svc, subset: v1}}]
  - route: [{destination: {host: svc, subset: v2}}]
",
    );
    yaml
}

/// Reads until `done` says the bytes so far are enough, the peer closes, or 5 s pass.
async fn read_until(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&out)) {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: svc\r\n{extra}\r\n")
}

#[tokio::test]
async fn expect_continue_over_the_limit_gets_413_and_no_100() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = Weir::start(&routes(&v1, &v2)).await;
    let mut s = TcpStream::connect(weir.mesh()).await.unwrap();
    s.write_all(post("/small", "content-length: 5000\r\nexpect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    // The body is never sent: weir must answer without it, and close.
    let out = read_until(&mut s, |_| false).await;
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert_eq!(v1.hits() + v2.hits(), 0);
}

#[tokio::test]
async fn expect_continue_within_the_limit_gets_100_when_the_body_is_wanted() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = Weir::start(&routes(&v1, &v2)).await;
    let mut s = TcpStream::connect(weir.mesh()).await.unwrap();
    s.write_all(post("/small", "content-length: 10\r\nexpect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let interim = read_until(&mut s, |t| t.ends_with("\r\n\r\n")).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"0123456789").await.unwrap();
    let out = read_until(&mut s, |t| t.contains("\"0123456789\"")).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    // The upstream never sees the expectation: weir answered it.
    assert!(!out.contains("100-continue"), "{out}");
    // A request refused before its body is read (no route) gets no 100 either.
    let mut s = TcpStream::connect(weir.mesh()).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nhost: nowhere\r\ncontent-length: 10\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let out = read_until(&mut s, |_| false).await;
    assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = Weir::start(&routes(&v1, &v2)).await;
    // A declared length over the limit: refused, the body unread, the connection closed.
    let mut req = post("/small", "content-length: 5000\r\n");
    req.push_str(&"x".repeat(5000));
    let out = raw(weir.mesh(), &req).await;
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert!(out.contains("request body too large"), "{out}");
    assert_eq!(v1.hits(), 0);
    // Chunked: refused when it crosses the limit.
    let chunk = format!("320\r\n{}\r\n", "y".repeat(800));
    let out = raw(
        weir.mesh(),
        &format!(
            "{}{chunk}{chunk}0\r\n\r\n",
            post("/small", "transfer-encoding: chunked\r\n")
        ),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    // Within the limit, and on the unlimited route: forwarded.
    let out = raw(
        weir.mesh(),
        &format!(
            "{}{chunk}0\r\n\r\n",
            post(
                "/small",
                "transfer-encoding: chunked\r\nconnection: close\r\n"
            )
        ),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let (status, _, _) = request(
        &client(),
        weir.mesh(),
        "POST",
        "svc",
        "/big",
        &[],
        Bytes::from(vec![b'z'; 1 << 20]),
    )
    .await;
    assert_eq!(status, 200);
    // HTTP/2: the declared length is refused as well.
    let before = v1.hits();
    let io = TokioIo::new(TcpStream::connect(weir.mesh()).await.unwrap());
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("http://svc/small")
        .body(Full::new(Bytes::from(vec![b'z'; 5000])))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(v1.hits(), before);
}

#[tokio::test]
async fn the_listener_default_applies_where_a_route_sets_none() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let policy = ServerPolicy {
        max_request_body: Some(100),
        ..ServerPolicy::default()
    };
    let weir = Weir::start_with_policy(&routes(&v1, &v2), policy).await;
    let send = |path: &'static str, n: usize| {
        let c = client();
        let mesh = weir.mesh();
        async move {
            let body = Bytes::from(vec![b'z'; n]);
            request(&c, mesh, "POST", "svc", path, &[], body).await.0
        }
    };
    assert_eq!(send("/any", 100).await, 200);
    assert_eq!(send("/any", 101).await, 413);
    // The route's own limit wins over the default.
    assert_eq!(send("/small", 900).await, 200);
}
