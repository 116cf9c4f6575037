//! weir at the edge (docs/reliability.md section 3): paths normalised before routing (case 11),
//! header-name aliasing (12), hop-by-hop and forwarding headers (13), slow clients (14, 15),
//! the connection limit and the memory overload rule (16). Timing is on tokio's paused clock.
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use weir::edge::{ServerPolicy, Underscores};

use support::*;

/// `/ok` goes to v1, anything else to v2.
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
  - match: [{uri: {exact: /ok}}]
    route: [{destination: {host: svc, subset: v1}}]
  - route: [{destination: {host: svc, subset: v2}}]
",
    );
    yaml
}

/// The status line and the backend's JSON (`uri`, `headers`), from a whole raw exchange.
fn answer(out: &str) -> (&str, serde_json::Value) {
    let status = out.lines().next().unwrap_or("");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn paths_are_normalised_before_routing_and_forwarded_as_routed() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = Weir::start(&routes(&v1, &v2)).await;
    for (target, forwarded) in [
        ("/ok", "/ok"),
        ("/x/%2e%2e/ok", "/ok"),
        ("/x/%2E%2E/ok", "/ok"),
        ("//ok", "/ok"),
        ("/a/./b/../../ok", "/ok"),
        ("/%6Fk", "/ok"),
        ("/ok?next=%2F..%2F", "/ok?next=%2F..%2F"),
    ] {
        let out = raw(
            weir.mesh(),
            &format!("GET {target} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"),
        )
        .await;
        let (status, body) = answer(&out);
        assert!(status.ends_with("200 OK"), "{target}: {out}");
        assert_eq!(body["backend"], "v1", "{target} routed elsewhere: {out}");
        assert_eq!(body["uri"], forwarded, "{target}");
    }
    // The same over HTTP/2 (the stream is refused, the connection lives on).
    let (status, body) = h2_get(weir.mesh(), "svc", "/x/%2e%2e/ok").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"uri\":\"/ok\"") && body.contains("\"v1\""),
        "{body}"
    );
    let (status, _) = h2_get(weir.mesh(), "svc", "/a/../../ok").await;
    assert_eq!(status, 400);
    let (status, _) = h2_get(weir.mesh(), "svc", "/a%2Fok").await;
    assert_eq!(status, 400);
    assert_eq!(v2.hits(), 0, "a path was routed on its unnormalised form");
}

#[tokio::test]
async fn encoded_slashes_and_underscores_follow_the_policy() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let policy = ServerPolicy {
        underscores: Underscores::Drop,
        escaped_slashes: weir::edge::EscapedSlashes::Keep,
        ..ServerPolicy::default()
    };
    let weir = Weir::start_with_policy(&routes(&v1, &v2), policy).await;
    let out = raw(
        weir.mesh(),
        "GET /a%2fb HTTP/1.1\r\nhost: svc\r\nx_user: admin\r\nx-user: me\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (status, body) = answer(&out);
    assert!(status.ends_with("200 OK"), "{out}");
    assert_eq!(body["uri"], "/a%2Fb");
    assert_eq!(body["headers"]["x-user"], "me");
    assert!(body["headers"].get("x_user").is_none(), "{out}");
}

#[tokio::test]
async fn hop_by_hop_and_forwarding_headers_are_not_trusted() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = Weir::start(&routes(&v1, &v2)).await;
    let out = raw(
        weir.mesh(),
        "GET http://svc/ok HTTP/1.1\r\nhost: elsewhere\r\nconnection: close, x-secret\r\nx-secret: 1\r\n\
         keep-alive: 5\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\nte: gzip\r\nupgrade: websocket\r\n\
         x-forwarded-for: 6.6.6.6\r\n\r\n",
    )
    .await;
    let (status, body) = answer(&out);
    assert!(status.ends_with("200 OK"), "{out}");
    let headers = &body["headers"];
    // The absolute URI's authority wins over Host, for routing and for the upstream alike.
    assert_eq!(headers["host"], "svc");
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(headers.get(gone).is_none(), "{gone} forwarded: {out}");
    }
    assert_eq!(headers["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
}

/// Sends `start`, then one byte a second until weir answers and closes; the answer and how
/// long it took. With `normal`, a normal request is sent there every second too, and must be
/// served at once.
async fn trickle(
    addr: std::net::SocketAddr,
    start: &[u8],
    normal: Option<std::net::SocketAddr>,
) -> (String, Duration) {
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let began = Instant::now();
    slow.write_all(start).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            n = slow.read(&mut buf) => {
                let n = n.unwrap_or(0);
                if n == 0 { break; }
                out.extend_from_slice(&buf[..n]);
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if slow.write_all(b"x").await.is_err() { break; }
                if let Some(normal) = normal {
                    let out = raw(normal, "GET /ok HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n").await;
                    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
                }
            }
        }
        assert!(began.elapsed() < Duration::from_secs(30), "never cut off");
    }
    (String::from_utf8_lossy(&out).into_owned(), began.elapsed())
}

