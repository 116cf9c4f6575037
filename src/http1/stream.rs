//! The client connections weir's HTTP/1.1 server reads and writes: the halves of a plain TCP
//! stream, or of a TLS stream.

use std::task::{Context, Poll};

use tokio::io::{ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

use crate::tls::MaybeTls;

/// The read side of a client connection.
pub(crate) type ClientRead = MaybeTls<OwnedReadHalf, ReadHalf<TlsStream<TcpStream>>>;

/// The write side of a client connection.
pub(crate) type ClientWrite = MaybeTls<OwnedWriteHalf, WriteHalf<TlsStream<TcpStream>>>;

/// Splits a plain connection.
pub(crate) fn tcp(stream: TcpStream) -> (ClientRead, ClientWrite) {
    let (r, w) = stream.into_split();
    (MaybeTls::Plain(r), MaybeTls::Plain(w))
}

/// Splits a TLS connection.
pub(crate) fn tls(stream: TlsStream<TcpStream>) -> (ClientRead, ClientWrite) {
    let (r, w) = tokio::io::split(stream);
    (MaybeTls::Tls(r), MaybeTls::Tls(w))
}

/// Whether the peer has closed (plain TCP only: a TLS stream cannot be peeked at, and is
/// taken as open).
pub(crate) fn poll_closed(read: &mut ClientRead, cx: &mut Context<'_>) -> Poll<()> {
    let MaybeTls::Plain(io) = read else {
        return Poll::Pending;
    };
    let mut probe = [0u8; 1];
    let mut buf = ReadBuf::new(&mut probe);
    match io.poll_peek(cx, &mut buf) {
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(()),
        _ => Poll::Pending,
    }
}
