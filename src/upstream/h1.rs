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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use tokio::time::Instant;

use super::error::UpstreamError;
use super::h1_head::{Head, take_head};
use super::stream::{Stream, Timed};
use crate::body::error::BodyError;
use crate::body::to_upstream::Body;
use crate::http1::{Decoder, MAX_HEAD, Reader, put_decimal, put_field, queue_frame, write_all};
use crate::workers;

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

/// Most idle HTTP/1.1 connections kept per endpoint and worker.
const MAX_IDLE: usize = 256;

/// A pool's idle HTTP/1.1 connections, most recently used last: a response body puts its
/// connection back here once read to the end. One list per worker ([`crate::workers`]): a
/// connection is taken again by the worker whose runtime watches its socket.
#[derive(Debug)]
// Boxed in the list too: a connection moves in and out whole, as a pointer.
#[allow(clippy::vec_box)]
pub(super) struct Idle(Box<[Mutex<Vec<Box<Conn>>>]>);

impl Default for Idle {
    fn default() -> Idle {
        Idle((0..workers::count()).map(|_| Mutex::default()).collect())
    }
}

impl Idle {
    /// The calling worker's list (a pool made before the workers has one, for all).
    #[allow(clippy::vec_box)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<Conn>>> {
        let list = &self.0[workers::index() % self.0.len()];
        list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many there are, on all workers.
    pub(super) fn len(&self) -> usize {
        let lists = self
            .0
            .iter()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
        lists.map(|l| l.len()).sum()
    }

    /// The most recently used idle connection that is still clean and not idle too long.
    pub(super) fn take(&self, idle_timeout: Duration) -> Option<Box<Conn>> {
        let mut idle = self.lock();
        // Oldest first: those past the idle timeout are closed.
        let expired = idle
            .iter()
            .take_while(|c| c.idle_for() >= idle_timeout)
            .count();
        idle.drain(..expired);
        while let Some(mut conn) = idle.pop() {
            if conn.is_clean() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection for another request, if it may carry one and there is room.
    fn put(&self, mut conn: Box<Conn>) {
        if !conn.may_carry_more() {
            return;
        }
        conn.mark_idle();
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// One HTTP/1.1 connection to an upstream. Boxed for its whole life: it moves in and out of
/// the idle list and into every response body, which stay small.
#[derive(Debug)]
pub(crate) struct Conn {
    r: Reader<Timed>,
    /// The bytes being written.
    out: BytesMut,
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
    pub(super) fn new(io: Stream, open: Open) -> Box<Conn> {
        Box::new(Conn {
            r: Reader::new(Timed::new(io)),
            // Taken from the thread's spares when the first request is written.
            out: BytesMut::new(),
            served: 0,
            max_requests: None,
            idle_since: Instant::now(),
            _open: open,
        })
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

    /// Going idle: it gives its buffers back to the thread's spares (an idle connection holds
    /// none, as a client's does not) and notes the time.
    pub(super) fn mark_idle(&mut self) {
        self.r.release();
        crate::http1::give_write_buffer(std::mem::take(&mut self.out));
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
    mut conn: Box<Conn>,
    req: &mut Request<Body>,
    idle: &Arc<Idle>,
) -> Result<Response<ResponseBody>, Failure> {
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
        let body = ResponseBody::new(conn, decoder, keep_alive, idle.clone());
        let mut resp = Response::new(body);
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
    if conn.out.capacity() == 0 {
        conn.out = crate::http1::write_buffer();
    }
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

/// Reads until a whole response head is buffered, and takes it.
async fn read_head(conn: &mut Conn) -> Result<Head, Failure> {
    let mut received = conn.r.filled() > 0;
    loop {
        if conn.r.filled() > 0 {
            if let Some(head) =
                crate::http1::with_fields(|f| take_head(&mut conn.r, f)).map_err(bad)?
            {
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

/// A response body read straight off its connection.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    /// None once finished (the connection went back to the pool or was closed).
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    keep_alive: bool,
    idle: Arc<Idle>,
}

impl ResponseBody {
    fn new(conn: Box<Conn>, decoder: Decoder, keep_alive: bool, idle: Arc<Idle>) -> ResponseBody {
        let mut body = ResponseBody {
            conn: Some(conn),
            decoder,
            keep_alive,
            idle,
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
            self.idle.put(conn);
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
