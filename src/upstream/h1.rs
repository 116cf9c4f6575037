//! weir's own HTTP/1.1 upstream connection. The request is written and the response read in the
//! task of the request that uses the connection: no connection task, channel or wake-up stands
//! between them, which is most of what a proxy spends outside the kernel.
//!
//! Strict about what comes back (RFC 9112): a malformed status line or header, Content-Length
//! together with Transfer-Encoding, conflicting Content-Length values, a bad chunk or a truncated
//! body fail the exchange, and the connection is closed, never reused. A connection goes back to
//! its pool only when its response was read exactly to the end and both sides keep it alive.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame};
use tokio::time::Instant;

use super::body::{Body, UpstreamBody};
use super::stream::{Stream, Timed};
use super::{Pool, UpstreamError};
use crate::http1::{
    BodyError, Chunk, Decoder, MAX_HEAD, MAX_HEADERS, Reader, header_map, parse_length,
    put_decimal, put_field, queue_frame, tokens, write_all,
};

/// Counts a pool's open connections for as long as it lives.
#[derive(Debug)]
pub(super) struct Open(Arc<AtomicUsize>);

impl Open {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One HTTP/1.1 connection to an upstream.
#[derive(Debug)]
pub(crate) struct Conn {
    r: Reader<Timed>,
    /// The bytes being written.
    out: BytesMut,
    /// Header names and value offsets of the head being parsed (kept to reuse its allocation).
    fields: Vec<(HeaderName, usize, usize)>,
    /// Requests sent on this connection.
    served: u32,
    /// Most requests it may carry (`maxRequestsPerConnection`).
    max_requests: Option<u32>,
    /// When it last went idle.
    idle_since: Instant,
    _open: Open,
}

/// How an exchange failed.
pub(super) enum Failure {
    /// The connection was closed before any of the request was written; the request is intact.
    Stale(io::Error),
    /// The request was written and the connection closed without a byte of response.
    NoReply(io::Error),
    /// Anything else.
    Failed(UpstreamError),
}

impl Conn {
    pub(super) fn new(io: Stream, open: Open) -> Conn {
        Conn {
            r: Reader::new(Timed::new(io)),
            out: BytesMut::with_capacity(1024),
            fields: Vec::new(),
            served: 0,
            max_requests: None,
            idle_since: Instant::now(),
            _open: open,
        }
    }

    /// Applies the cluster's `maxRequestsPerConnection` and read and write timeouts to the
    /// request about to be sent.
    pub(super) fn prepare(&mut self, spec: &crate::backend::ClusterSpec) {
        self.max_requests = spec.max_requests_per_connection;
        self.r
            .io
            .set_timeouts(spec.read_timeout, spec.write_timeout);
    }

    /// Whether the connection may be reused for another request.
    pub(super) fn may_carry_more(&self) -> bool {
        self.max_requests.is_none_or(|max| self.served < max)
    }

    pub(super) fn mark_idle(&mut self) {
        self.idle_since = Instant::now();
    }

    pub(super) fn idle_for(&self) -> std::time::Duration {
        self.idle_since.elapsed()
    }

    /// Whether an idle connection can still be used: nothing (not even a close) has arrived on
    /// it since its last response.
    pub(super) fn is_clean(&mut self) -> bool {
        super::stream::is_clean(&mut self.r.io.io)
    }

    /// Writes `out`; on failure also says whether any of it was written.
    async fn flush_out(&mut self) -> Result<(), (io::Error, bool)> {
        write_all(&mut self.r.io, &self.out).await?;
        self.out.clear();
        Ok(())
    }
}

/// Sends `req` on `conn` and reads the response head. The request is borrowed so that a caller
/// can send it again after [`Failure::Stale`] (and, when it has no body, [`Failure::NoReply`]).
pub(super) async fn exchange(
    mut conn: Conn,
    req: &mut Request<Body>,
    pool: &Arc<Pool>,
) -> Result<Response<UpstreamBody>, Failure> {
    let head_only = req.method() == Method::HEAD;
    conn.served += 1;
    write_request(&mut conn, req).await?;
    loop {
        let head = read_head(&mut conn).await?;
        if head.status.is_informational() {
            // 100 Continue, 103 Early Hints: the final response follows.
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(bad("unrequested protocol switch"));
            }
            continue;
        }
        let (decoder, keep_alive) = head
            .delimiters
            .decide(head.status, head_only, head.version)
            .map_err(bad)?;
        let body = ResponseBody::new(conn, decoder, keep_alive, pool.clone());
        let mut resp = Response::new(UpstreamBody::h1(body));
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        return Ok(resp);
    }
}

