//! weir's HTTP/1.1 server side on raw sockets: strict request framing (docs/reliability.md section 3,
//! cases 1-3, 5-8), limits, pipelining, HTTP/1.0, `Expect: 100-continue`.
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

async fn setup() -> (Backend, Weir) {
    let backend = Backend::start("v1").await;
    let weir = Weir::start(&service_entry("svc", &[("v1", &backend)])).await;
    (backend, weir)
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let (backend, weir) = setup().await;
    let cases = [
        "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3, 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: +3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: svc\r\nx-folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: svc\r\nhost: other\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: svc\r\nx-nul: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: svc\r\nx-cr: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: svc\r\nx bad: a\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: svc\r\nx(bad): a\r\n\r\n",
        "GET / HTTP/1.10\r\nhost: svc\r\n\r\n",
        "GET / HTTP/2.0\r\nhost: svc\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\nhost: svc\r\n\r\n",
        "GET /a\\b HTTP/1.1\r\nhost: svc\r\n\r\n",
        "GET /a/../../ok HTTP/1.1\r\nhost: svc\r\n\r\n",
        "GET /a%2Fb HTTP/1.1\r\nhost: svc\r\n\r\n",
        "GET /a HTTP/1.1\r\nhost: svc\r\nx_user: admin\r\n\r\n",
        // A TLS ClientHello on the plain port.
        "\x16\x03\x01\x00\x45\x01\x00\x00\x41\x03\x03",
        // Smuggled second request after a refused one: never processed.
        "GET / HTTP/1.1\r\nhost: svc\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: svc\r\n\r\n",
    ];
    for case in cases {
        let out = raw(weir.mesh(), case).await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{case:?} -> {out}");
        assert!(out.contains("connection: close"), "{out}");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "{case:?} -> {out}");
    }
    assert_eq!(backend.hits(), 0, "a refused request reached the backend");
    // Bad chunked bodies (case 4), found while the body is being forwarded: 400 and close,
    // never a success, and the backend never sees a whole request.
    let ext = "x".repeat(5000);
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n".to_owned(),
        "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n".to_owned(),
        "3\r\nabcXY0\r\n\r\n".to_owned(),
        format!("3;{ext}\r\nabc\r\n0\r\n\r\n"),
    ] {
        let out = raw(
            weir.mesh(),
            &format!("POST / HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n{body}"),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{body:?} -> {out}");
        assert!(out.contains("connection: close"), "{out}");
    }
}

#[tokio::test]
async fn limits_answer_431_and_414() {
    let (backend, weir) = setup().await;
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let out = raw(
        weir.mesh(),
        &format!("GET / HTTP/1.1\r\nhost: svc\r\n{many}\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    let big = "a".repeat(70 * 1024);
    let out = raw(
        weir.mesh(),
        &format!("GET / HTTP/1.1\r\nhost: svc\r\nx-big: {big}\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    let long = "a".repeat(20 * 1024);
    let out = raw(
        weir.mesh(),
        &format!("GET /{long} HTTP/1.1\r\nhost: svc\r\n\r\n"),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 414 "), "{out}");
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (backend, weir) = setup().await;
    let out = raw(
        weir.mesh(),
        "GET /one HTTP/1.1\r\nhost: svc\r\n\r\nPOST /two HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
    )
    .await;
    let one = out.find("\"uri\":\"/one\"").expect(&out);
    let two = out.find("\"uri\":\"/two\"").expect(&out);
    let three = out.find("\"uri\":\"/three\"").expect(&out);
    assert!(one < two && two < three, "{out}");
    assert_eq!(backend.hits(), 3);
}

#[tokio::test]
async fn http10_clients_get_close_unless_they_ask_for_keep_alive() {
    let (_backend, weir) = setup().await;
    let out = raw(weir.mesh(), "GET / HTTP/1.0\r\nhost: svc\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    // With keep-alive the connection stays open for a second request.
    let out = raw(
        weir.mesh(),
        "GET /a HTTP/1.0\r\nhost: svc\r\nconnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\nhost: svc\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200 ").count(), 2, "{out}");
    assert!(out.contains("connection: keep-alive"), "{out}");
}

#[tokio::test]
async fn expect_continue_is_answered_before_the_body() {
    let (_backend, weir) = setup().await;
    let mut s = TcpStream::connect(weir.mesh()).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue\r\n\r\n"));
    s.write_all(b"hello").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("HTTP/1.1 200 "), "{rest}");
    assert!(!rest.contains("\"expect\""), "Expect forwarded: {rest}");
}

#[tokio::test]
async fn responses_carry_date_and_exact_framing() {
    let (_backend, weir) = setup().await;
    let out = raw(
        weir.mesh(),
        "GET /nowhere HTTP/1.1\r\nhost: nobody\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
    assert!(out.contains("\r\ndate: "), "{out}");
    let body = out.split_once("\r\n\r\n").unwrap().1;
    assert!(
        out.contains(&format!("content-length: {}\r\n", body.len())),
        "{out}"
    );
    let out = raw(
        weir.mesh(),
        "HEAD / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(
        out.ends_with("\r\n\r\n"),
        "HEAD response with a body: {out}"
    );
}

#[tokio::test]
async fn an_unread_request_body_closes_the_connection_politely() {
    let (_backend, weir) = setup().await;
    // No route: weir answers without reading the body, so it cannot reuse the connection.
    let out = raw(
        weir.mesh(),
        "POST / HTTP/1.1\r\nhost: nobody\r\ncontent-length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nhost: svc\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
}
