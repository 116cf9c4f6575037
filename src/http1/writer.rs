//! The write side of a client connection: response heads encoded by hand, bodies written with
//! `Content-Length` or chunked, every write bounded by the stall timeout.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body as HttpBody;

use super::stream::ClientWrite;
use super::{put_field, queue_frame, write_all};
use crate::body::to_client::ResponseBody;

/// The write side of a client connection.
pub(super) struct Writer {
    pub(super) io: ClientWrite,
    pub(super) out: BytesMut,
    /// A write that makes no progress for this long fails (a client that does not read).
    pub(super) stall: Duration,
}

impl Writer {
    pub(super) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        write_within(&mut self.io, bytes, self.stall).await
    }

    pub(super) async fn flush(&mut self) -> io::Result<()> {
        write_within(&mut self.io, &self.out, self.stall).await?;
        self.out.clear();
        Ok(())
    }

    /// Empties the buffer to encode into, taking one if it gave its own back.
    fn start(&mut self) {
        if self.out.capacity() == 0 {
            self.out = super::write_buffer();
        } else {
            self.out.clear();
        }
    }

    /// Gives the buffer back while the connection waits for its next request.
    pub(super) fn release(&mut self) {
        super::give_write_buffer(std::mem::take(&mut self.out));
    }

    /// A refusal, then the connection closes.
    pub(super) async fn reject(&mut self, status: StatusCode, why: &str) -> io::Result<()> {
        self.start();
        let _ = write!(
            self.out,
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\ndate: ",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
            why.len() + 1,
        );
        self.out.extend_from_slice(date().as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(why.as_bytes());
        self.out.extend_from_slice(b"\n");
        self.flush().await
    }

    /// Queues the response head. Returns the body still to write (with whether it is chunked),
    /// if the response has one, and whether the connection stays open after it.
    pub(super) fn encode_head(
        &mut self,
        resp: Response<ResponseBody>,
        head_only: bool,
        http10: bool,
        keep_alive: bool,
    ) -> (Option<(ResponseBody, bool)>, bool) {
        let (parts, body) = resp.into_parts();
        let status = parts.status;
        let bodiless = head_only
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let length = if bodiless {
            None
        } else {
            body.size_hint().exact()
        };
        // Without a known length: chunked for HTTP/1.1 clients, the connection's end for 1.0.
        let chunked = !bodiless && length.is_none() && !http10;
        let keep_alive = keep_alive && (bodiless || length.is_some() || chunked);
        self.start();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out.extend_from_slice(status.as_str().as_bytes());
        self.out.extend_from_slice(b" ");
        self.out
            .extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        self.out.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            // Framing is weir's to write; a HEAD or 304 response keeps the upstream's length.
            if (name == header::CONTENT_LENGTH && !bodiless)
                || name == header::TRANSFER_ENCODING
                || name == header::CONNECTION
            {
                continue;
            }
            put_field(&mut self.out, name.as_str().as_bytes(), value.as_bytes());
        }
        if !parts.headers.contains_key(header::DATE) {
            put_field(&mut self.out, b"date", date().as_bytes());
        }
        if let Some(n) = length {
            self.out.extend_from_slice(b"content-length: ");
            super::put_decimal(&mut self.out, n);
            self.out.extend_from_slice(b"\r\n");
        } else if chunked {
            self.out
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if !keep_alive {
            self.out.extend_from_slice(b"connection: close\r\n");
        } else if http10 {
            self.out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        super::recycle(parts.headers);
        ((!bodiless).then_some((body, chunked)), keep_alive)
    }

    /// Writes the queued head and the body. An error (of the body too) means the connection
    /// must close: the client must not take what it got for a whole response.
    pub(super) async fn write_body(
        &mut self,
        mut body: ResponseBody,
        chunked: bool,
    ) -> io::Result<()> {
        let broken = |e: Box<dyn std::error::Error + Send + Sync>| {
            tracing::debug!(error = %e, "Response body failed; closing the connection.");
            io::Error::other("response body failed")
        };
        // A first frame that is already here goes out with the head, in one write.
        let mut ended = body.is_end_stream();
        if !ended
            && let Poll::Ready(frame) =
                poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await
        {
            match queue_frame(&mut self.out, frame, || body.is_end_stream(), chunked) {
                Ok(end) => ended = end,
                Err(e) => {
                    self.flush().await?;
                    return Err(broken(e));
                }
            }
        } else if ended && chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush().await?;
        while !ended {
            let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            ended = queue_frame(&mut self.out, frame, || body.is_end_stream(), chunked)
                .map_err(broken)?;
            self.flush().await?;
        }
        Ok(())
    }
}

/// Writes all of `bytes`, failing if, once it has to wait, that takes longer than `stall`.
async fn write_within(io: &mut ClientWrite, bytes: &[u8], stall: Duration) -> io::Result<()> {
    let mut write = std::pin::pin!(write_all(io, bytes));
    // Most writes finish at once: only one that waits pays for a deadline (a clock read and a
    // timer), counted from when it began waiting.
    if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return r.map_err(|(e, _)| e);
    }
    match tokio::time::timeout(stall, write).await {
        Ok(r) => r.map_err(|(e, _)| e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// The `Date` header value, formatted once a second.
pub(super) fn date() -> HeaderValue {
    thread_local! {
        static CACHE: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            c.1 = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            c.0 = secs;
        }
        c.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        let d = date();
        let s = d.to_str().unwrap();
        assert_eq!(s.len(), 29, "{s}");
        assert!(s.ends_with(" GMT"), "{s}");
    }
}
