//! HTTP/1.1 wire pieces shared by weir's server and upstream connections: a read buffer that
//! hands out what it read without copying, body decoding (Content-Length and chunked, RFC 9112
//! section 7) and strict number parsing. Nothing here allocates per message in the common case.

pub(crate) mod server;
pub(crate) mod stream;
mod writer;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::body::error::BodyError;

/// Largest message head (start line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 60 * 1024;
/// Most header fields accepted in a head.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Read buffer growth step, and the least free space a read is given.
const READ_CHUNK: usize = 16 * 1024;
const MIN_READ: usize = 4 * 1024;

/// Buffers kept per thread for the connections that have something to read or write: a
/// connection holds its buffers only while it reads or writes, and gives them back when it
/// waits (an idle keep-alive connection holds none, as nginx frees its buffers between
/// requests); a busy one takes one back without allocating.
const SPARE_BUFFERS: usize = 64;

thread_local! {
    static READ_SPARES: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
    static WRITE_SPARES: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

type Spares = std::thread::LocalKey<std::cell::RefCell<Vec<BytesMut>>>;

fn take_spare(spares: &'static Spares) -> Option<BytesMut> {
    spares.with(|s| s.borrow_mut().pop())
}

fn give_spare(spares: &'static Spares, buf: BytesMut) {
    spares.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_BUFFERS {
            s.push(buf);
        }
    });
}

/// A write buffer: a spare one, else a new one.
pub(crate) fn write_buffer() -> BytesMut {
    take_spare(&WRITE_SPARES).unwrap_or_else(|| BytesMut::with_capacity(4096))
}

/// Gives an emptied write buffer back (one that grew large is let go).
pub(crate) fn give_write_buffer(mut buf: BytesMut) {
    if buf.capacity() > 0 && buf.capacity() <= READ_CHUNK {
        buf.clear();
        give_spare(&WRITE_SPARES, buf);
    }
}

/// The read side of a connection and what has been read from it.
#[derive(Debug)]
pub(crate) struct Reader<R> {
    pub(crate) io: R,
    /// `buf[..filled]` has been read and not consumed; the rest is initialised space to read
    /// into (kept initialised, so reads need no zeroing).
    buf: BytesMut,
    filled: usize,
}

impl<R> Reader<R> {
    /// A reader over `io`; it takes a buffer on its first read.
    pub(crate) fn new(io: R) -> Reader<R> {
        Reader {
            io,
            buf: BytesMut::new(),
            filled: 0,
        }
    }

    /// Gives the buffer back while nothing read is waiting in it.
    pub(crate) fn release(&mut self) {
        if self.filled == 0 && self.buf.len() >= MIN_READ {
            give_spare(&READ_SPARES, std::mem::take(&mut self.buf));
        }
    }

    /// Splits off the reader, keeping the buffer for [`Reader::with_io`].
    pub(crate) fn into_io(self) -> (R, Reader<()>) {
        let shell = Reader {
            io: (),
            buf: self.buf,
            filled: self.filled,
        };
        (self.io, shell)
    }

    /// The same buffer over another reader (after splitting a stream).
    pub(crate) fn with_io<S>(self, io: S) -> Reader<S> {
        Reader {
            io,
            buf: self.buf,
            filled: self.filled,
        }
    }

    /// A reader whose buffer already holds `bytes` (tests, fuzzing).
    pub(crate) fn from_bytes(io: R, bytes: &[u8]) -> Reader<R> {
        let mut r = Reader::new(io);
        r.buf.resize(bytes.len().max(READ_CHUNK), 0);
        r.buf[..bytes.len()].copy_from_slice(bytes);
        r.filled = bytes.len();
        r
    }

