//! An upstream connection: plain TCP, or TLS over it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
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

/// An upstream HTTP/1.1 connection whose reads and writes may each have an idle timeout: one
/// that stays pending that long without progress fails with `TimedOut` (Kong's `read_timeout`
/// and `write_timeout`, nginx's time between two successive reads or writes). Nothing waits
/// while the connection sits in its pool, and each exchange starts the clocks afresh.
#[derive(Debug)]
pub(crate) struct Timed {
    pub(crate) io: Stream,
    /// Read and write clocks; boxed, and only made for connections that have timeouts, so a
    /// connection without them stays small.
    clocks: Option<Box<[Idle; 2]>>,
}

impl Timed {
    pub(crate) fn new(io: Stream) -> Timed {
        Timed { io, clocks: None }
    }

    /// Sets the timeouts for the exchange about to start.
    pub(crate) fn set_timeouts(&mut self, read: Option<Duration>, write: Option<Duration>) {
        if read.is_none() && write.is_none() && self.clocks.is_none() {
            return;
        }
        let [r, w] = &mut **self.clocks.get_or_insert_default();
        r.set(read);
        w.set(write);
    }

    fn clock(&mut self, which: usize) -> Option<&mut Idle> {
        self.clocks.as_deref_mut().map(|c| &mut c[which])
    }
}

const READ: usize = 0;
const WRITE: usize = 1;

/// One direction's clock. The timer is allocated once per connection and reset, not remade.
#[derive(Debug, Default)]
struct Idle {
    limit: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Idle {
    fn set(&mut self, limit: Option<Duration>) {
        self.limit = limit;
        self.armed = false;
    }

    /// Passes `res` on; a pending one starts the clock (if not running) and fails once the
    /// limit has passed without progress.
    fn watch<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let Some(limit) = self.limit else {
            return res;
        };
        if res.is_ready() {
            self.armed = false;
            return res;
        }
        let deadline = Instant::now() + limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no progress within the timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        match this.clock(READ) {
            Some(clock) => clock.watch(cx, res),
            None => res,
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        match this.clock(WRITE) {
            Some(clock) => clock.watch(cx, res),
            None => res,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_flush(cx);
        match this.clock(WRITE) {
            Some(clock) => clock.watch(cx, res),
            None => res,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: weir's side wrapped, the upstream's side plain.
    async fn pair() -> (Timed, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            Timed::new(MaybeTls::Plain(ours.unwrap())),
            theirs.unwrap().0,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_times_a_read_out_and_bytes_reset_the_clock() {
        let (mut timed, mut upstream) = pair().await;
        timed.set_timeouts(Some(Duration::from_secs(60)), None);
        let mut buf = [0u8; 16];
        // Progress: each answer comes 40 s after the last, within the 60 s between reads.
        for _ in 0..3 {
            let (n, ()) = tokio::join!(timed.read(&mut buf), async {
                tokio::time::sleep(Duration::from_secs(40)).await;
                upstream.write_all(b"x").await.unwrap();
            });
            assert_eq!(n.unwrap(), 1);
        }
        // Silence: the read fails after 60 s.
        let start = Instant::now();
        let err = timed.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        // Without a timeout the wrapper only passes reads on.
        timed.set_timeouts(None, None);
        upstream.write_all(b"yz").await.unwrap();
        assert_eq!(timed.read(&mut buf).await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_stops_reading_times_a_write_out() {
        let (mut timed, _upstream) = pair().await;
        timed.set_timeouts(None, Some(Duration::from_secs(5)));
        // Nobody reads: once the socket buffers are full the next write waits, then fails.
        let chunk = vec![0u8; 1 << 16];
        let mut written = 0usize;
        let err = loop {
            match timed.write(&chunk).await {
                Ok(n) => written += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(written > 0);
    }
}
