//! An upstream connection: plain TCP, or TLS over it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::MaybeTls;

/// An upstream connection.
pub(crate) type Stream = MaybeTls<TcpStream, Box<TlsStream<TcpStream>>>;

/// Whether nothing (not even a close) has arrived since the last response. Plain TCP is asked
/// without a system call when no readiness was reported; TLS reads what arrived (a session
/// ticket is not application data and leaves the connection clean).
pub(crate) fn is_clean(stream: &mut Stream) -> bool {
    let mut probe = [0u8; 1];
    match stream {
        MaybeTls::Plain(io) => {
            matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
        MaybeTls::Tls(io) => {
            let mut cx = Context::from_waker(Waker::noop());
            let mut buf = ReadBuf::new(&mut probe);
            Pin::new(io).poll_read(&mut cx, &mut buf).is_pending()
        }
    }
}