    /// Read and not yet consumed.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    pub(crate) fn filled(&self) -> usize {
        self.filled
    }

    /// Takes `n` read bytes off the front, without copying.
    pub(crate) fn take(&mut self, n: usize) -> Bytes {
        self.filled -= n;
        self.buf.split_to(n).freeze()
    }

    /// Takes everything read so far.
    pub(crate) fn take_all(&mut self) -> Bytes {
        self.take(self.filled)
    }
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads more; `Ok(0)` is the end of the stream. Waiting for bytes with none unread, the
    /// reader holds no buffer.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.len() - self.filled < MIN_READ {
            if self.filled == 0
                && let Some(spare) = take_spare(&READ_SPARES)
            {
                self.buf = spare;
            } else {
                self.buf.resize(self.filled + READ_CHUNK, 0);
            }
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.filled..]);
        let read = Pin::new(&mut self.io).poll_read(cx, &mut rb);
        let n = rb.filled().len();
        if read.is_pending() {
            self.release();
        }
        ready!(read)?;
        self.filled += n;
        Poll::Ready(Ok(n))
    }
}

/// A head's fields while it is parsed: each header's name and the offsets of its value.
pub(crate) type Fields = Vec<(http::HeaderName, usize, usize)>;

thread_local! {
    static FIELDS: std::cell::RefCell<Fields> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `parse` with this thread's field list: one per thread, not one per connection, so that
/// an idle connection (a client's, or an upstream one in its pool) holds none.
pub(crate) fn with_fields<T>(parse: impl FnOnce(&mut Fields) -> T) -> T {
    FIELDS.with(|f| parse(&mut f.borrow_mut()))
}

/// Header maps kept for reuse on this thread: building a message's map then needs no allocation.
const SPARE_MAPS: usize = 64;
/// Maps grown past this many entries are not kept.
const SPARE_MAP_CAPACITY: usize = 64;

thread_local! {
    static MAPS: std::cell::RefCell<Vec<HeaderMap>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty header map, reused when one is spare.
pub(crate) fn header_map(capacity: usize) -> HeaderMap {
    MAPS.with(|m| m.borrow_mut().pop())
        .unwrap_or_else(|| HeaderMap::with_capacity(capacity))
}

/// Gives a message's header map back for reuse.
pub(crate) fn recycle(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > SPARE_MAP_CAPACITY {
        return;
    }
    map.clear();
    MAPS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < SPARE_MAPS {
            m.push(map);
        }
    });
}

/// Writes all of `buf` and flushes it; on failure also says whether any of it was written.
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    buf: &[u8],
) -> Result<(), (io::Error, bool)> {
    let mut written = 0;
    while written < buf.len() {
        match io.write(&buf[written..]).await {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), written > 0)),
            Ok(n) => written += n,
            Err(e) => return Err((e, written > 0)),
        }
    }
    // TLS keeps what the socket did not take; plain TCP has nothing to flush.
    io.flush().await.map_err(|e| (e, true))
}

/// Appends `n` in decimal (without the formatting machinery: it runs for every response).
pub(crate) fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Content-Length digits: no sign, no spaces, no overflow.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Splits a header value into its trimmed comma-separated tokens.
pub(crate) fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Where a body's decoding stands.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// This many bytes still to come.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunk),
    /// Delimited by the connection's close.
    Eof,
    /// Read to its end.
    Done,
}

#[derive(Debug)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading (and dropping) trailer lines, this many bytes so far.
    Trailers(usize),
}

pub(crate) enum Step {
    Data(Bytes),
    Done,
    More,
}

impl Decoder {
    /// Decodes what is buffered: data, the end, or a need for more bytes.
    pub(crate) fn step<R>(&mut self, r: &mut Reader<R>) -> Result<Step, BodyError> {
        loop {
            match self {
                Decoder::Done => return Ok(Step::Done),
                Decoder::Length(rem) | Decoder::Chunked(Chunk::Data(rem)) => {
                    if r.filled == 0 {
                        return Ok(Step::More);
                    }
                    let n = r.filled.min(usize::try_from(*rem).unwrap_or(usize::MAX));
                    *rem -= n as u64;
                    if *rem == 0 {
                        *self = match self {
                            Decoder::Length(_) => Decoder::Done,
                            _ => Decoder::Chunked(Chunk::DataEnd),
                        };
                    }
                    return Ok(Step::Data(r.take(n)));
                }
                Decoder::Eof => {
                    if r.filled == 0 {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(r.take(r.filled)));
                }
                Decoder::Chunked(Chunk::DataEnd) => {
                    if r.filled < 2 {
                        return Ok(Step::More);
                    }
                    if &r.unread()[..2] != b"\r\n" {
                        return Err(BodyError::Malformed("missing CRLF after chunk data"));
                    }
                    r.take(2);
                    *self = Decoder::Chunked(Chunk::Size);
                }
                Decoder::Chunked(Chunk::Size) => {
                    let Some(line) = line_len(r.unread(), MAX_CHUNK_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&r.unread()[..line])?;
                    r.take(line + 2);
                    *self = Decoder::Chunked(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    });
                }
                Decoder::Chunked(Chunk::Trailers(seen)) => {
                    let Some(line) = line_len(r.unread(), MAX_HEAD - *seen)? else {
                        return Ok(Step::More);
                    };
                    r.take(line + 2);
                    if line == 0 {
                        *self = Decoder::Done;
                    } else {
                        *seen += line + 2;
                    }
                }
            }
        }
    }
}

