//! weir's HTTP/2 server against abusive clients, frame by frame (docs/reliability.md section 3,
//! cases 17-19): concurrent-stream limit, rapid reset, CONTINUATION and header-list floods,
//! SETTINGS and PING floods, a zero-window stall, content-length that disagrees with DATA, and
//! h2c upgrade requests.
mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;
const REFUSED_STREAM: u32 = 7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One HPACK literal (never indexed, no Huffman); names and values under 127 bytes.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x10);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    hpack_len(out, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn hpack_len(out: &mut Vec<u8>, n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    let mut rest = n - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A request header block for `method` `path` on host `svc`, with `extra` headers.
fn request(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", method);
    literal(&mut b, ":scheme", "http");
    literal(&mut b, ":authority", "svc");
    literal(&mut b, ":path", path);
    for (n, v) in extra {
        literal(&mut b, n, v);
    }
    b
}

/// A raw HTTP/2 client connection, past the preface and SETTINGS exchange.
struct H2 {
    s: TcpStream,
    buf: Vec<u8>,
    /// The server's SETTINGS (identifier, value).
    settings: Vec<(u16, u32)>,
}

impl H2 {
    async fn connect(weir: &Weir, settings: &[(u16, u32)]) -> H2 {
        let mut s = TcpStream::connect(weir.mesh()).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        hello.extend(frame(SETTINGS, 0, 0, &payload));
        s.write_all(&hello).await.unwrap();
        let mut c = H2 {
            s,
            buf: Vec::new(),
            settings: Vec::new(),
        };
        loop {
            let (kind, flags, _, payload) = c.next().await.expect("no SETTINGS");
            if kind == SETTINGS && flags & ACK == 0 {
                c.settings = payload
                    .chunks(6)
                    .map(|p| {
                        (
                            u16::from_be_bytes([p[0], p[1]]),
                            u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                        )
                    })
                    .collect();
                c.send(&frame(SETTINGS, ACK, 0, &[])).await;
                return c;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).await.is_ok()
    }

    /// The next frame (type, flags, stream, payload); `None` at the end of the connection or
    /// after 10 s of silence.
    async fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        self.next_within(Duration::from_secs(10)).await
    }

    /// The next frame; `None` at the end of the connection or after `silence`.
    async fn next_within(&mut self, silence: Duration) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Some((f[3], f[4], stream, f[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(silence, self.s.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until GOAWAY (its error code) or the end of the connection (`None`).
    async fn until_goaway(&mut self) -> Option<u32> {
        while let Some((kind, _, _, payload)) = self.next().await {
            if kind == GOAWAY {
                return Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
        }
        None
    }
}

async fn setup() -> (Backend, Weir) {
    let backend = Backend::start("v1").await;
    let weir = Weir::start(&service_entry("svc", &[("v1", &backend)])).await;
    (backend, weir)
}

/// weir still serves a well-behaved HTTP/2 client.
async fn still_serves(weir: &Weir) {
    let (status, _) = h2_get(weir.mesh(), "svc", "/").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn at_most_100_concurrent_streams_more_are_refused() {
    let (backend, weir) = setup().await;
    let mut c = H2::connect(&weir, &[]).await;
    assert!(c.settings.contains(&(3, 100)), "{:?}", c.settings);
    assert!(c.settings.contains(&(4, 64 * 1024)), "{:?}", c.settings);
    let mut out = Vec::new();
    for i in 0..101u32 {
        out.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            2 * i + 1,
            &request("GET", "/delay/3000", &[]),
        ));
    }
    c.send(&out).await;
    let refused = loop {
        let (kind, _, stream, payload) = c.next().await.expect("no refusal");
        if kind == RST_STREAM {
            break (stream, u32::from_be_bytes(payload[..4].try_into().unwrap()));
        }
    };
    assert_eq!(refused, (201, REFUSED_STREAM));
    assert!(backend.hits() <= 100);
}

#[tokio::test]
async fn rapid_reset_is_cut_off_with_goaway() {
    let (backend, weir) = setup().await;
    let mut c = H2::connect(&weir, &[]).await;
    let mut out = Vec::new();
    let n = 5000u32;
    for i in 0..n {
        let id = 2 * i + 1;
        out.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &request("GET", "/delay/1000", &[]),
        ));
        out.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let sent = c.send(&out).await;
    let code = c.until_goaway().await;
    const ENHANCE_YOUR_CALM: u32 = 11;
    assert!(sent);
    assert_eq!(
        code,
        Some(ENHANCE_YOUR_CALM),
        "the connection took {n} resets"
    );
    assert!(
        backend.hits() < n as usize / 2,
        "{} of {n} reset streams were forwarded",
        backend.hits()
    );
    still_serves(&weir).await;
}

#[tokio::test]
async fn continuation_floods_and_huge_header_lists_are_refused() {
    let (backend, weir) = setup().await;
    let mut c = H2::connect(&weir, &[]).await;
    c.send(&frame(HEADERS, 0, 1, &request("GET", "/", &[])))
        .await;
    let mut out = Vec::new();
    let value = "v".repeat(100);
    for i in 0..2000 {
        let mut block = Vec::new();
        literal(&mut block, &format!("x-flood-{i}"), &value);
        out.extend(frame(CONTINUATION, 0, 1, &block));
    }
    // Refused with GOAWAY long before the 2000th frame (60 KiB of headers at most).
    assert!(c.send(&out).await);
    assert!(
        c.until_goaway().await.is_some(),
        "2000 CONTINUATION frames were taken"
    );
    assert_eq!(backend.hits(), 0);
    still_serves(&weir).await;
}

#[tokio::test]
async fn settings_and_ping_floods_are_bounded() {
    let (_backend, weir) = setup().await;
    for (kind, payload) in [(PING, vec![0u8; 8]), (SETTINGS, vec![0, 3, 0, 0, 0, 50])] {
        let mut c = H2::connect(&weir, &[]).await;
        let flood: Vec<u8> = (0..20_000)
            .flat_map(|_| frame(kind, 0, 0, &payload))
            .collect();
        // Never reading the acknowledgements: weir must stop (close, or stop reading) rather
        // than queue 20,000 answers.
        let sent = tokio::time::timeout(Duration::from_secs(5), c.send(&flood)).await;
        let mut acks = 0;
        let mut goaway = false;
        if sent.is_ok() {
            while let Some((k, flags, _, _)) = c.next().await {
                if k == kind && flags & ACK == ACK {
                    acks += 1;
                }
                if k == GOAWAY {
                    goaway = true;
                    break;
                }
            }
        }
        assert!(
            goaway || sent.is_err() || acks < 20_000,
            "{kind}: all {acks} floods answered"
        );
        still_serves(&weir).await;
    }
}

#[tokio::test]
async fn content_length_that_disagrees_with_data_is_a_stream_error() {
    let (_backend, weir) = setup().await;
    let mut c = H2::connect(&weir, &[]).await;
    c.send(&frame(
        HEADERS,
        END_HEADERS,
        1,
        &request("POST", "/", &[("content-length", "10")]),
    ))
    .await;
    c.send(&frame(DATA, END_STREAM, 1, b"12345")).await;
    let mut ok = false;
    while let Some((kind, _, stream, payload)) = c.next().await {
        if stream != 1 {
            continue;
        }
        if kind == RST_STREAM {
            break;
        }
        if kind == HEADERS {
            ok = payload.first() == Some(&0x88);
            break;
        }
    }
    assert!(!ok, "a short body was answered 200");
    still_serves(&weir).await;
}

#[tokio::test(start_paused = true)]
async fn a_response_stalled_by_a_zero_window_closes_the_connection() {
    let (_backend, weir) = setup().await;
    const INITIAL_WINDOW_SIZE: u16 = 4;
    let mut c = H2::connect(&weir, &[(INITIAL_WINDOW_SIZE, 0)]).await;
    c.send(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &request("GET", "/bytes/100000", &[]),
    ))
    .await;
    // The client answers keep-alive pings (so it looks alive) but never opens its window.
    // (On the paused clock, time may jump while the upstream answers: the stall is timed from
    // the response headers.)
    let mut headers = None;
    let mut data = 0;
    loop {
        let Some((kind, flags, stream, payload)) = c.next_within(Duration::from_secs(600)).await
        else {
            break;
        };
        match kind {
            PING if flags & ACK == 0 => {
                c.send(&frame(PING, ACK, 0, &payload)).await;
            }
            HEADERS if stream == 1 => headers = Some(tokio::time::Instant::now()),
            DATA => data += payload.len(),
            GOAWAY => break,
            _ => {}
        }
    }
    let closed_after = headers.expect("no response headers").elapsed();
    assert_eq!(data, 0);
    // The idle timeout (60 s), looked at every 15 s.
    assert!(
        (Duration::from_secs(60)..=Duration::from_secs(80)).contains(&closed_after),
        "closed after {closed_after:?}"
    );
    still_serves(&weir).await;
}

#[tokio::test]
async fn h2c_upgrade_requests_are_served_as_http1_and_never_switch() {
    let (backend, weir) = setup().await;
    let out = raw(
        weir.mesh(),
        "GET / HTTP/1.1\r\nhost: svc\r\nconnection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    // Answered over HTTP/1.1; no 101, and the upstream never sees the upgrade.
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(!out.contains("101"), "{out}");
    let body = out.split_once("\r\n\r\n").unwrap().1;
    assert!(!body.contains("h2c"), "{body}");
    assert!(!body.contains("http2-settings"), "{body}");
    assert_eq!(backend.hits(), 1);
}
