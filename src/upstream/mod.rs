//! The upstream client: a connection pool per endpoint address and protocol.
//!
//! HTTP/1.1 connections are kept in a LIFO idle list and reused only after their previous
//! response was read to the end; HTTP/2 connections are shared. Pools are keyed by address, so
//! they survive config reloads.

pub mod body;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::backend::EndpointAddr;
pub use body::{Body, UpstreamBody};

/// Most idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE: usize = 256;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The TCP connection took longer than the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The HTTP handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The request was refused before it was sent (HTTP/2 refused stream, closed connection).
    #[error("request not sent: {0}")]
    NotSent(#[source] hyper::Error),
    /// The connection failed after the request was sent, before a response arrived.
    #[error("upstream reset: {0}")]
    Reset(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether the request never reached the upstream (safe to retry for any method).
    pub fn never_sent(&self) -> bool {
        !matches!(self, UpstreamError::Reset(_))
    }
}

/// Connections to one endpoint address with one protocol.
#[derive(Debug)]
pub struct Pool {
    addr: EndpointAddr,
    h2: bool,
    idle: Mutex<Vec<http1::SendRequest<Body>>>,
    shared: Mutex<Option<http2::SendRequest<Body>>>,
    open: Arc<AtomicUsize>,
}

impl Pool {
    /// An empty pool.
    pub fn new(addr: EndpointAddr, h2: bool) -> Pool {
        Pool {
            addr,
            h2,
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Whether this pool speaks HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// Sends a request. HTTP/1.1 requests must carry an origin-form URI and a `Host` header;
    /// HTTP/2 requests an absolute URI whose authority is the one to send.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if self.h2 {
            self.send_h2(req, connect_timeout).await
        } else {
            self.send_h1(req, connect_timeout).await
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // Reused connections may have been closed by the upstream meanwhile: a request that was
        // not written to one is tried on the next, and finally on a new connection.
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap_h1(resp, sender)),
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Reset(e.into_error())),
                },
            }
        }
        let io = self.connect(connect_timeout).await?;
        let (mut sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        self.spawn(conn);
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(self.wrap_h1(resp, sender)),
            Err(mut e) => Err(match e.take_message() {
                Some(_) => UpstreamError::NotSent(e.into_error()),
                None => UpstreamError::Reset(e.into_error()),
            }),
        }
    }

    fn wrap_h1(
        self: &Arc<Self>,
        resp: Response<hyper::body::Incoming>,
        sender: http1::SendRequest<Body>,
    ) -> Response<UpstreamBody> {
        resp.map(|b| UpstreamBody::new(b, Some((self.clone(), sender))))
    }

    async fn send_h2(
        self: &Arc<Self>,
        req: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let existing = self.lock_shared().clone().filter(|s| !s.is_closed());
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let io = self.connect(connect_timeout).await?;
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::Handshake)?;
                self.spawn(conn);
                *self.lock_shared() = Some(sender.clone());
                sender
            }
        };
        sender.ready().await.map_err(UpstreamError::NotSent)?;
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp.map(|b| UpstreamBody::new(b, None))),
            Err(mut e) => Err(match e.take_message() {
                Some(_) => UpstreamError::NotSent(e.into_error()),
                None => UpstreamError::Reset(e.into_error()),
            }),
        }
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Option<http2::SendRequest<Body>>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_idle(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub(crate) fn put_idle(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<TokioIo<TcpStream>, UpstreamError> {
        let connect = async {
            match &self.addr {
                EndpointAddr::Ip(a) => TcpStream::connect(a).await,
                EndpointAddr::Dns(h, p) => TcpStream::connect((h.as_str(), *p)).await,
            }
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)?
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    fn spawn<F>(&self, conn: F)
    where
        F: std::future::Future + Send + 'static,
    {
        let open = self.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = conn.await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