#[tokio::test(start_paused = true)]
async fn slowloris_gets_408_at_the_head_deadline_and_others_are_served() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = Weir::start(&routes(&v1, &v2)).await;
    let (out, took) = trickle(
        weir.mesh(),
        b"GET /ok HTTP/1.1\r\nhost: svc\r\n",
        Some(weir.mesh()),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
    assert!(
        v1.hits() >= 9,
        "normal clients were not served: {}",
        v1.hits()
    );
}

#[tokio::test(start_paused = true)]
async fn slow_bodies_get_408_at_the_request_deadline() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let policy = ServerPolicy {
        request_timeout: Duration::from_secs(5),
        ..ServerPolicy::default()
    };
    let weir = Weir::start_with_policy(&routes(&v1, &v2), policy).await;
    let (out, took) = trickle(
        weir.mesh(),
        b"POST /ok HTTP/1.1\r\nhost: svc\r\ncontent-length: 100\r\n\r\n",
        None,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_connections_and_stalled_readers_are_closed() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let policy = ServerPolicy {
        idle_timeout: Duration::from_secs(3),
        ..ServerPolicy::default()
    };
    let weir = Weir::start_with_policy(&routes(&v1, &v2), policy).await;
    // Silent from the start, and silent after a request: closed without a word.
    let mut silent = TcpStream::connect(weir.mesh()).await.unwrap();
    let began = Instant::now();
    let mut buf = Vec::new();
    assert_eq!(silent.read_to_end(&mut buf).await.unwrap_or(0), 0);
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let mut kept = TcpStream::connect(weir.mesh()).await.unwrap();
    kept.write_all(b"GET /ok HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .unwrap();
    let began = Instant::now();
    let mut out = Vec::new();
    let _ = kept.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 "));
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    // A client that asks for 64 MiB and never reads: the write stalls, the connection closes.
    let mut stalled = TcpStream::connect(weir.mesh()).await.unwrap();
    let size = 64 << 20;
    stalled
        .write_all(format!("GET /bytes/{size} HTTP/1.1\r\nhost: svc\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = stalled.read(&mut buf).await {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got > 0 && got < size, "read {got} bytes");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_the_rest_keep_going() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let policy = ServerPolicy {
        max_connections: 4,
        ..ServerPolicy::default()
    };
    let weir = Weir::start_with_policy(&routes(&v1, &v2), policy).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(weir.mesh()).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nhost: svc\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        open.push(s);
    }
    let out = raw(weir.mesh(), "GET /ok HTTP/1.1\r\nhost: svc\r\n\r\n").await;
    assert_eq!(out, "", "a fifth connection was served");
    // The open ones are unaffected.
    for s in &mut open {
        s.write_all(b"GET /ok HTTP/1.1\r\nhost: svc\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    }
    // One leaves: a new one is served again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = raw(
            weir.mesh(),
            "GET /ok HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
        )
        .await;
        if out.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a connection left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn over_the_memory_limit_new_requests_get_503_until_it_falls() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let resident = weir::edge::overload::resident_bytes().unwrap();
    let policy = ServerPolicy {
        memory_limit: Some(resident + (256 << 20)),
        ..ServerPolicy::default()
    };
    let weir = Weir::start_with_policy(&routes(&v1, &v2), policy).await;
    let get = || {
        raw(
            weir.mesh(),
            "GET /ok HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
        )
    };
    assert!(get().await.starts_with("HTTP/1.1 200 "));
    // 512 MiB, touched, held by this process (weir's).
    let ballast = vec![1u8; 512 << 20];
    let until = |want: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = get().await;
            if out.starts_with(want) {
                return out;
            }
            assert!(Instant::now() < deadline, "still {out}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let out = until("HTTP/1.1 503 ").await;
    assert!(out.contains("x-weir-overloaded: true"), "{out}");
    let hits = v1.hits();
    assert_eq!(std::hint::black_box(&ballast)[12345], 1);
    drop(ballast);
    until("HTTP/1.1 200 ").await;
    assert_eq!(
        v1.hits(),
        hits + 1,
        "a request was forwarded while overloaded"
    );
}