impl Decoder {
    /// The next piece of body data off `r`, reading as needed: `None` at the body's end.
    /// `early_close` names a close before the end (a close ends an `Eof` body normally).
    pub(crate) fn poll_data<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut Reader<R>,
        cx: &mut Context<'_>,
        early_close: &'static str,
    ) -> Poll<Result<Option<Bytes>, BodyError>> {
        loop {
            match self.step(r) {
                Ok(Step::Data(data)) => return Poll::Ready(Ok(Some(data))),
                Ok(Step::Done) => return Poll::Ready(Ok(None)),
                Ok(Step::More) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match ready!(r.poll_fill(cx)) {
                Ok(0) if matches!(self, Decoder::Eof) => {
                    *self = Decoder::Done;
                    return Poll::Ready(Ok(None));
                }
                Ok(0) => return Poll::Ready(Err(BodyError::Malformed(early_close))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(BodyError::Io(e))),
            }
        }
    }
}

/// Queues one polled body frame with its framing (data only: trailers are not written);
/// `Ok(true)` once the body has ended and its terminator is queued. `ended` says whether the
/// body is at its end after this frame.
pub(crate) fn queue_frame<E>(
    out: &mut BytesMut,
    frame: Option<Result<Frame<Bytes>, E>>,
    ended: impl FnOnce() -> bool,
    chunked: bool,
) -> Result<bool, E> {
    if let Some(frame) = frame {
        if let Ok(data) = frame?.into_data()
            && !data.is_empty()
        {
            if chunked {
                let _ = write!(out, "{:x}\r\n", data.len());
            }
            out.extend_from_slice(&data);
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
        }
        if !ended() {
            return Ok(false);
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(true)
}

/// Appends one `name: value` header line.
pub(crate) fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The length of the CRLF-terminated line at the start of `buf`, if it is all there.
fn line_len(buf: &[u8], max: usize) -> Result<Option<usize>, BodyError> {
    let window = &buf[..buf.len().min(max + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(n) => Ok(Some(n)),
        None if window.len() >= max + 2 => Err(BodyError::Malformed("chunk line too long")),
        None if window.contains(&b'\n') => Err(BodyError::Malformed("bare LF in chunked body")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" extensions ]`: the size; extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    let rest_ok = rest.is_empty() || rest.trim_ascii_start().first() == Some(&b';');
    if digits == 0 || digits > 16 || !rest_ok || rest.contains(&b'\n') {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    let hex = std::str::from_utf8(&line[..digits])
        .map_err(|_| BodyError::Malformed("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| BodyError::Malformed("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_come_back_empty() {
        let mut map = header_map(8);
        map.insert("x-a", http::HeaderValue::from_static("1"));
        let cap = map.capacity();
        recycle(map);
        let again = header_map(8);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap, "the spare map was not reused");
        recycle(HeaderMap::with_capacity(1000));
        assert!(header_map(1).capacity() < 1000, "an oversized map was kept");
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a").unwrap(), 26);
        assert_eq!(chunk_size(b"1A;name=value").unwrap(), 26);
        assert_eq!(chunk_size(b"0 ;x").unwrap(), 0);
        assert!(chunk_size(b"").is_err());
        assert!(chunk_size(b"x1").is_err());
        assert!(chunk_size(b"1 2").is_err());
        assert!(chunk_size(b"11111111111111111").is_err());
    }
}
