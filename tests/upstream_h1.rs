//! weir's HTTP/1.1 upstream connections against an upstream that answers with scripted raw
//! bytes: response framings, broken responses, request body framing, connection reuse.
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::*;

/// An upstream that reads each request and answers with the raw bytes scripted for its path.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<Mutex<usize>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const BIG: usize = 1 << 20;

/// What the upstream sends for a path, and whether it closes the connection afterwards.
fn script(path: &str) -> (&'static str, bool) {
    match path {
        "/chunked" => (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        "/eof" => ("HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
        "/clte" => (
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        "/conflict" => (
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
            false,
        ),
        "/badstatus" => ("HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n", false),
        "/badchunk" => (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        "/truncated" => ("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", true),
        "/continue" => (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        "/close" => (
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            true,
        ),
        "/head" => ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
        "/silent" => ("", true),
        _ => ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    }
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (accepted.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    continue;
                };
                *a.lock().unwrap() += 1;
                tokio::spawn(serve(stream, r.clone()));
            }
        });
        RawUpstream {
            addr,
            accepted,
            requests,
            task,
        }
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }

    fn last_request(&self) -> String {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve(mut stream: TcpStream, requests: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
        requests.lock().unwrap().push(request);
        if path == "/big" {
            let body = "x".repeat(BIG);
            let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n{body}");
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let (mut reply, close) = script(&path);
        if path == "/head" && !requests.lock().unwrap().last().unwrap().starts_with("HEAD") {
            reply = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        }
        if stream.write_all(reply.as_bytes()).await.is_err() || close {
            return;
        }
        if path == "/idle-close" {
            // Keep-alive promised, then the idle connection is closed, as upstreams do on their
            // idle timeout.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
    }
}

/// Reads one request (head and body, by Content-Length or chunked) as text.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let mut end = head_end;
    if let Some(cl) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        end += cl.trim().parse::<usize>().unwrap();
        while buf.len() < end {
            fill(stream, buf).await?;
        }
    } else if head.contains("transfer-encoding: chunked") {
        end = loop {
            if let Some(i) = buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                break head_end + i + 5;
            }
            fill(stream, buf).await?;
        };
    }
    let request = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(request)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn config(up: &RawUpstream) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: raw}}
spec:
  hosts: [raw]
  resolution: STATIC
  ports: [{{number: 80, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        up.addr.port()
    )
}

#[tokio::test]
async fn chunked_and_close_delimited_responses_stream_through() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&config(&up)).await;
    let c = client();
    let (s, _, body) = send(&c, weir.mesh(), "raw", "/chunked", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "hello world"));
    let (s, _, body) = send(&c, weir.mesh(), "raw", "/chunked", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "hello world"));
    assert_eq!(
        up.accepted(),
        1,
        "the connection is reused after a chunked body"
    );

    let (s, _, body) = send(&c, weir.mesh(), "raw", "/eof", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "until the end"));
    let (s, _, body) = send(&c, weir.mesh(), "raw", "/continue", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "ok"), "1xx is skipped");
    assert_eq!(
        up.accepted(),
        2,
        "a close-delimited body ends its connection"
    );

    let (s, h, body) = send(&c, weir.mesh(), "raw", "/close", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "ok"));
    assert!(h.get("connection").is_none(), "hop-by-hop header forwarded");
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(up.accepted(), 3, "`connection: close` is honoured");
}

#[tokio::test]
async fn broken_responses_become_502_and_their_connections_are_dropped() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&config(&up)).await;
    let c = client();
    for path in ["/clte", "/conflict", "/badstatus"] {
        let (s, _, body) = send(&c, weir.mesh(), "raw", path, &[]).await;
        assert_eq!(s, 502, "{path}: {body}");
        let before = up.accepted();
        let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
        assert_eq!(s, 200);
        assert_eq!(
            up.accepted(),
            before + 1,
            "{path}: broken connection reused"
        );
    }
    // The upstream closes without replying: 502, never a hang.
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/silent", &[]).await;
    assert_eq!(s, 502);

    // Body errors once the status is decided: the downstream connection is cut, so the client
    // never sees a complete response.
    let out = raw(weir.mesh(), "GET /truncated HTTP/1.1\r\nhost: raw\r\n\r\n").await;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 10, "{out}");
    let out = raw(weir.mesh(), "GET /badchunk HTTP/1.1\r\nhost: raw\r\n\r\n").await;
    assert!(!out.ends_with("0\r\n\r\n"), "{out}");
    // The proxy itself is fine afterwards.
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn request_bodies_are_framed_for_the_upstream() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&config(&up)).await;
    let out = raw(
        weir.mesh(),
        "POST /a HTTP/1.1\r\nhost: raw\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let got = up.last_request();
    assert!(got.contains("content-length: 5\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello"), "{got}");
    assert_eq!(got.matches("content-length").count(), 1, "{got}");

    let out = raw(
        weir.mesh(),
        "POST /b HTTP/1.1\r\nhost: raw\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let got = up.last_request();
    assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
    assert!(!got.contains("content-length"), "{got}");
    let body = &got[got.find("\r\n\r\n").unwrap() + 4..];
    let mut data = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            break;
        }
        data.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    assert_eq!(data, "abcde");

    // A POST without a body still tells the upstream so.
    let out = raw(
        weir.mesh(),
        "POST /c HTTP/1.1\r\nhost: raw\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(up.last_request().contains("content-length: 0\r\n"));
    assert!(up.last_request().starts_with("POST /c HTTP/1.1\r\n"));
}

#[tokio::test]
async fn head_responses_have_no_body_and_keep_the_connection() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&config(&up)).await;
    let out = raw(
        weir.mesh(),
        "HEAD /head HTTP/1.1\r\nhost: raw\r\n\r\nGET /head HTTP/1.1\r\nhost: raw\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.ends_with("hello"), "{out}");
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_upstream_is_not_used() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&config(&up)).await;
    let c = client();
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/idle-close", &[]).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let (s, _, body) = send(&c, weir.mesh(), "raw", "/", &[]).await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&config(&up)).await;
    let upload = "y".repeat(BIG);
    let out = raw(
        weir.mesh(),
        &format!(
            "POST /big HTTP/1.1\r\nhost: raw\r\ncontent-length: {BIG}\r\nconnection: close\r\n\r\n{upload}"
        ),
    )
    .await;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(body.len(), BIG);
    assert!(body.bytes().all(|b| b == b'x'));
    let got = up.last_request();
    assert!(got.ends_with(&upload), "upload arrived incomplete");
}

/// `config` with a DestinationRule setting the connection pool's HTTP settings.
fn with_pool(up: &RawUpstream, http: &str) -> String {
    config(up)
        + &format!(
            "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: raw}}
spec:
  host: raw
  trafficPolicy:
    connectionPool:
      http: {http}
"
        )
}

#[tokio::test]
async fn max_requests_per_connection_closes_used_up_connections() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&with_pool(&up, "{maxRequestsPerConnection: 2}")).await;
    let c = client();
    for _ in 0..5 {
        let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
        assert_eq!(s, 200);
    }
    assert_eq!(up.accepted(), 3, "2 + 2 + 1 requests");
}

#[tokio::test]
async fn connections_idle_past_the_idle_timeout_are_not_reused() {
    let up = RawUpstream::start().await;
    let weir = Weir::start(&with_pool(&up, "{idleTimeout: 0.1s}")).await;
    let c = client();
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
    assert_eq!(s, 200);
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(up.accepted(), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (s, _, _) = send(&c, weir.mesh(), "raw", "/", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(up.accepted(), 2, "an idle-expired connection was reused");
}