fn client_body(e: BodyError) -> Failure {
    Failure::Failed(UpstreamError::ClientBody(e))
}

fn timed_out(what: &'static str) -> Failure {
    Failure::Failed(UpstreamError::Timeout(what))
}

fn bad(what: &'static str) -> Failure {
    Failure::Failed(UpstreamError::BadResponse(what))
}

/// Writes the request head and streams the body.
async fn write_request(conn: &mut Conn, req: &mut Request<Body>) -> Result<(), Failure> {
    let body = req.body();
    let chunked;
    let length = if body.is_end_stream() {
        chunked = false;
        let needs_zero = req.headers().contains_key(header::CONTENT_LENGTH)
            || matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        needs_zero.then_some(0)
    } else if let Some(n) = body.size_hint().exact() {
        chunked = false;
        Some(n)
    } else {
        chunked = true;
        None
    };
    encode_head(&mut conn.out, req, length, chunked);
    let body = req.body_mut();
    let mut ended = body.is_end_stream();
    let mut consumed = false;
    // A first frame that is already here goes out with the head, in one write.
    if !ended
        && let Poll::Ready(frame) =
            poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await
    {
        consumed = true;
        ended = queue_frame(&mut conn.out, frame, || body.is_end_stream(), chunked)
            .map_err(client_body)?;
    }
    if let Err((e, some)) = conn.flush_out().await {
        return Err(if e.kind() == io::ErrorKind::TimedOut {
            timed_out("write")
        } else if some || consumed {
            Failure::Failed(UpstreamError::Reset(Box::new(e)))
        } else {
            Failure::Stale(e)
        });
    }
    if !ended {
        // Boxed: most requests have no body left here, and this keeps their state small.
        Box::pin(stream_body(conn, body, chunked)).await?;
    }
    Ok(())
}

/// Writes the rest of a request body as it arrives.
async fn stream_body(conn: &mut Conn, body: &mut Body, chunked: bool) -> Result<(), Failure> {
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        let ended = queue_frame(&mut conn.out, frame, || body.is_end_stream(), chunked)
            .map_err(client_body)?;
        conn.flush_out().await.map_err(|(e, _)| {
            if e.kind() == io::ErrorKind::TimedOut {
                timed_out("write")
            } else {
                Failure::Failed(UpstreamError::Reset(Box::new(e)))
            }
        })?;
        if ended {
            return Ok(());
        }
    }
}

