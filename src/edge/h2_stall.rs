//! HTTP/2 responses held up by the client's flow-control window (docs/reliability.md case 18).
//!
//! hyper sends a response body only as fast as the client's window allows, and does not poll
//! the body while it waits for window. A client that never opens its window (a zero-window
//! stall) would hold the stream, the upstream request behind it and the buffered data for as
//! long as the connection lives, answering keep-alive pings all along. So each response body
//! of a connection notes when it is the client's turn (the body is ready to be read, or just
//! handed over a frame and hyper has not come back for the next); once some body has waited
//! on the client longer than the idle timeout, the connection is closed. A body waiting on its
//! upstream is never the client's fault.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// The response bodies of one connection, watched for stalls.
#[derive(Debug)]
pub struct Stalls {
    /// When each live body began waiting on the client (ms since `base`, plus 1); 0 when not.
    bodies: Mutex<Vec<Weak<AtomicU64>>>,
    base: Instant,
}

impl Default for Stalls {
    fn default() -> Stalls {
        Stalls {
            bodies: Mutex::new(Vec::new()),
            base: Instant::now(),
        }
    }
}

impl Stalls {
    /// Watches a response body of this connection.
    pub fn watch<B: Body>(&self, body: B) -> Watched<B> {
        let waiting = Arc::new(AtomicU64::new(0));
        if !body.is_end_stream() {
            waiting.store(self.now(), Ordering::Relaxed);
            if let Ok(mut bodies) = self.bodies.lock() {
                bodies.retain(|b| b.strong_count() > 0);
                bodies.push(Arc::downgrade(&waiting));
            }
        }
        Watched {
            inner: body,
            waiting,
            base: self.base,
        }
    }

    /// Resolves once some body has waited on the client for longer than `limit` (looked at
    /// every quarter of it).
    pub async fn stalled(&self, limit: Duration) {
        let every = (limit / 4).max(Duration::from_millis(100));
        let limit_ms = limit.as_millis() as u64;
        loop {
            tokio::time::sleep(every).await;
            let now = self.now();
            let Ok(mut bodies) = self.bodies.lock() else {
                return;
            };
            bodies.retain(|b| b.strong_count() > 0);
            let stalled = bodies.iter().filter_map(Weak::upgrade).any(|w| {
                let since = w.load(Ordering::Relaxed);
                since != 0 && now - since > limit_ms
            });
            if stalled {
                return;
            }
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }
}

/// A response body whose waits on the client are noted.
#[derive(Debug)]
pub struct Watched<B> {
    inner: B,
    waiting: Arc<AtomicU64>,
    base: Instant,
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // A frame handed over with more to come: the next poll depends on the client's window.
        let client_turn = matches!(polled, Poll::Ready(Some(Ok(_)))) && !this.inner.is_end_stream();
        let since = if client_turn {
            this.base.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        this.waiting.store(since, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
