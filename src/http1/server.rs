//! weir's own HTTP/1.1 server connection: reads requests, hands each to the proxy in this
//! connection's task, and writes the response, with no per-request task or channel in between
//! (a request's state is one box, freed when it is answered).
//!
//! Strict about what it accepts (RFC 9112, and docs/reliability.md section 3): `Content-Length`
//! with `Transfer-Encoding`, conflicting or malformed lengths, a `Transfer-Encoding` other than
//! `chunked`, a missing or repeated `Host`, malformed heads: 400 and the connection is closed,
//! nothing is forwarded. A head over [`MAX_HEAD`] or with more than [`MAX_HEADERS`] fields gets
//! 431, a request target over [`MAX_URI`] 414. Paths are normalised and header names checked
//! by the [`ServerPolicy`], which also sets the deadlines: for a request's head (408), its body
//! (408), an idle connection and a stalled write (closed).

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::stream::{ClientRead, ClientWrite};
use super::writer::Writer;
use super::{Chunk, Decoder, MAX_HEAD, MAX_HEADERS, Reader, tokens};
use crate::body::from_client::{Continue, ContinueAsked, RequestBody};
use crate::body::to_client::ResponseBody;
use crate::body::to_upstream::Body;
use crate::boxed;
use crate::edge::ServerPolicy;
use crate::error::Refusal;
use crate::proxy::{ClientGone, ConnInfo, Proxy};

/// Longest request target accepted.
pub(crate) const MAX_URI: usize = 16 * 1024;

/// A parsed request head.
pub(crate) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Decoder,
    keep_alive: bool,
    expect_continue: bool,
}

/// Serves HTTP/1.1 on a connection whose first bytes are already in `reader`, until the client
/// closes, a request asks to close, an error, or `stop` (between requests).
///
/// Between requests the connection waits here, in its task's own future, holding no buffer;
/// everything a request needs (reading its head, the request path, writing the answer) is in
/// one box made when the request begins and freed when it is answered. An idle keep-alive
/// connection thus costs its task's small future and its socket's registration
/// (docs/benchmarks.md, idle connections).
///
/// Not an `async fn`: its arguments would be kept twice in the future (as arguments, and as
/// the locals they move into), and this future is what every idle connection keeps.
pub(crate) fn serve<'a>(
    reader: Reader<ClientRead>,
    writer: ClientWrite,
    proxy: &'a Proxy,
    info: &'a ConnInfo,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + 'a {
    let flag = stop.clone();
    let mut w = Writer {
        io: writer,
        out: BytesMut::new(),
        stall: proxy.policy().idle_timeout,
    };
    // Lent to a request's body while it is read, and back after.
    let mut slot = Some(reader);
    async move {
        // Made once and kept: it registers for the signal on its first poll, not once per
        // request.
        let stopped = stop.changed();
        tokio::pin!(stopped);
        // One timer for the connection's waits, moved along rather than made anew.
        let timer = tokio::time::sleep(proxy.policy().idle_timeout);
        tokio::pin!(timer);
        loop {
            let Some(reader) = slot.as_mut() else {
                return;
            };
            // Idle between requests: wait for the next request's first bytes, holding no
            // buffer, until the idle timeout; a stopping listener closes the connection now.
            if reader.filled() == 0 {
                let due = Instant::now() + proxy.policy().idle_timeout;
                arm(timer.as_mut(), due);
                // Polled here rather than as a `select!` of futures: this wait is what an idle
                // connection's future holds.
                let more = poll_fn(|cx| {
                    if let Poll::Ready(filled) = reader.poll_fill(cx) {
                        return Poll::Ready(matches!(filled, Ok(n) if n > 0));
                    }
                    if stopped.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                    poll_due(&mut timer, due, cx).map(|()| false)
                })
                .await;
                if !more {
                    return;
                }
            }
            // Built in its box, not copied there.
            let request =
                boxed::pinned(|| request(&mut slot, &mut w, proxy, info, &flag, timer.as_mut()));
            if request.await != Some(true) {
                return;
            }
            w.release();
        }
    }
}

