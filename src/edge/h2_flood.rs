//! HTTP/2 control-frame flood protection: every PING and SETTINGS frame a client sends makes
//! the server queue an acknowledgement, so a client that sends them without end (and does not
//! read) costs work and memory for nothing (CVE-2019-9512, CVE-2019-9515). The HTTP/2 library
//! answers them all; this reader, placed under it, watches the frame headers going by and
//! ends a connection that sends more than a burst of them faster than a steady rate.
//!
//! Rapid reset and CONTINUATION floods are stopped by the library itself (its pending-reset and
//! header-list limits); see `tests/http2_edge.rs`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// PING and SETTINGS frames a client may send at once.
const BURST: f64 = 1000.0;
/// ... and per second after that.
const PER_SECOND: f64 = 100.0;
/// The client connection preface, which precedes the first frame.
const PREFACE_LEN: usize = 24;

const SETTINGS: u8 = 4;
const PING: u8 = 6;
const ACK: u8 = 1;

/// An HTTP/2 server connection's stream, watched for control-frame floods. Bytes already read
/// off it (to recognise the preface) are read again first.
pub struct FloodGuard<S> {
    io: S,
    replay: Bytes,
    /// Bytes still to skip: the preface, then each frame's payload.
    skip: usize,
    /// The frame header being read (it may arrive in pieces).
    header: [u8; 9],
    have: usize,
    tokens: f64,
    refilled: Instant,
}

impl<S> FloodGuard<S> {
    /// Watches `io`, whose first bytes are `replay` and then what `io` reads, starting with
    /// the client preface.
    pub fn new(io: S, replay: Bytes) -> FloodGuard<S> {
        FloodGuard {
            io,
            replay,
            skip: PREFACE_LEN,
            header: [0; 9],
            have: 0,
            tokens: BURST,
            refilled: Instant::now(),
        }
    }

    /// Follows the frames in bytes just read; `Err` once the client floods.
    fn watch(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let h = self.header;
            self.skip = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            if matches!(h[3], PING | SETTINGS) && h[4] & ACK == 0 {
                self.spend()?;
            }
        }
        Ok(())
    }

    fn spend(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            tracing::info!("HTTP/2 client flooding PING or SETTINGS frames; closing.");
            return Err(io::Error::other("PING/SETTINGS flood"));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FloodGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = if self.replay.is_empty() {
            Pin::new(&mut self.io).poll_read(cx, buf)
        } else {
            let n = self.replay.len().min(buf.remaining());
            let chunk = self.replay.split_to(n);
            buf.put_slice(&chunk);
            Poll::Ready(Ok(()))
        };
        if let Poll::Ready(Ok(())) = polled {
            self.watch(&buf.filled()[before..])?;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FloodGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![
            0,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.resize(9 + payload, 0);
        f
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_a_flood_does_not_and_the_rate_refills() {
        let mut g = FloodGuard::new((), Bytes::new());
        g.watch(&[b'P'; PREFACE_LEN]).unwrap();
        // Frames split at every byte are followed as well as whole ones.
        for b in frame(1, 4, 300) {
            g.watch(&[b]).unwrap();
        }
        for _ in 0..BURST as usize {
            g.watch(&frame(PING, 0, 8)).unwrap();
        }
        // Acknowledgements and other frames cost nothing.
        g.watch(&frame(PING, ACK, 8)).unwrap();
        g.watch(&frame(0, 0, 1000)).unwrap();
        assert!(g.watch(&frame(SETTINGS, 0, 6)).is_err());
        // A second later, about a second's worth passes again.
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let passed = (0..1000)
            .take_while(|_| g.watch(&frame(PING, 0, 8)).is_ok())
            .count();
        assert!((100..110).contains(&passed), "{passed}");
    }
}