/// Request line and headers. The client's own framing headers are replaced by the framing weir
/// writes; `Expect` was answered downstream already.
fn encode_head(out: &mut BytesMut, req: &Request<Body>, length: Option<u64>, chunked: bool) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.put_u8(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
        {
            continue;
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(n) = length {
        out.extend_from_slice(b"content-length: ");
        put_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    } else if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response head, with what its framing headers said.
pub(crate) struct Head {
    status: StatusCode,
    version: Version,
    /// Forwardable headers: framing and connection-management headers are consumed here.
    headers: HeaderMap,
    delimiters: Delimiters,
}

/// Reads until a whole response head is buffered, and takes it.
async fn read_head(conn: &mut Conn) -> Result<Head, Failure> {
    let mut received = conn.r.filled() > 0;
    loop {
        if conn.r.filled() > 0 {
            if let Some(head) = take_head(&mut conn.r, &mut conn.fields).map_err(bad)? {
                return Ok(head);
            }
            if conn.r.filled() >= MAX_HEAD {
                return Err(bad("response head too large"));
            }
        }
        match poll_fn(|cx| conn.r.poll_fill(cx)).await {
            Ok(0) if !received => {
                return Err(Failure::NoReply(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(0) => return Err(bad("connection closed in the response head")),
            Ok(_) => received = true,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out("read")),
            Err(e) if !received => return Err(Failure::NoReply(e)),
            Err(e) => return Err(Failure::Failed(UpstreamError::Reset(Box::new(e)))),
        }
    }
}

/// Parses the head at the front of the buffer; if it is complete, takes it off (header values
/// stay slices of it, uncopied).
pub(crate) fn take_head<R>(
    r: &mut Reader<R>,
    fields: &mut Vec<(HeaderName, usize, usize)>,
) -> Result<Option<Head>, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let buf = r.unread();
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many response headers"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("invalid status code")?;
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Names now, values once the head is taken (it is borrowed while parsed).
    let base = buf.as_ptr() as usize;
    fields.clear();
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = r.take(len);
    let mut headers = header_map(fields.len());
    let mut delimiters = Delimiters::default();
    for (name, start, end) in fields.drain(..) {
        let raw = &head[start..end];
        if delimiters.see(&name, raw) {
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| "invalid header value")?;
            headers.append(name, value);
        }
    }
    Ok(Some(Head {
        status,
        version,
        headers,
        delimiters,
    }))
}

/// What a response's framing and connection headers said.
#[derive(Debug, Default)]
struct Delimiters {
    /// Content-Length, once all its values agreed.
    length: Option<u64>,
    /// A Content-Length problem, reported if the length decides the framing.
    bad_length: Option<&'static str>,
    /// Transfer-Encoding was present; whether its last coding is `chunked`.
    chunked_last: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl Delimiters {
    /// Notes one header; false for headers consumed here rather than forwarded.
    fn see(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        let tokens = || tokens(value);
        if name == header::CONTENT_LENGTH {
            for part in tokens() {
                match parse_length(part) {
                    None => self.bad_length = Some("invalid Content-Length"),
                    Some(n) if self.length.is_some_and(|l| l != n) => {
                        self.bad_length = Some("conflicting Content-Length values");
                    }
                    Some(n) => self.length = Some(n),
                }
            }
            true
        } else if name == header::TRANSFER_ENCODING {
            let last = tokens().rfind(|t| !t.is_empty());
            self.chunked_last = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            false
        } else if name == header::CONNECTION {
            let mut others = false;
            for t in tokens() {
                if t.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if !t.is_empty() {
                    others = true;
                }
            }
            // Kept only when it names other headers: hop-by-hop removal needs to see them.
            others
        } else {
            name.as_str() != "keep-alive"
        }
    }

    /// How the body is delimited (RFC 9112 section 6.3), and whether the connection can be
    /// reused after it.
    fn decide(
        self,
        status: StatusCode,
        head_only: bool,
        version: Version,
    ) -> Result<(Decoder, bool), &'static str> {
        let persistent = if version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        };
        if self.chunked_last.is_some() && (self.length.is_some() || self.bad_length.is_some()) {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Decoder::Done, persistent));
        }
        match self.chunked_last {
            Some(true) => return Ok((Decoder::Chunked(Chunk::Size), persistent)),
            // Some other coding last: the body runs to the close.
            Some(false) => return Ok((Decoder::Eof, false)),
            None => {}
        }
        if let Some(problem) = self.bad_length {
            return Err(problem);
        }
        Ok(match self.length {
            Some(0) => (Decoder::Done, persistent),
            Some(n) => (Decoder::Length(n), persistent),
            None => (Decoder::Eof, false),
        })
    }
}

/// A response body read straight off its connection.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    /// None once finished (the connection went back to the pool or was closed).
    conn: Option<Conn>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Arc<Pool>,
}

impl ResponseBody {
    fn new(conn: Conn, decoder: Decoder, keep_alive: bool, pool: Arc<Pool>) -> ResponseBody {
        let mut body = ResponseBody {
            conn: Some(conn),
            decoder,
            keep_alive,
            pool,
        };
        if matches!(body.decoder, Decoder::Done) {
            body.finish();
        }
        body
    }

