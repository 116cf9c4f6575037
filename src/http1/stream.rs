//! The client connections weir's HTTP/1.1 server reads and writes: the halves of a plain TCP
//! stream, or of a TLS stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

/// The read side of a client connection.
#[derive(Debug)]
pub enum ClientRead {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS.
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The write side of a client connection.
#[derive(Debug)]
pub enum ClientWrite {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS.
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// Splits a plain connection.
pub fn tcp(stream: TcpStream) -> (ClientRead, ClientWrite) {
    let (r, w) = stream.into_split();
    (ClientRead::Tcp(r), ClientWrite::Tcp(w))
}

/// Splits a TLS connection.
pub fn tls(stream: TlsStream<TcpStream>) -> (ClientRead, ClientWrite) {
    let (r, w) = tokio::io::split(stream);
    (ClientRead::Tls(r), ClientWrite::Tls(w))
}

impl ClientRead {
    /// Whether the peer has closed (plain TCP only: a TLS stream cannot be peeked at, and is
    /// taken as open).
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let ClientRead::Tcp(io) = self else {
            return Poll::Pending;
        };
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        match io.poll_peek(cx, &mut buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

impl AsyncRead for ClientRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientRead::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            ClientRead::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientWrite::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            ClientWrite::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientWrite::Tcp(io) => Pin::new(io).poll_flush(cx),
            ClientWrite::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientWrite::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            ClientWrite::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