/// One request whose first bytes have arrived: its head read (or refused), then the exchange.
/// `Some(true)`: the connection carries another.
async fn request(
    slot: &mut Option<Reader<ClientRead>>,
    w: &mut Writer,
    proxy: &Proxy,
    info: &ConnInfo,
    flag: &watch::Receiver<bool>,
    timer: Pin<&mut Sleep>,
) -> Option<bool> {
    let reader = slot.as_mut()?;
    let head = match read_head(reader, proxy.policy(), timer).await {
        Ok(Some(head)) => head,
        Ok(None) => return None,
        Err(refusal) => {
            let (status, why) = (refusal.status(), refusal.reason());
            tracing::debug!(peer = %info.peer, %status, why, "Request refused.");
            let _ = w.reject(status, why).await;
            return None;
        }
    };
    exchange(head, slot, w, proxy, info, flag).await
}

/// One request on the connection: its body lent from `slot` (and back when read to its end),
/// the request path, then the answer written. `Some(true)`: the connection carries another.
async fn exchange(
    head: Head,
    slot: &mut Option<Reader<ClientRead>>,
    w: &mut Writer,
    proxy: &Proxy,
    info: &ConnInfo,
    flag: &watch::Receiver<bool>,
) -> Option<bool> {
    let policy = proxy.policy();
    let keep_alive = head.keep_alive;
    let head_only = head.method == Method::HEAD;
    let version = head.version;
    // A client that expects `100 Continue` gets it when its body is first read: a request
    // refused before (no route, too large, an injected abort) never has it sent.
    let mut expect = None;
    let (body, home) = match slot.take() {
        Some(reader) if !matches!(head.body, Decoder::Done) => {
            let waits = head.expect_continue.then(|| {
                let (body_side, ours) = Continue::pair();
                expect = Some(ours);
                body_side
            });
            let deadline = Instant::now() + policy.request_timeout;
            let (body, home) = RequestBody::new(reader, head.body, deadline, waits);
            (Body::Client(body), Some(home))
        }
        reader => {
            *slot = reader;
            (Body::empty(), None)
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = head.uri;
    *req.version_mut() = version;
    *req.headers_mut() = head.headers;
    // Without a body, the read side is free to notice a client that leaves mid-request.
    let client = slot.as_mut().map(|r| r as &mut dyn ClientGone);
    let resp = match expect {
        None => proxy.serve(req, info, client).await,
        // Boxed: the rare path.
        Some(expect) => Box::pin(respond_continuing(proxy, req, info, w, expect)).await?,
    };
    // A listener that began stopping meanwhile: this response is the connection's last.
    let mut keep_alive = keep_alive && !*flag.borrow();
    if let Some(home) = home {
        // The request body is back, read to its end; if not (a response made without reading
        // it, a failed upload), the connection cannot carry another request: say so.
        match home.lock().map(|mut slot| slot.take()).ok().flatten() {
            Some((r, true)) => *slot = Some(r),
            _ => keep_alive = false,
        }
    }
    let (body, keep_alive) =
        w.encode_head(resp, head_only, version == Version::HTTP_10, keep_alive);
    let written = match body {
        Some((body, chunked)) => w.write_body(body, chunked).await,
        None => w.flush().await,
    };
    Some(written.is_ok() && keep_alive)
}

/// Handles a request whose client waits for `100 Continue`: written when the body asks for it
/// (`None` if that write failed).
async fn respond_continuing(
    proxy: &Proxy,
    req: Request<Body>,
    info: &ConnInfo,
    w: &mut Writer,
    (asked, sent): ContinueAsked,
) -> Option<Response<ResponseBody>> {
    let respond = proxy.serve(req, info, None);
    tokio::pin!(respond);
    tokio::select! {
        biased;
        resp = &mut respond => Some(resp),
        Ok(()) = asked => {
            w.send(b"HTTP/1.1 100 Continue\r\n\r\n").await.ok()?;
            let _ = sent.send(());
            Some(respond.await)
        }
    }
}

/// Reads a request head whose first bytes have arrived: the rest must come within the request
/// headers timeout (408). `None`: the connection failed mid-head.
async fn read_head(
    r: &mut Reader<ClientRead>,
    policy: &ServerPolicy,
    mut timer: Pin<&mut Sleep>,
) -> Result<Option<Head>, Refusal> {
    let due = Instant::now() + policy.request_headers_timeout;
    arm(timer.as_mut(), due);
    loop {
        if let Some(head) = super::with_fields(|f| take_head(r, f, policy))? {
            return Ok(Some(head));
        }
        if r.filled() >= MAX_HEAD {
            return Err(too_large(r.unread()));
        }
        let filled = tokio::select! {
            biased;
            filled = poll_fn(|cx| r.poll_fill(cx)) => filled,
            () = poll_fn(|cx| poll_due(&mut timer, due, cx)) => return Err(Refusal::HeadTimeout),
        };
        match filled {
            Ok(0) => return Err(Refusal::Malformed("closed mid-head")),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
}

/// Sets the connection's timer for `due` if it would fire later. One that fires early is set
/// again then ([`poll_due`]): a client sending request after request thus costs no timer
/// update per request, only one per idle timeout.
fn arm(timer: Pin<&mut Sleep>, due: Instant) {
    if timer.deadline() > due {
        timer.reset(due);
    }
}

/// Ready once `due` has passed; a timer that fired before it is set for `due` again.
fn poll_due(timer: &mut Pin<&mut Sleep>, due: Instant, cx: &mut Context<'_>) -> Poll<()> {
    while timer.as_mut().poll(cx).is_ready() {
        if Instant::now() >= due {
            return Poll::Ready(());
        }
        timer.as_mut().reset(due);
    }
    Poll::Pending
}

/// 414 when the request line alone is over the limit, else 431.
fn too_large(buf: &[u8]) -> Refusal {
    let line = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    if line > MAX_URI {
        Refusal::TargetTooLong
    } else {
        Refusal::HeadTooLarge("request head too large")
    }
}

/// Parses the head at the front of the buffer and, if complete, takes it off (header values
/// stay slices of it, uncopied).
pub(crate) fn take_head<R>(
    r: &mut Reader<R>,
    fields: &mut super::Fields,
    policy: &ServerPolicy,
) -> Result<Option<Head>, Refusal> {
    let bad = Refusal::Malformed;
    // Left uninitialised: the parser writes the slots it fills (filling all of them first
    // wrote 3.2 KB per request).
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let buf = r.unread();
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::HeadTooLarge("too many header fields"));
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("invalid method"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let path = req.path.unwrap_or_default();
    if path.len() > MAX_URI {
        return Err(Refusal::TargetTooLong);
    }
    if path.contains('#') {
        return Err(bad("a fragment in the request target"));
    }
    let base = buf.as_ptr() as usize;
    let path_range = {
        let start = path.as_ptr() as usize - base;
        start..start + path.len()
    };
    fields.clear();
    for h in req.headers.iter() {
        if !policy.header_name(h.name.as_bytes()).map_err(bad)? {
            continue;
        }
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = r.take(len);
    let mut uri =
        Uri::from_maybe_shared(head.slice(path_range)).map_err(|_| bad("invalid target"))?;
    policy.normalize_target(&mut uri).map_err(bad)?;
    let mut headers = super::header_map(fields.len() + 4);
    let mut framing = RequestFraming::default();
    for (name, start, end) in fields.drain(..) {
        framing.see(&name, &head[start..end]).map_err(bad)?;
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    let (body, keep_alive) = framing.decide(version).map_err(bad)?;
    Ok(Some(Head {
        method,
        uri,
        version,
        headers,
        body,
        keep_alive,
        expect_continue: framing.expect_continue,
    }))
}

/// What a request's framing and connection headers said.
#[derive(Debug, Default)]
struct RequestFraming {
    length: Option<u64>,
    transfer_encoding: bool,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl RequestFraming {
    fn see(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), &'static str> {
        if name == header::CONTENT_LENGTH {
            for part in tokens(value) {
                let n = super::parse_length(part).ok_or("invalid Content-Length")?;
                if self.length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values");
                }
                self.length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            // Only a lone `chunked` is understood; anything else cannot be framed safely.
            if self.transfer_encoding || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err("unsupported Transfer-Encoding");
            }
            self.transfer_encoding = true;
        } else if name == header::HOST {
            self.hosts += 1;
        } else if name == header::CONNECTION {
            for t in tokens(value) {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::EXPECT {
            self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    /// The body's framing and whether the client keeps the connection.
    fn decide(&self, version: Version) -> Result<(Decoder, bool), &'static str> {
        if self.transfer_encoding && self.length.is_some() {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if self.transfer_encoding && version == Version::HTTP_10 {
            return Err("Transfer-Encoding in an HTTP/1.0 request");
        }
        if self.hosts > 1 || (self.hosts == 0 && version == Version::HTTP_11) {
            return Err("a request needs exactly one Host");
        }
        let keep_alive = if version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        };
        let body = if self.transfer_encoding {
            Decoder::Chunked(Chunk::Size)
        } else {
            match self.length {
                None | Some(0) => Decoder::Done,
                Some(n) => Decoder::Length(n),
            }
        };
        Ok((body, keep_alive))
    }
}

impl ClientGone for Reader<ClientRead> {
    /// Gone at the end of the stream or on an error. Bytes waiting to be read (a pipelined
    /// request) say nothing, and neither does anything afterwards.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.filled() > 0 {
            return Poll::Pending;
        }
        super::stream::poll_closed(&mut self.io, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(pairs: &[(&str, &str)], version: Version) -> Result<(String, bool), &'static str> {
        let mut f = RequestFraming::default();
        for (k, v) in pairs {
            f.see(&HeaderName::from_bytes(k.as_bytes()).unwrap(), v.as_bytes())?;
        }
        f.decide(version).map(|(d, k)| (format!("{d:?}"), k))
    }

    #[test]
    fn request_framing_is_strict() {
        let v11 = Version::HTTP_11;
        let host = ("host", "a");
        assert_eq!(decide(&[host], v11), Ok(("Done".into(), true)));
        assert_eq!(
            decide(&[host, ("content-length", "3")], v11),
            Ok(("Length(3)".into(), true))
        );
        assert_eq!(
            decide(&[host, ("transfer-encoding", "Chunked")], v11),
            Ok(("Chunked(Size)".into(), true))
        );
        for bad in [
            vec![
                host,
                ("content-length", "3"),
                ("transfer-encoding", "chunked"),
            ],
            vec![host, ("content-length", "3"), ("content-length", "4")],
            vec![host, ("content-length", "3, 4")],
            vec![host, ("content-length", "+3")],
            vec![host, ("content-length", "")],
            vec![host, ("transfer-encoding", "gzip, chunked")],
            vec![host, ("transfer-encoding", "xchunked")],
            vec![
                host,
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![],
            vec![host, host],
        ] {
            assert!(decide(&bad, v11).is_err(), "{bad:?}");
        }
        assert!(decide(&[("transfer-encoding", "chunked")], Version::HTTP_10).is_err());
        assert_eq!(decide(&[], Version::HTTP_10), Ok(("Done".into(), false)));
        assert_eq!(
            decide(&[("connection", "keep-alive")], Version::HTTP_10),
            Ok(("Done".into(), true))
        );
        assert_eq!(
            decide(&[host, ("connection", "close")], v11),
            Ok(("Done".into(), false))
        );
    }
}