    /// Gives the connection back if it is fit for another request, else closes it.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && matches!(self.decoder, Decoder::Done)
            && conn.r.filled() == 0
        {
            self.pool.put_idle_h1(conn);
        }
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    pub(crate) fn exact_len(&self) -> Option<u64> {
        match (&self.conn, &self.decoder) {
            (None, _) => Some(0),
            (Some(_), Decoder::Length(n)) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(
            self.decoder
                .poll_data(&mut conn.r, cx, "upstream closed mid-body")
        ) {
            Ok(Some(data)) => {
                if matches!(self.decoder, Decoder::Done) {
                    self.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                self.finish();
                Poll::Ready(None)
            }
            Err(e) => self.fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(pairs: &[(&str, &str)], status: u16, head_only: bool) -> Option<(String, bool)> {
        let mut d = Delimiters::default();
        for (k, v) in pairs {
            d.see(&HeaderName::from_bytes(k.as_bytes()).unwrap(), v.as_bytes());
        }
        let status = StatusCode::from_u16(status).unwrap();
        d.decide(status, head_only, Version::HTTP_11)
            .ok()
            .map(|(d, k)| (format!("{d:?}"), k))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let some = |d: &str, k| Some((d.to_owned(), k));
        assert_eq!(
            decide(&[("content-length", "5")], 200, false),
            some("Length(5)", true)
        );
        assert_eq!(
            decide(&[("content-length", "5, 5")], 200, false),
            some("Length(5)", true)
        );
        let two = [("content-length", "5"), ("content-length", "6")];
        assert_eq!(decide(&two, 200, false), None);
        assert_eq!(decide(&[("content-length", "+5")], 200, false), None);
        assert_eq!(decide(&[("content-length", "")], 200, false), None);
        let both = [("content-length", "5"), ("transfer-encoding", "chunked")];
        assert_eq!(decide(&both, 200, false), None);
        assert_eq!(
            decide(&both, 204, false),
            None,
            "refused even without a body"
        );
        let te = [("transfer-encoding", "gzip, chunked")];
        assert_eq!(decide(&te, 200, false), some("Chunked(Size)", true));
        let te = [("transfer-encoding", "chunked, gzip")];
        assert_eq!(decide(&te, 200, false), some("Eof", false));
        assert_eq!(decide(&[], 200, false), some("Eof", false));
        assert_eq!(
            decide(&[("content-length", "5")], 200, true),
            some("Done", true)
        );
        assert_eq!(decide(&[], 204, false), some("Done", true));
        let close = [("content-length", "0"), ("connection", "close")];
        assert_eq!(decide(&close, 200, false), some("Done", false));
    }

    #[test]
    fn connection_headers_are_consumed_unless_they_name_others() {
        let mut d = Delimiters::default();
        assert!(!d.see(&header::CONNECTION, b"keep-alive"));
        assert!(d.see(&header::CONNECTION, b"close, x-secret"));
        assert!(!d.see(&HeaderName::from_static("keep-alive"), b"timeout=5"));
        assert!(!d.see(&header::TRANSFER_ENCODING, b"chunked"));
        assert!(d.see(&header::CONTENT_LENGTH, b"3"));
        assert!(d.close && d.keep_alive);
    }

    #[test]
    fn keep_alive_by_version() {
        let persistent = |conn: &[u8], version| {
            let mut d = Delimiters::default();
            if !conn.is_empty() {
                d.see(&header::CONNECTION, conn);
            }
            d.decide(StatusCode::NO_CONTENT, false, version).unwrap().1
        };
        assert!(persistent(b"", Version::HTTP_11));
        assert!(!persistent(b"", Version::HTTP_10));
        assert!(persistent(b"Keep-Alive", Version::HTTP_10));
        assert!(!persistent(b"foo, close", Version::HTTP_11));
    }

    #[test]
    fn heads_are_taken_with_values_uncopied() {
        let mut fields = Vec::new();
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-A: b\r\n\r\nok";
        let mut r = Reader::from_bytes((), raw);
        let head = take_head(&mut r, &mut fields).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers.len(), 2, "connection is consumed");
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(r.unread(), b"ok");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \x7f\r\n\r\n",
        ] {
            let mut r = Reader::from_bytes((), bad);
            assert!(
                take_head(&mut r, &mut fields).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let partial = b"HTTP/1.1 200 OK\r\nX: a";
        let mut r = Reader::from_bytes((), partial);
        assert!(take_head(&mut r, &mut fields).unwrap().is_none());
    }
}
